//! A [`Snapshot`]: everything one configuration needs at request time,
//! built whole and swapped whole. A request runs on the snapshot it
//! started with, so a reload never changes a request half-way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// The CA bundles' contents the clients were built with.
    ca_bundles: CaBundles,
}

impl Snapshot {
    /// Builds the state of `config`. What `previous` already has is carried
    /// over instead of rebuilt: an unchanged provider keeps its keys, its
    /// refresh task and its cached verdicts; a provider whose key source is
    /// unchanged keeps its keys and refresh task; an unchanged upstream
    /// keeps its connection pool; a route whose name and rate limit are
    /// unchanged keeps its organizations' buckets. Everything else starts
    /// fresh, and a new JWKS starts refreshing in the background at once.
    /// A CA bundle whose contents changed counts as a change of everything
    /// that trusts it, though its path is the same.
    pub fn build(
        config: Config,
        metrics: &Arc<Metrics>,
        tokens: &Arc<TokenCache>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, TlsError> {
        // Read before the clients are built: should a bundle change in
        // between, what is recorded is older than what a client trusts,
        // and the next reload rebuilds that client rather than keep it.
        let ca_bundles = CaBundles::read(&config);
        let same_trust = |ca_file: &Option<PathBuf>| {
            previous.is_some_and(|s| s.ca_bundles.same(&ca_bundles, ca_file.as_deref()))
        };
        let old_providers = previous.map_or(&[][..], |s| s.verifier.inner().providers());
        let mut providers = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let trusted = same_trust(&p.ca_file);
            if let Some(same) = old_providers.iter().find(|o| trusted && o.config == *p) {
                providers.push(same.clone());
                continue;
            }
            let provider = match old_providers
                .iter()
                .find(|o| trusted && same_key_source(&o.config, p))
            {
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
            let trusted = same_trust(&u.ca_file);
            if let Some(same) = old_upstreams.iter().find(|o| trusted && o.config == *u) {
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
            ca_bundles,
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

/// The SHA-256 of each CA bundle a config names, by path (`None`: it
/// could not be read).
struct CaBundles(HashMap<PathBuf, Option<[u8; 32]>>);

impl CaBundles {
    fn read(config: &Config) -> CaBundles {
        let providers = config.providers.iter().map(|p| &p.ca_file);
        let upstreams = config.upstreams.iter().map(|u| &u.ca_file);
        let digests = providers
            .chain(upstreams)
            .flatten()
            .map(|path| {
                let digest = std::fs::read(path).ok().map(|bytes| {
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                    let mut out = [0u8; 32];
                    out.copy_from_slice(d.as_ref());
                    out
                });
                (path.clone(), digest)
            })
            .collect();
        CaBundles(digests)
    }

    /// Whether `ca_file` (none: the system roots alone) holds what it held
    /// when `self` was read, as `now` found it.
    fn same(&self, now: &CaBundles, ca_file: Option<&Path>) -> bool {
        match ca_file {
            None => true,
            Some(path) => match (self.0.get(path), now.0.get(path)) {
                (Some(Some(old)), Some(Some(new))) => old == new,
                _ => false,
            },
        }
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
