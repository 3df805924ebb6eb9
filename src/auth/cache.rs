//! Verified-token cache in front of the [`Verifier`]: a token seen before
//! skips signature verification, but its time window, its provider and its
//! key-set generation are re-checked on every hit, so a rotated-out key or
//! an expired token is never served from the cache.
//!
//! One [`TokenCache`] outlives configurations: entries name their provider
//! by id, so a reload that keeps a provider keeps its verdicts, and one
//! that changes or removes it makes them misses.

use std::sync::Arc;

use super::claims::Identity;
use super::verify::{TimeWindow, Verifier};
use crate::error::AuthFailure;
use crate::metrics::Metrics;

/// Entries kept; past it the least useful are evicted (quick_cache's
/// CLOCK-PRO keeps tokens seen more than once over one-off ones).
const CAPACITY: usize = 10_000;

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    provider: u64,
    window: TimeWindow,
    generation: Option<u64>,
}

/// Verdicts by the token's SHA-256: bounded, and safe to read from every
/// worker at once without one global lock.
pub struct TokenCache {
    entries: quick_cache::sync::Cache<[u8; 32], Entry>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            entries: quick_cache::sync::Cache::new(CAPACITY),
        }
    }
}

impl TokenCache {
    /// Verdicts held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A [`Verifier`] with a cache of verdicts.
pub struct CachingVerifier {
    inner: Verifier,
    cache: Arc<TokenCache>,
    metrics: Arc<Metrics>,
}

impl CachingVerifier {
    /// Wraps `inner`, caching verdicts in `cache`.
    pub fn new(inner: Verifier, cache: Arc<TokenCache>, metrics: Arc<Metrics>) -> Self {
        CachingVerifier {
            inner,
            cache,
            metrics,
        }
    }

    /// The wrapped verifier.
    pub fn inner(&self) -> &Verifier {
        &self.inner
    }

    /// Verifies, from the cache when possible. Failures are never cached.
    pub async fn verify(
        &self,
        token: &str,
        allowed: Option<&[usize]>,
        now: u64,
    ) -> Result<Arc<Identity>, AuthFailure> {
        let key = digest(token);
        if let Some(hit) = self.lookup(&key, allowed, now) {
            self.metrics.token_cache_hits.inc();
            return hit;
        }
        self.metrics.token_cache_misses.inc();
        let verified = self.inner.verify(token, allowed, now).await?;
        let identity = verified.identity.clone();
        self.cache.entries.insert(
            key,
            Entry {
                identity: verified.identity,
                provider: verified.provider,
                window: verified.window,
                generation: verified.generation,
            },
        );
        Ok(identity)
    }

    fn lookup(
        &self,
        key: &[u8; 32],
        allowed: Option<&[usize]>,
        now: u64,
    ) -> Option<Result<Arc<Identity>, AuthFailure>> {
        let entries = &self.cache.entries;
        let entry = entries.get(key)?;
        let Some(provider) = self.inner.index_of(entry.provider) else {
            // Verified by a provider this configuration no longer has.
            entries.remove(key);
            return None;
        };
        let stale = entry.generation.is_some()
            && entry.generation != self.inner.current_generation(provider);
        if stale || entry.window.check(now).is_err() {
            // Verify again from scratch: the precise reason comes from there;
            // and an entry never outlives its token's `exp`.
            entries.remove(key);
            return None;
        }
        if allowed.is_some_and(|a| !a.contains(&provider)) {
            return Some(Err(AuthFailure::WrongIssuer));
        }
        Some(Ok(entry.identity.clone()))
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
