//! Wiring: a validated [`Config`] becomes listening servers, a reloader
//! and a shutdown sequence.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use std::path::PathBuf;

use arc_swap::ArcSwap;

use crate::auth::cache::TokenCache;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::reload::{ReloadError, Reloader};
use crate::snapshot::Snapshot;
use crate::{admin, server, tls};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `listen` is empty: a configuration for the tower layer, with nothing
    /// for the sidecar to serve.
    #[error(
        "listen is empty: this configuration only decides (for the tower layer); the sidecar needs a proxy listener"
    )]
    NoListener,
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running gateway.
pub struct Running {
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The request handler (for readiness and draining).
    pub gateway: Arc<Gateway>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    reloader: Option<Arc<Reloader>>,
    leaving: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    /// `shutdownDelaySeconds`.
    delay: std::time::Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts leaving: not ready at once, but still accepting and serving,
    /// every connection asked to close after its request (`Connection:
    /// close`, HTTP/2 GOAWAY), so clients move on while the load balancer
    /// still sends them here.
    pub fn leave(&self) {
        self.gateway.leave();
        let _ = self.leaving.send(true);
    }

    /// Starts draining: not ready, no new connections, in-flight requests
    /// get `shutdownGraceSeconds` to finish.
    pub fn shutdown(&self) {
        self.gateway.drain();
        let _ = self.leaving.send(true);
        let _ = self.shutdown.send(true);
    }

    /// The whole stop on a signal: leave, then after `shutdownDelaySeconds`
    /// (or at `skip`, a second signal) drain, and wait until done.
    pub async fn stop(self, skip: impl Future<Output = ()>) {
        self.leave();
        if !self.delay.is_zero() {
            tracing::info!(delay = ?self.delay, "shutting down: not ready, still serving");
            tokio::select! {
                _ = tokio::time::sleep(self.delay) => {}
                _ = skip => tracing::info!("second signal: the delay is skipped"),
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown();
        self.wait().await;
    }

    /// Reloads the config file now, as SIGHUP does. Fails when the gateway
    /// was started without a file, or when the file is refused.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        match &self.reloader {
            Some(r) => r.reload().await,
            None => Err(ReloadError::KeysUnavailable(
                "started without a config file".into(),
            )),
        }
    }

    /// Waits until both servers have stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds the listeners and starts serving `config`. No reloads.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, None, None).await
}

/// Binds the listeners and serves `config`, read from `path`: reloaded on
/// `sighup` and when the file (or its TLS files) change.
pub async fn start_watching(
    config: Config,
    path: PathBuf,
    sighup: Option<tokio::signal::unix::Signal>,
) -> Result<Running, StartError> {
    start_with(config, Some(path), sighup).await
}

async fn start_with(
    config: Config,
    path: Option<PathBuf>,
    sighup: Option<tokio::signal::unix::Signal>,
) -> Result<Running, StartError> {
    tls::install_crypto_provider();
    let metrics = Arc::new(Metrics::new(config.organization_label)?);
    let acceptor = match &config.tls {
        Some(t) => Some(Arc::new(ArcSwap::from_pointee(
            tokio_rustls::TlsAcceptor::from(tls::server_config(&t.cert_file, &t.key_file)?),
        ))),
        None => None,
    };
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let listen = config.listen.ok_or(StartError::NoListener)?;
    let proxy_listener = bind(listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin_listen,
            source,
        })?;
    let grace = config.shutdown_grace;
    let delay = config.shutdown_delay;
    let limits = config.limits.clone();
    let tls_on = acceptor.is_some();
    for p in config.providers.iter().filter(|p| p.allow_insecure_http) {
        tracing::warn!(
            provider = %p.name,
            issuer = %p.issuer,
            "allowInsecureHttp is on: keys may be fetched over plain HTTP, where anyone on the network path can replace them"
        );
    }

    let tokens = Arc::new(TokenCache::default());
    let snapshot = Snapshot::build(config, &metrics, &tokens, None)?;
    metrics
        .config_last_reload_success
        .set(crate::clock::now_secs_f64());
    let gateway = Arc::new(Gateway::new(snapshot, metrics.clone(), tls_on));
    let reloader = path.map(|path| {
        Arc::new(Reloader::new(
            path,
            gateway.clone(),
            metrics.clone(),
            tokens,
            acceptor.clone(),
        ))
    });
    let reload_task = reloader.clone().map(|r| tokio::spawn(r.run(sighup)));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (leaving_tx, leaving_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let g = gateway.clone();
    let proxy = tokio::spawn(server::serve(
        proxy_listener,
        server::ServeOptions {
            tls: acceptor.clone(),
            limits,
            grace,
            refused: Some(metrics.connections_refused.clone()),
            unread: Some(
                metrics
                    .client_timeouts
                    .with_label_values(&["response_write"]),
            ),
            on_rejected: Some({
                let g = gateway.clone();
                Arc::new(move |peer, status| g.rejected(peer, status))
            }),
            leaving: Some(leaving_rx),
        },
        move |req, peer| {
            let g = g.clone();
            async move { g.handle(req, peer).await }
        },
        stopped(shutdown_rx.clone()),
    ));
    let (g, m) = (gateway.clone(), metrics.clone());
    // The admin API stays up while the proxy drains, so probes see not-ready.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin = tokio::spawn(server::serve(
        admin_listener,
        server::ServeOptions::plain(std::time::Duration::from_secs(1)),
        move |req, _peer| {
            let resp = admin::handle(&req, &g, &m);
            async move { resp }
        },
        stopped(admin_stop_rx),
    ));
    let sequence = tokio::spawn(async move {
        let _ = proxy.await;
        // Draining: no more reloads, and nothing keeps refreshing keys.
        if let Some(t) = reload_task {
            t.abort();
        }
        let _ = admin_stop_tx.send(true);
        let _ = admin.await;
    });
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, tls = tls_on, "idp-gate listening");
    Ok(Running {
        proxy_addr,
        admin_addr,
        gateway,
        metrics,
        reloader,
        leaving: leaving_tx,
        shutdown: shutdown_tx,
        delay,
        tasks: vec![sequence],
    })
}

/// Serves `config`, read from `path`, until SIGTERM or SIGINT, then drains
/// and returns. SIGHUP and changes of the file reload it.
pub async fn run(
    config: Config,
    path: PathBuf,
    sighup: Option<tokio::signal::unix::Signal>,
) -> Result<(), StartError> {
    let running = start_watching(config, path, sighup).await?;
    wait_for_signal().await;
    running.stop(wait_for_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
