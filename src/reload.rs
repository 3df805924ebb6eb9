//! Hot reload: on SIGHUP, and when the config file, the TLS files or a CA
//! bundle it names change, read, expand and validate the file, build a new
//! [`Snapshot`] and swap it in. A file that fails any step is logged with
//! every problem and the running configuration keeps serving.
//!
//! Files are watched the way Kubernetes updates a mounted ConfigMap: the
//! data directory is replaced by renaming a symlink, so the watch is on the
//! directory that holds the file, and any event there leads to a re-read
//! (debounced, and skipped when the bytes did not change).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::auth::cache::TokenCache;
use crate::config::{Config, ConfigError};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::tls::{self, TlsError, TlsSwap};

/// Events closer together than this are one change (a ConfigMap update is
/// several renames in a row).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A directory that never goes quiet still gets its reload after this.
const DEBOUNCE_CAP: Duration = Duration::from_secs(2);
/// The fallback poller never looks more often than this.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reload waits for a new provider's first keys before it gives
/// up and keeps the old configuration.
const KEYS_WAIT: Duration = Duration::from_secs(10);

/// Why a reload was refused (the old configuration keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS material (certificate, key, CA bundle) is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A new provider's keys could not be loaded: swapping would make the
    /// gateway refuse every token of that provider.
    #[error("{0}; keeping the previous configuration")]
    KeysUnavailable(String),
    /// The new file has no proxy listener (`listen: ""`), so its routes
    /// may lack the upstreams the running proxy forwards to.
    #[error("listen: the running proxy cannot drop its listener on a reload; restart to change it")]
    ListenerRemoved,
}

/// Reloads one config file into one gateway.
pub struct Reloader {
    path: PathBuf,
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    tokens: Arc<TokenCache>,
    tls: Option<TlsSwap>,
    /// One reload at a time; holds the fingerprint of the files last read.
    last: Mutex<Option<[u8; 32]>>,
}

impl Reloader {
    /// A reloader for `path`, whose current state is what `gateway` serves.
    pub fn new(
        path: PathBuf,
        gateway: Arc<Gateway>,
        metrics: Arc<Metrics>,
        tokens: Arc<TokenCache>,
        tls: Option<TlsSwap>,
    ) -> Reloader {
        let current = fingerprint(&path, &gateway.snapshot().config);
        Reloader {
            path,
            gateway,
            metrics,
            tokens,
            tls,
            last: Mutex::new(current),
        }
    }

    /// Reloads now, whatever changed (SIGHUP). Counted either way.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let mut last = self.last.lock().await;
        let result = self.apply().await;
        *last = fingerprint(&self.path, &self.gateway.snapshot().config);
        self.record(&result);
        result
    }

    /// Reloads if the config, TLS or CA files differ from those last read.
    async fn reload_if_changed(&self) {
        let mut last = self.last.lock().await;
        let now = fingerprint(&self.path, &self.gateway.snapshot().config);
        if now.is_some() && now == *last {
            return;
        }
        let result = self.apply().await;
        // The bytes just tried, good or bad: an unchanged bad file is not
        // retried (and logged again) on every unrelated event.
        *last = now;
        self.record(&result);
    }

    fn record(&self, result: &Result<(), ReloadError>) {
        match result {
            Ok(()) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics
                    .config_last_reload_success
                    .set(crate::clock::now_secs_f64());
                tracing::info!(file = %self.path.display(), "configuration reloaded");
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                if let ReloadError::Config(c) = e {
                    for problem in &c.problems {
                        tracing::error!(file = %c.file.display(), path = %problem.path, problem = %problem.message, "config problem");
                    }
                }
                tracing::error!(file = %self.path.display(), error = %e, "reload refused; the previous configuration keeps serving");
            }
        }
    }

    async fn apply(&self) -> Result<(), ReloadError> {
        let config = Config::load(&self.path)?;
        if config.listen.is_none() {
            return Err(ReloadError::ListenerRemoved);
        }
        let current = self.gateway.snapshot();
        warn_about_restart_only_changes(&current.config, &config);
        let acceptor = match (&self.tls, &config.tls) {
            (Some(_), Some(files)) => Some(TlsAcceptor::from(tls::server_config(
                &files.cert_file,
                &files.key_file,
            )?)),
            _ => None,
        };
        let snapshot = Snapshot::build(config, &self.metrics, &self.tokens, Some(&current))?;
        // Never trade a ready gateway for one that refuses every token.
        if current.readiness().is_ok() {
            wait_for_keys(&snapshot).await?;
        }
        if let (Some(swap), Some(acceptor)) = (&self.tls, acceptor) {
            swap.store(Arc::new(acceptor));
        }
        self.gateway.swap(Arc::new(snapshot));
        Ok(())
    }

    /// Serves reload triggers until dropped: SIGHUP (if given) and changes
    /// of the watched files.
    pub async fn run(self: Arc<Self>, mut sighup: Option<tokio::signal::unix::Signal>) {
        let (tx, mut changes) = mpsc::unbounded_channel::<()>();
        let mut watched = self.watched_files();
        let mut _watcher = watch(&watched, tx.clone());
        loop {
            // A reload may name other files (a new CA bundle): watch those.
            let now = self.watched_files();
            if now != watched {
                _watcher = watch(&now, tx.clone());
                watched = now;
            }
            tokio::select! {
                Some(()) = changes.recv() => {
                    // Quiet for DEBOUNCE, or at most DEBOUNCE_CAP in all.
                    let cap = tokio::time::Instant::now() + DEBOUNCE_CAP;
                    while tokio::time::Instant::now() < cap {
                        match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                            Ok(Some(())) => continue,
                            _ => break,
                        }
                    }
                    self.reload_if_changed().await;
                }
                Some(()) = async {
                    match sighup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = self.reload().await;
                }
                else => return,
            }
        }
    }

    fn watched_files(&self) -> Vec<PathBuf> {
        let snapshot = self.gateway.snapshot();
        let mut files = vec![self.path.clone()];
        files.extend(named_files(&snapshot.config));
        files
    }
}

/// The files a config names whose contents a reload reads: the TLS
/// certificate and key, and every CA bundle (the identity providers' and
/// the upstreams'), each once, in a stable order.
fn named_files(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(t) = &config.tls {
        files.push(t.cert_file.clone());
        files.push(t.key_file.clone());
    }
    let providers = config.providers.iter().map(|p| &p.ca_file);
    let upstreams = config.upstreams.iter().map(|u| &u.ca_file);
    for ca in providers.chain(upstreams).flatten() {
        if !files.contains(ca) {
            files.push(ca.clone());
        }
    }
    files
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether an event in a watched directory concerns `names`: one of the
/// files itself, or Kubernetes' `..data` machinery. Anything else there (a
/// log file next to the config, say) is not a reason to re-read.
fn relevant(event: &notify::Event, names: &[std::ffi::OsString]) -> bool {
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            p.file_name().is_some_and(|n| {
                names.iter().any(|w| w == n) || n.as_encoded_bytes().starts_with(b"..")
            })
        })
}

/// Watches the directories of `files` (not recursively), sending a unit on
/// each event that concerns them. Uses inotify where it can, else a poller
/// at [`POLL_INTERVAL`].
fn watch(
    files: &[PathBuf],
    tx: mpsc::UnboundedSender<()>,
) -> Option<Box<dyn notify::Watcher + Send>> {
    use notify::RecursiveMode;
    let names: Vec<std::ffi::OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let mut dirs: Vec<PathBuf> = files.iter().map(|f| parent_dir(f)).collect();
    dirs.sort();
    dirs.dedup();
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| relevant(&e, &names)) {
            let _ = tx.send(());
        }
    };
    let mut watcher: Box<dyn notify::Watcher + Send> = match notify::recommended_watcher(
        handler.clone(),
    ) {
        Ok(w) => Box::new(w),
        Err(e) => {
            tracing::warn!(error = %e, "file events unavailable; polling for config changes every second");
            match notify::PollWatcher::new(
                handler,
                notify::Config::default().with_poll_interval(POLL_INTERVAL),
            ) {
                Ok(w) => Box::new(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP");
                    return None;
                }
            }
        }
    };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for config changes; reload with SIGHUP");
        }
    }
    Some(watcher)
}

/// SHA-256 over the config file and the TLS and CA files it names, or
/// `None` if the config file cannot be read. A rotated certificate or CA
/// bundle keeps its path, so its bytes are what tell that it changed.
fn fingerprint(path: &Path, config: &Config) -> Option<[u8; 32]> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&std::fs::read(path).ok()?);
    for f in named_files(config) {
        let bytes = std::fs::read(f).unwrap_or_default();
        // Each file's length first: bytes moving from one file to the next
        // must not hash the same.
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(&bytes);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Some(out)
}

/// Waits until every provider of `snapshot` has usable keys.
async fn wait_for_keys(snapshot: &Snapshot) -> Result<(), ReloadError> {
    let deadline = tokio::time::Instant::now() + KEYS_WAIT;
    loop {
        match snapshot.readiness() {
            Ok(()) => return Ok(()),
            Err(reason) if tokio::time::Instant::now() >= deadline => {
                return Err(ReloadError::KeysUnavailable(reason));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Listeners, limits and the grace period belong to the running process:
/// say so instead of silently ignoring a change.
fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    for (changed, key) in [
        (old.listen != new.listen, "listen"),
        (old.admin_listen != new.admin_listen, "admin.listen"),
        (old.tls.is_some() != new.tls.is_some(), "tls"),
        (old.limits != new.limits, "limits"),
        (
            old.shutdown_grace != new.shutdown_grace,
            "shutdownGraceSeconds",
        ),
        (
            old.shutdown_delay != new.shutdown_delay,
            "shutdownDelaySeconds",
        ),
        (
            old.organization_label != new.organization_label,
            "metrics.organizationLabel",
        ),
    ] {
        if changed {
            tracing::warn!(key, "changed, but takes effect only after a restart");
        }
    }
}
