//! A [`Snapshot`]: everything one configuration needs at request time,
//! built whole and swapped whole. A request runs on the snapshot it
//! started with, so a reload never changes a request half-way.

use std::sync::Arc;

use crate::auth::cache::TokenCache;
use crate::auth::fetch::Fetcher;
use crate::auth::jwks::{Jwks, RefreshTask};
use crate::auth::{CachingVerifier, Provider, Verifier};
use crate::config::{Config, ProviderConfig};
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::ratelimit::{self, RateLimits};
use crate::routing::RouteIndex;
use crate::tls::TlsError;

/// The request-time state of one configuration.
pub struct Snapshot {
    /// The validated config.
    pub config: Config,
    /// Token verification.
    pub verifier: CachingVerifier,
    /// Upstreams, indexed like `config.upstreams`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// `config.routes` by path segment.
    pub route_index: RouteIndex,
    /// Per-organization rate limiters of the routes that have a limit.
    pub rate_limits: RateLimits,
}

impl Snapshot {
    /// Builds the state of `config`. What `previous` already has is carried
    /// over instead of rebuilt: an unchanged provider keeps its keys, its
    /// refresh task and its cached verdicts; a provider whose key source is
    /// unchanged keeps its keys and refresh task; an unchanged upstream
    /// keeps its connection pool; a route whose name and rate limit are
    /// unchanged keeps its organizations' buckets. Everything else starts
    /// fresh, and a new JWKS starts refreshing in the background at once.
    pub fn build(
        config: Config,
        metrics: &Arc<Metrics>,
        tokens: &Arc<TokenCache>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, TlsError> {
        let old_providers = previous.map_or(&[][..], |s| s.verifier.inner().providers());
        let mut providers = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            if let Some(same) = old_providers.iter().find(|o| o.config == *p) {
                providers.push(same.clone());
                continue;
            }
            let provider = match old_providers.iter().find(|o| same_key_source(&o.config, p)) {
                Some(keys) => Provider::new(p.clone(), keys.jwks.clone(), keys.refresh_task()),
                None => {
                    let fetcher = Fetcher::new(p.ca_file.as_deref())?;
                    metrics.jwks_keys.with_label_values(&[&p.issuer]).set(0);
                    let jwks = Arc::new(Jwks::new(p, fetcher, metrics.clone()));
                    let task = Arc::new(RefreshTask::spawn(jwks.clone()));
                    Provider::new(p.clone(), jwks, Some(task))
                }
            };
            providers.push(Arc::new(provider));
        }

        let old_upstreams = previous.map_or(&[][..], |s| &s.upstreams[..]);
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for u in &config.upstreams {
            if let Some(same) = old_upstreams.iter().find(|o| o.config == *u) {
                upstreams.push(same.clone());
                continue;
            }
            for kind in ["connect", "reset", "timeout", "saturated"] {
                metrics.upstream_errors.with_label_values(&[&u.name, kind]);
            }
            upstreams.push(Arc::new(Upstream::new(u.clone())?));
        }
        for r in &config.routes {
            metrics.request_duration.with_label_values(&[&r.name]);
        }
        let rate_limits = RateLimits::build(
            config
                .routes
                .iter()
                .filter_map(|r| Some((&*r.name, r.rate_limit?))),
            previous.map(|s| &s.rate_limits),
            metrics,
            ratelimit::SWEEP_INTERVAL,
        );
        let verifier =
            CachingVerifier::new(Verifier::new(providers), tokens.clone(), metrics.clone());
        Ok(Snapshot {
            route_index: RouteIndex::new(&config.routes),
            config,
            verifier,
            upstreams,
            rate_limits,
        })
    }

    /// Ready when every provider has usable keys; the reason otherwise.
    pub fn readiness(&self) -> Result<(), String> {
        for p in self.verifier.inner().providers() {
            if !p.jwks.is_ready() {
                return Err(format!("JWKS of issuer {} not loaded", p.config.issuer));
            }
        }
        Ok(())
    }
}

/// Whether two providers fetch the same keys the same way, so one JWKS
/// cache can serve both.
fn same_key_source(a: &ProviderConfig, b: &ProviderConfig) -> bool {
    a.issuer == b.issuer
        && a.jwks == b.jwks
        && a.ca_file == b.ca_file
        && a.cache_file == b.cache_file
        && a.allow_insecure_http == b.allow_insecure_http
        && a.refresh == b.refresh
        && a.min_refetch_interval == b.min_refetch_interval
        && a.max_stale == b.max_stale
}
