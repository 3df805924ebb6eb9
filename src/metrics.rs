//! Prometheus metrics, all prefixed `idp_gate_`, in one registry per process.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::error::AuthFailure;

/// Per-organization series stop growing here; later organizations count as "other".
const MAX_ORGANIZATION_LABELS: usize = 1000;

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// `requests_total{route,method,status}`.
    pub requests: IntCounterVec,
    /// `request_duration_seconds{route}`.
    pub request_duration: HistogramVec,
    /// `auth_failures_total{reason}`.
    pub auth_failures: IntCounterVec,
    /// `upstream_requests_total{upstream,status}`.
    pub upstream_requests: IntCounterVec,
    /// `upstream_errors_total{upstream,kind}`.
    pub upstream_errors: IntCounterVec,
    /// `jwks_fetches_total{result}`.
    pub jwks_fetches: IntCounterVec,
    /// `jwks_keys{issuer}`.
    pub jwks_keys: IntGaugeVec,
    /// `config_reloads_total{result}` (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    /// `config_last_reload_success_timestamp_seconds`: the start, then each
    /// successful reload.
    pub config_last_reload_success: Gauge,
    /// `inflight_requests`.
    pub inflight: IntGauge,
    /// `connections_refused_total{reason}`.
    pub connections_refused: IntCounterVec,
    /// `log_lines_dropped_total`, caught up with the log writer at each scrape.
    log_lines_dropped: IntCounter,
    /// `upgrades_total{route}`.
    pub upgrades: IntCounterVec,
    /// `open_tunnels`: upgraded connections open now.
    pub open_tunnels: IntGauge,
    /// `client_timeouts_total{kind}`: requests ended because the client
    /// stalled (`request_body`, `response_write`, `tunnel_idle`).
    pub client_timeouts: IntCounterVec,
    /// `rate_limited_total{route}`.
    pub rate_limited: IntCounterVec,
    /// `token_cache_hits_total`.
    pub token_cache_hits: IntCounter,
    /// `token_cache_misses_total`.
    pub token_cache_misses: IntCounter,
    /// `requests_by_organization_total{organization}`, registered only when enabled.
    by_organization: Option<IntCounterVec>,
    seen_organizations: Mutex<HashSet<String>>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("idp_gate")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new(organization_label: bool) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(opts(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let requests = counter_vec(
            "requests_total",
            "Requests answered, by route, method and status.",
            &["route", "method", "status"],
        )?;
        let auth_failures = counter_vec(
            "auth_failures_total",
            "Requests refused by authentication or authorization, by reason.",
            &["reason"],
        )?;
        let upstream_requests = counter_vec(
            "upstream_requests_total",
            "Requests forwarded upstream, by upstream and response status.",
            &["upstream", "status"],
        )?;
        let upstream_errors = counter_vec(
            "upstream_errors_total",
            "Upstream failures, by upstream and kind (connect, reset, timeout, saturated).",
            &["upstream", "kind"],
        )?;
        let upgrades = counter_vec(
            "upgrades_total",
            "Connections upgraded through the gateway (WebSocket and others), by route.",
            &["route"],
        )?;
        let client_timeouts = counter_vec(
            "client_timeouts_total",
            "Exchanges ended because the client stalled, by kind (request_body: its body stopped arriving; response_write: it stopped reading the response; tunnel_idle: an upgraded connection fell silent).",
            &["kind"],
        )?;
        let rate_limited = counter_vec(
            "rate_limited_total",
            "Requests refused with 429 by a per-organization rate limit, by route.",
            &["route"],
        )?;
        let jwks_fetches = counter_vec(
            "jwks_fetches_total",
            "JWKS fetches, by result (success, error).",
            &["result"],
        )?;
        let config_reloads = counter_vec(
            "config_reloads_total",
            "Configuration reloads, by result (ok, error).",
            &["result"],
        )?;
        let connections_refused = counter_vec(
            "connections_refused_total",
            "Proxy connections closed at accept by a limit, by reason (max_connections, max_connections_per_client).",
            &["reason"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request to response headers, by route.",
            )
            .namespace("idp_gate")
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let jwks_keys = IntGaugeVec::new(
            opts("jwks_keys", "Usable keys in the cached JWKS, by issuer."),
            &["issuer"],
        )?;
        registry.register(Box::new(jwks_keys.clone()))?;
        let inflight = IntGauge::with_opts(opts(
            "inflight_requests",
            "Requests being handled right now.",
        ))?;
        registry.register(Box::new(inflight.clone()))?;
        let open_tunnels = IntGauge::with_opts(opts(
            "open_tunnels",
            "Upgraded connections (WebSocket and others) open right now.",
        ))?;
        registry.register(Box::new(open_tunnels.clone()))?;
        let token_cache_hits = IntCounter::with_opts(opts(
            "token_cache_hits_total",
            "Tokens found in the verified-token cache.",
        ))?;
        registry.register(Box::new(token_cache_hits.clone()))?;
        let log_lines_dropped = IntCounter::with_opts(opts(
            "log_lines_dropped_total",
            "Log lines dropped because stderr could not keep up (the gateway never waits for it).",
        ))?;
        registry.register(Box::new(log_lines_dropped.clone()))?;
        let token_cache_misses = IntCounter::with_opts(opts(
            "token_cache_misses_total",
            "Tokens verified from scratch.",
        ))?;
        registry.register(Box::new(token_cache_misses.clone()))?;
        let by_organization = if organization_label {
            Some(counter_vec(
                "requests_by_organization_total",
                "Authenticated requests by verified organization (at most 1000, then \"other\").",
                &["organization"],
            )?)
        } else {
            None
        };

        // Zeros up front: a reason or result that has not happened yet is
        // still a series, so alerts and rate() work from the start.
        for reason in AuthFailure::ALL_REASONS {
            auth_failures.with_label_values(&[reason]);
        }
        for reason in ["max_connections", "max_connections_per_client"] {
            connections_refused.with_label_values(&[reason]);
        }
        for kind in ["request_body", "response_write", "tunnel_idle"] {
            client_timeouts.with_label_values(&[kind]);
        }
        for result in ["success", "error"] {
            jwks_fetches.with_label_values(&[result]);
        }
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_last_reload_success = Gauge::with_opts(opts(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration in use was loaded (start or last successful reload), in Unix seconds.",
        ))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;

        Ok(Metrics {
            registry,
            requests,
            request_duration,
            auth_failures,
            upstream_requests,
            upstream_errors,
            jwks_fetches,
            jwks_keys,
            config_reloads,
            config_last_reload_success,
            inflight,
            connections_refused,
            log_lines_dropped,
            upgrades,
            open_tunnels,
            client_timeouts,
            rate_limited,
            token_cache_hits,
            token_cache_misses,
            by_organization,
            seen_organizations: Mutex::new(HashSet::new()),
        })
    }

    /// Counts an authenticated request for its organization, if enabled.
    pub fn count_organization(&self, organization: &str) {
        let Some(counter) = &self.by_organization else {
            return;
        };
        let label = {
            let mut seen = self
                .seen_organizations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if seen.contains(organization) {
                organization
            } else if seen.len() < MAX_ORGANIZATION_LABELS {
                seen.insert(organization.to_string());
                organization
            } else {
                "other"
            }
        };
        counter.with_label_values(&[label]).inc();
    }

    /// The text exposition. Families without a series yet (no request so
    /// far, say) still get their HELP and TYPE lines, so every metric name
    /// is visible from the first scrape.
    pub fn render(&self) -> Vec<u8> {
        let dropped = crate::logging::dropped_lines();
        let counted = self.log_lines_dropped.get();
        if dropped > counted {
            self.log_lines_dropped.inc_by(dropped - counted);
        }
        let families = self.registry.gather();
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        let present: HashSet<&str> = families.iter().map(|f| f.name()).collect();
        for collector in self.registry_descs() {
            if present.contains(collector.0.as_str()) {
                continue;
            }
            out.extend_from_slice(
                format!(
                    "# HELP {} {}\n# TYPE {} {}\n",
                    collector.0, collector.1, collector.0, collector.2
                )
                .as_bytes(),
            );
        }
        out
    }

    /// Name, help and type of every registered family.
    fn registry_descs(&self) -> Vec<(String, String, &'static str)> {
        let mut descs = Vec::new();
        let mut add = |c: &dyn prometheus::core::Collector, kind: &'static str| {
            for d in c.desc() {
                descs.push((d.fq_name.clone(), d.help.clone(), kind));
            }
        };
        add(&self.requests, "counter");
        add(&self.request_duration, "histogram");
        add(&self.auth_failures, "counter");
        add(&self.upstream_requests, "counter");
        add(&self.upstream_errors, "counter");
        add(&self.jwks_fetches, "counter");
        add(&self.jwks_keys, "gauge");
        add(&self.config_reloads, "counter");
        add(&self.inflight, "gauge");
        add(&self.upgrades, "counter");
        add(&self.rate_limited, "counter");
        add(&self.token_cache_hits, "counter");
        add(&self.token_cache_misses, "counter");
        if let Some(c) = &self.by_organization {
            add(c, "counter");
        }
        descs
    }
}

/// The method label: known methods by name, anything else as `OTHER` so a
/// client cannot mint series.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_series_are_capped() {
        let m = Metrics::new(true).unwrap();
        for i in 0..(MAX_ORGANIZATION_LABELS + 5) {
            m.count_organization(&format!("org_{i}"));
        }
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("idp_gate_requests_by_organization_total{organization=\"other\"} 5"));
        assert!(text.contains("organization=\"org_0\""));
    }

    #[test]
    fn organization_series_are_opt_in() {
        let m = Metrics::new(false).unwrap();
        m.count_organization("org_1");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("requests_by_organization_total"));
        assert!(text.contains("idp_gate_auth_failures_total{reason=\"expired\"} 0"));
        // No request yet, but the family is announced.
        assert!(text.contains("# TYPE idp_gate_requests_total counter"));
        assert!(text.contains("# TYPE idp_gate_request_duration_seconds histogram"));
        assert!(text.contains("# TYPE idp_gate_upgrades_total counter"));
        assert!(text.contains("# TYPE idp_gate_rate_limited_total counter"));
    }
}
