//! One provider's JWKS: fetched (after OIDC discovery if needed), cached,
//! refreshed in the background, refetched on an unknown `kid` at most once
//! per interval, kept while the endpoint fails for up to `maxStaleSeconds`,
//! and optionally persisted so a cold start survives a provider outage.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::Mutex;
use url::Url;

use super::fetch::{FetchError, Fetcher};
use super::keys::{KeySet, KeySetError};
use crate::config::{JwksSource, ProviderConfig, is_secure_or_loopback};
use crate::metrics::Metrics;

/// Backoff between failed fetches doubles from this…
const BACKOFF_START: Duration = Duration::from_millis(250);
/// …up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A `Cache-Control: max-age` shorter than this is raised to it, so a
/// provider cannot make us poll it in a tight loop.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// HTTP failure.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The JWKS document is not one.
    #[error(transparent)]
    KeySet(#[from] KeySetError),
    /// The discovery document is unusable.
    #[error("discovery: {0}")]
    Discovery(String),
    /// A well-formed document without one key this gateway can use. Taken
    /// as a failed fetch, so a broken or hostile endpoint cannot wipe the
    /// last good keys.
    #[error("the JWKS has no usable signing key ({skipped} skipped)")]
    NoUsableKeys {
        /// Entries that were skipped.
        skipped: usize,
    },
}

/// A JWKS's background refresh loop, stopped when this is dropped: a
/// provider removed by a reload stops polling its endpoint.
pub struct RefreshTask(tokio::task::JoinHandle<()>);

impl RefreshTask {
    /// Starts [`Jwks::run`] for `jwks`.
    pub fn spawn(jwks: Arc<Jwks>) -> RefreshTask {
        RefreshTask(tokio::spawn(jwks.run()))
    }
}

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keys as loaded, with when.
pub struct Loaded {
    /// The keys.
    pub keys: KeySet,
    /// When they were fetched (or the cache file written).
    pub fetched_at: SystemTime,
    /// Bumped whenever the key set changes, so cached verdicts die with their keys.
    pub generation: u64,
}

/// The live JWKS of one provider.
pub struct Jwks {
    issuer: String,
    source: JwksSource,
    max_stale: Duration,
    min_refetch: Duration,
    refresh: Duration,
    cache_file: Option<PathBuf>,
    allow_insecure_http: bool,
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
    current: ArcSwapOption<Loaded>,
    /// Serialises fetches and remembers when the last unknown-kid refetch
    /// started, for its rate limit.
    fetch_gate: Mutex<Option<Instant>>,
    /// The JWKS URL found by discovery.
    discovered: ArcSwapOption<Url>,
    generation: AtomicU64,
    last_body: std::sync::Mutex<Option<bytes::Bytes>>,
    /// Since when the current keys are unconfirmed: the first failed fetch
    /// after the last success, or the cache file's time for keys read from
    /// it. `None` while fetches succeed.
    /// Milliseconds since the epoch; 0 while fetches succeed. An atomic,
    /// since every request reads it.
    failing_since: AtomicU64,
}

impl Jwks {
    /// A cache for `provider`; nothing is fetched until [`Jwks::refresh`] or
    /// [`Jwks::run`]. A readable cache file is loaded right away.
    pub fn new(provider: &ProviderConfig, fetcher: Fetcher, metrics: Arc<Metrics>) -> Jwks {
        let jwks = Jwks {
            issuer: provider.issuer.clone(),
            source: provider.jwks.clone(),
            max_stale: provider.max_stale,
            min_refetch: provider.min_refetch_interval,
            refresh: provider.refresh,
            cache_file: provider.cache_file.clone(),
            allow_insecure_http: provider.allow_insecure_http,
            fetcher,
            metrics,
            current: ArcSwapOption::empty(),
            fetch_gate: Mutex::new(None),
            discovered: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            last_body: std::sync::Mutex::new(None),
            failing_since: AtomicU64::new(0),
        };
        jwks.load_cache_file();
        jwks
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Usable keys, or `None` if never loaded or unconfirmed for longer
    /// than `maxStaleSeconds` (fail closed): the endpoint has been failing
    /// that long, or the cache file they came from is that old. A refresh
    /// that is merely slow does not make keys stale.
    pub fn keys(&self) -> Option<Arc<Loaded>> {
        let loaded = self.current.load_full()?;
        let since = self.failing_since.load(Ordering::Acquire);
        let stale = since != 0
            && epoch_millis(SystemTime::now()).saturating_sub(since)
                > self.max_stale.as_millis() as u64;
        (!stale).then_some(loaded)
    }

    /// Whether keys are usable now.
    pub fn is_ready(&self) -> bool {
        self.keys().is_some()
    }

    /// Refetch for a token whose `kid` is unknown, unless another
    /// unknown-kid refetch started less than `minRefetchIntervalSeconds` ago. Concurrent callers share
    /// one fetch. Returns whether the keys may have changed.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        let mut last = self.fetch_gate.lock().await;
        // Another request may have fetched while we waited for the lock.
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|l| l.keys.has_kid(kid))
        {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch_and_store().await.is_ok()
    }

    /// Fetches now (serialised with other fetches). Returns the server's max-age.
    /// Scheduled fetches do not count toward the unknown-kid limit: a key
    /// rotated in right after a refresh must still be picked up at once.
    pub async fn refresh(&self) -> Result<Option<Duration>, JwksError> {
        let _serialised = self.fetch_gate.lock().await;
        self.fetch_and_store().await
    }

    /// Background refresh loop: forever, fetch; on success wait
    /// `min(refreshSeconds, max-age)`, on failure back off (capped at 10 s).
    pub async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_START;
        loop {
            let wait = match self.refresh().await {
                Ok(max_age) => {
                    backoff = BACKOFF_START;
                    max_age
                        .map_or(self.refresh, |m| m.min(self.refresh))
                        .max(MIN_REFRESH.min(self.refresh))
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %e, retry_in_ms = backoff.as_millis() as u64, "JWKS fetch failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_and_store(&self) -> Result<Option<Duration>, JwksError> {
        let result = self.fetch().await;
        let label = if result.is_ok() { "success" } else { "error" };
        self.metrics.jwks_fetches.with_label_values(&[label]).inc();
        let now = SystemTime::now();
        match result {
            Ok((body, keys, max_age)) => {
                self.failing_since.store(0, Ordering::Release);
                self.store(body, keys, now, true);
                Ok(max_age)
            }
            Err(e) => {
                // Only the first failure after a success starts the clock.
                let _ = self.failing_since.compare_exchange(
                    0,
                    epoch_millis(now).max(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(bytes::Bytes, KeySet, Option<Duration>), JwksError> {
        let url = self.jwks_url().await?;
        let fetched = self.fetcher.get(&url).await?;
        let keys = KeySet::parse(&fetched.body)?;
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys {
                skipped: keys.skipped,
            });
        }
        Ok((fetched.body, keys, fetched.max_age))
    }

    async fn jwks_url(&self) -> Result<Url, JwksError> {
        match &self.source {
            JwksSource::Url(u) => Ok(u.clone()),
            JwksSource::Discovery(doc_url) => {
                if let Some(u) = self.discovered.load_full() {
                    return Ok((*u).clone());
                }
                let doc = self.fetcher.get(doc_url).await?;
                let url = jwks_uri_from_discovery(&doc.body, &self.issuer)?;
                if !self.allow_insecure_http && !is_secure_or_loopback(&url) {
                    return Err(JwksError::Discovery(format!(
                        "jwks_uri {:?} is plain http:// to a non-loopback host; refusing keys that anyone on the path could replace (allowInsecureHttp opts out)",
                        url.as_str()
                    )));
                }
                self.discovered.store(Some(Arc::new(url.clone())));
                Ok(url)
            }
        }
    }

    /// Swaps in `keys`; `persist` (keys just fetched) rewrites the cache
    /// file, so its time is that of the last successful fetch.
    fn store(&self, body: bytes::Bytes, keys: KeySet, fetched_at: SystemTime, persist: bool) {
        let changed = {
            let mut last = self.last_body.lock().unwrap_or_else(|e| e.into_inner());
            let changed = last.as_ref() != Some(&body);
            *last = Some(body.clone());
            changed
        };
        let generation = if changed {
            self.generation.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.generation.load(Ordering::Relaxed)
        };
        self.metrics
            .jwks_keys
            .with_label_values(&[&self.issuer])
            .set(keys.len() as i64);
        if changed {
            tracing::info!(issuer = %self.issuer, keys = keys.len(), skipped = keys.skipped, "JWKS loaded");
        }
        if persist {
            self.write_cache_file(&body);
        }
        self.current.store(Some(Arc::new(Loaded {
            keys,
            fetched_at,
            generation,
        })));
    }

    fn load_cache_file(&self) {
        let Some(path) = &self.cache_file else { return };
        let Ok(body) = std::fs::read(path) else {
            return;
        };
        let fetched_at = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match KeySet::parse(&body) {
            Ok(keys) if !keys.is_empty() => {
                tracing::info!(issuer = %self.issuer, file = %path.display(), "JWKS loaded from cache file");
                // Unconfirmed since the file was written; never rewritten
                // from here, so restarts cannot make old keys look fresh.
                self.failing_since
                    .store(epoch_millis(fetched_at).max(1), Ordering::Release);
                self.store(body.into(), keys, fetched_at, false);
            }
            _ => tracing::warn!(file = %path.display(), "JWKS cache file is unusable; ignored"),
        }
    }

    fn write_cache_file(&self, body: &[u8]) {
        let Some(path) = &self.cache_file else { return };
        // Write then rename, so a crash never leaves half a file behind.
        let tmp = path.with_extension("tmp");
        let result = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the JWKS cache file");
        }
    }
}

use crate::clock::unix_millis as epoch_millis;

/// `jwks_uri` from a discovery document whose `issuer` must equal ours.
fn jwks_uri_from_discovery(body: &[u8], issuer: &str) -> Result<Url, JwksError> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| JwksError::Discovery(e.to_string()))?;
    let found = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
    if found != issuer {
        return Err(JwksError::Discovery(format!(
            "the document's issuer {found:?} is not the configured {issuer:?}"
        )));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| JwksError::Discovery("no jwks_uri".into()))?;
    let url = Url::parse(uri).map_err(|e| JwksError::Discovery(format!("bad jwks_uri: {e}")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(JwksError::Discovery("jwks_uri is not http(s)".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_issuer_must_match_exactly() {
        let doc = br#"{"issuer":"https://t.auth0.com/","jwks_uri":"https://t.auth0.com/.well-known/jwks.json"}"#;
        assert!(jwks_uri_from_discovery(doc, "https://t.auth0.com/").is_ok());
        assert!(jwks_uri_from_discovery(doc, "https://t.auth0.com").is_err());
        assert!(
            jwks_uri_from_discovery(
                br#"{"issuer":"https://t.auth0.com/"}"#,
                "https://t.auth0.com/"
            )
            .is_err()
        );
        assert!(jwks_uri_from_discovery(b"nope", "x").is_err());
    }
}
