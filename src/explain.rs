//! `idp-gate explain`: what the gateway would do with one request, step by
//! step, without serving anything. The token's signature and any secret are
//! never printed: a token parameter in the query is shown as `[redacted]`,
//! and the report is scrubbed of every token it was given before it is
//! returned, in case one turns up where no token is expected.

use std::fmt::Write as _;
use std::sync::Arc;

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Method, Uri, header};
use serde_json::{Map, Value};

use crate::auth::cache::TokenCache;
use crate::auth::token::{self, TokenSource};
use crate::auth::verify::decode_json;
use crate::clock::now_secs;
use crate::config::Config;
use crate::decision::{RequestFacts, decide};
use crate::error::GateError;
use crate::metrics::Metrics;
use crate::request_id::RequestId;
use crate::snapshot::Snapshot;

/// The request to explain.
pub struct ExplainRequest<'a> {
    /// The bearer token, if any.
    pub token: Option<&'a str>,
    /// Method.
    pub method: Method,
    /// Path, with its query if any.
    pub path: &'a str,
    /// `Host`, if the routes match on it.
    pub host: Option<&'a str>,
}

/// The verdict: the report, and the status the gateway would answer with
/// (`None` when the request would be forwarded).
pub struct Explanation {
    /// Human-readable report, one step per line.
    pub report: String,
    /// The refusal, if any.
    pub refusal: Option<GateError>,
}

/// Decides on `req` against `config` exactly as the gateway would (the
/// same [`decide`]), fetching each provider's keys once, and reports the
/// decision step by step.
pub async fn explain(config: Config, req: ExplainRequest<'_>) -> Explanation {
    let mut out = String::new();
    let sources: Vec<TokenSource> = config
        .providers
        .iter()
        .flat_map(|p| p.token_sources.iter().cloned())
        .collect();
    let query = req.path.split_once('?').map(|(_, q)| q);
    let in_query: Vec<(String, String)> = query
        .into_iter()
        .flat_map(token::query_params)
        .filter(|p| token::is_query_source(&sources, &p.name))
        .map(|p| (p.name.to_string(), p.value().into_owned()))
        .collect();
    let refusal = walk(config, &req, &sources, &in_query, &mut out)
        .await
        .err();
    match &refusal {
        None => out.push_str("verdict: forwarded\n"),
        Some(e) => {
            let _ = writeln!(
                out,
                "verdict: refused with {} {}",
                e.status().as_u16(),
                e.reason().map_or_else(|| e.to_string(), str::to_string)
            );
        }
    }
    let secrets = req
        .token
        .into_iter()
        .chain(in_query.iter().map(|(_, v)| v.as_str()));
    Explanation {
        report: scrub(out, secrets),
        refusal,
    }
}

/// `report` with every token, and every token's signature, replaced by
/// `[redacted]`. Values too short to be a token are left alone: replacing
/// them would garble the report and hide nothing.
fn scrub<'t>(mut report: String, tokens: impl Iterator<Item = &'t str>) -> String {
    const SHORTEST: usize = 16;
    for t in tokens {
        let signature = t.rsplit('.').next().unwrap_or_default();
        for secret in [t, signature] {
            if secret.len() >= SHORTEST && report.contains(secret) {
                report = report.replace(secret, "[redacted]");
            }
        }
    }
    report
}

async fn walk(
    config: Config,
    req: &ExplainRequest<'_>,
    sources: &[TokenSource],
    in_query: &[(String, String)],
    out: &mut String,
) -> Result<(), GateError> {
    let uri: Uri = req
        .path
        .parse()
        .map_err(|_| GateError::BadRequest("the request target is not a valid URI"))?;
    let shown_query = |q: Option<&str>| {
        q.map_or(String::new(), |q| {
            format!("?{}", token::redact_query(q, sources))
        })
    };
    let _ = writeln!(
        out,
        "request: {} {}{}",
        req.method,
        uri.path(),
        shown_query(uri.query())
    );
    let mut headers = HeaderMap::new();
    if let Some(h) = req.host {
        let v = HeaderValue::from_str(h)
            .map_err(|_| GateError::BadRequest("the Host header is not valid"))?;
        headers.insert(header::HOST, v);
    }
    if let Some(t) = req.token {
        describe_token(t, out);
        let v = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| GateError::from(crate::error::AuthFailure::Malformed))?;
        headers.insert(header::AUTHORIZATION, v);
    } else if let Some((name, value)) = in_query.first() {
        let _ = writeln!(out, "token: from query parameter {name}");
        describe_token(value, out);
    } else {
        out.push_str("token: none given\n");
    }

    // A private registry: explain exports nothing, but the JWKS cache counts into one.
    let metrics = match Metrics::new(false) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            let _ = writeln!(out, "setup: {e}");
            return Err(crate::error::AuthFailure::JwksUnavailable.into());
        }
    };
    let snapshot = match Snapshot::build(config, &metrics, &Arc::new(TokenCache::default()), None) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "setup: {e}");
            return Err(crate::error::AuthFailure::JwksUnavailable.into());
        }
    };
    for p in snapshot.verifier.inner().providers() {
        match p.jwks.refresh().await {
            Ok(_) => {
                let n = p.jwks.keys().map_or(0, |l| l.keys.len());
                let _ = writeln!(out, "jwks: {n} usable keys for issuer {}", p.config.issuer);
            }
            Err(e) => {
                let _ = writeln!(out, "jwks: not loaded for issuer {}: {e}", p.config.issuer);
            }
        }
    }

    let facts = RequestFacts {
        method: &req.method,
        uri: &uri,
        headers: &headers,
        client: IpAddr::from([127, 0, 0, 1]),
        tls: false,
        request_id: &RequestId::from_str_or_fresh("explain"),
        now: now_secs(),
        draining: false,
        next_hop: true,
    };
    let decision = decide(&snapshot, &facts).await;
    match decision.route {
        Some(r) => {
            let _ = writeln!(out, "route: {} ({} {})", r.name, req.method, uri.path());
            if let Some(limit) = snapshot.rate_limits.limit(&r.name) {
                let _ = writeln!(
                    out,
                    "rate limit: {limit}, per replica (explain spends none of a running gateway's budget)"
                );
            }
        }
        None => {
            let _ = writeln!(out, "route: none matched {} {}", req.method, uri.path());
        }
    }
    if let Some(id) = &decision.identity {
        let _ = writeln!(
            out,
            "identity: verified (organization {}, subject {}, scopes {})",
            id.organization.as_deref().unwrap_or("-"),
            id.subject.as_deref().unwrap_or("-"),
            if id.scopes.is_empty() {
                "-".to_string()
            } else {
                id.scopes.join(" ")
            }
        );
        let _ = writeln!(
            out,
            "authorization: {}",
            if decision.authorized { "ok" } else { "failed" }
        );
    }
    let forward = decision.verdict?;
    let _ = writeln!(
        out,
        "upstream: {} ({}), path sent: {}{}",
        forward
            .upstream
            .as_ref()
            .map_or("-", |u| u.config.name.as_str()),
        forward
            .upstream
            .as_ref()
            .map_or(String::new(), |u| u.config.url.to_string()),
        forward.path,
        shown_query(forward.query.as_deref())
    );
    for (name, value) in &forward.rewrite.set {
        // The credential itself is never printed.
        let shown = if name == header::AUTHORIZATION {
            "Bearer [the verified token]".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        let _ = writeln!(out, "header set: {name}: {shown}");
    }
    Ok(())
}

/// Prints the header and claims the decision depends on; never the signature.
fn describe_token(token: &str, out: &mut String) {
    let mut parts = token.split('.');
    let mut decode = || decode_json(parts.next()?).ok();
    let header = decode();
    let claims = decode();
    let (Some(header), Some(claims)) = (header, claims) else {
        out.push_str("token: not a decodable JWT\n");
        return;
    };
    let show = |m: &Map<String, Value>, k: &str| {
        m.get(k).map_or_else(|| "-".to_string(), |v| v.to_string())
    };
    let _ = writeln!(
        out,
        "token header: alg={} kid={}",
        show(&header, "alg"),
        show(&header, "kid")
    );
    let now = now_secs() as i64;
    let relative = |k: &str| {
        claims.get(k).and_then(Value::as_i64).map_or_else(
            || "-".to_string(),
            |t| format!("{t} ({:+}s from now)", t - now),
        )
    };
    let _ = writeln!(
        out,
        "token claims: iss={} aud={} sub={} exp={} nbf={} iat={}",
        show(&claims, "iss"),
        show(&claims, "aud"),
        show(&claims, "sub"),
        relative("exp"),
        relative("nbf"),
        relative("iat"),
    );
}
