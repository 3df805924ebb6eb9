//! `idp-gate explain`: what the gateway would do with one request, step by
//! step, without serving anything. The token's signature and any secret are
//! never printed.

use std::fmt::Write as _;
use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value};

use crate::auth::authorize;
use crate::auth::cache::TokenCache;
use crate::auth::verify::{decode_json, now_secs};
use crate::config::Config;
use crate::error::GateError;
use crate::metrics::Metrics;
use crate::routing::{self, Access};
use crate::snapshot::Snapshot;

/// The request to explain.
pub struct ExplainRequest<'a> {
    /// The bearer token, if any.
    pub token: Option<&'a str>,
    /// Method.
    pub method: Method,
    /// Path (a query after `?` is ignored for matching).
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

/// Walks the request path for `req` against `config`, fetching the JWKS
/// once to check the signature.
pub async fn explain(config: Config, req: ExplainRequest<'_>) -> Explanation {
    let mut out = String::new();
    let refusal = walk(config, &req, &mut out).await.err();
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
    Explanation {
        report: out,
        refusal,
    }
}

async fn walk(config: Config, req: &ExplainRequest<'_>, out: &mut String) -> Result<(), GateError> {
    let raw_path = req.path.split('?').next().unwrap_or(req.path);
    let canonical = match routing::canonicalize(raw_path) {
        Ok(c) => c,
        Err(why) => {
            let _ = writeln!(out, "path: refused: {why}");
            return Err(why.into());
        }
    };
    let path = canonical.matched();
    let Some(route) = routing::find(&config.routes, req.host, &req.method, path).cloned() else {
        let _ = writeln!(out, "route: no route matches {} {path}", req.method);
        return Err(GateError::NoRoute);
    };
    let _ = writeln!(out, "route: {} (matched {} {path})", route.name, req.method);
    if let Err(why) = route.check_parameters(&canonical) {
        let _ = writeln!(out, "path: refused: {why}");
        return Err(why.into());
    }

    let upstream_name = |index: usize, config: &Config| {
        config
            .upstreams
            .get(index)
            .map(|u| format!("{} ({})", u.name, u.url))
            .unwrap_or_default()
    };

    let (allow, providers) = match &route.access {
        Access::Public => {
            out.push_str("auth: none (public route)\n");
            let _ = writeln!(out, "upstream: {}", upstream_name(route.upstream, &config));
            return Ok(());
        }
        Access::Jwt {
            allow, providers, ..
        } => (allow.clone(), providers.clone()),
    };
    let Some(token) = req.token else {
        out.push_str("token: none given\n");
        return Err(crate::error::AuthFailure::MissingToken.into());
    };
    describe_token(token, out);

    let trusted = config.organizations.clone();
    let config_for_names = config.clone();
    // A private registry: explain exports nothing, but the JWKS cache counts into one.
    let metrics = match Metrics::new(false) {
        Ok(m) => std::sync::Arc::new(m),
        Err(e) => {
            let _ = writeln!(out, "setup: {e}");
            return Err(crate::error::AuthFailure::JwksUnavailable.into());
        }
    };
    let runtime = match Snapshot::build(config, &metrics, &Arc::new(TokenCache::default()), None) {
        Ok(built) => built,
        Err(e) => {
            let _ = writeln!(out, "setup: {e}");
            return Err(crate::error::AuthFailure::JwksUnavailable.into());
        }
    };
    let jwks: Vec<_> = runtime
        .verifier
        .inner()
        .providers()
        .iter()
        .map(|p| p.jwks.clone())
        .collect();
    for j in &jwks {
        match j.refresh().await {
            Ok(_) => {
                let n = j.keys().map_or(0, |l| l.keys.len());
                let _ = writeln!(out, "jwks: {} usable keys for issuer {}", n, j.issuer());
            }
            Err(e) => {
                let _ = writeln!(out, "jwks: not loaded for issuer {}: {e}", j.issuer());
            }
        }
    }
    let identity = match runtime
        .verifier
        .verify(token, providers.as_deref(), now_secs())
        .await
    {
        Ok(identity) => {
            out.push_str("verification: signature, issuer, audience and times ok\n");
            identity
        }
        Err(reason) => {
            let _ = writeln!(out, "verification: failed: {reason}");
            return Err(reason.into());
        }
    };
    match authorize(&identity, &allow, trusted.as_ref()) {
        Ok(()) => {
            let _ = writeln!(
                out,
                "authorization: ok (organization {}, scopes {})",
                identity.organization.as_deref().unwrap_or("-"),
                if identity.scopes.is_empty() {
                    "-".to_string()
                } else {
                    identity.scopes.join(" ")
                }
            );
        }
        Err(reason) => {
            let _ = writeln!(out, "authorization: failed: {reason}");
            return Err(reason.into());
        }
    }
    let index = route.upstream_for(identity.organization.as_deref());
    let _ = writeln!(out, "upstream: {}", upstream_name(index, &config_for_names));
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
