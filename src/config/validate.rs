//! Raw config → compiled [`Config`], collecting every problem in one pass.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Method};
use jsonwebtoken::Algorithm;
use url::Url;

use super::raw::{RawConfig, RawIdp, RawRateLimit, RawRoute, RawTokenSource};
use super::{
    ClaimRef, Config, Forwarding, JwksSource, Limits, OrganizationBinding, Problem, ProviderConfig,
    TlsFiles, TokenSource, UpstreamConfig, UpstreamProtocol, expand, is_secure_or_loopback,
};
use crate::ratelimit::RateLimit;
use crate::routing::policy::{Allow, ClaimRule, Organizations};
use crate::routing::{Access, PathMatch, Route, canonicalize};

/// Collects problems; a path that already has one gets no second, so a
/// value that failed expansion is not also reported as, say, a bad URL.
struct Problems {
    list: Vec<Problem>,
    paths: HashSet<String>,
}

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        if self.paths.insert(path.clone()) {
            self.list.push(Problem::new(path, message));
        }
    }
}

pub(super) fn from_yaml(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut value: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| vec![Problem::new("", format!("invalid YAML: {e}"))])?;
    if value.is_null() {
        return Err(vec![Problem::new("", "the file is empty")]);
    }
    let mut expansion = Vec::new();
    expand::expand_tree(&mut value, "", env, &mut expansion);
    let mut problems = Problems {
        paths: expansion.iter().map(|p| p.path.clone()).collect(),
        list: expansion,
    };
    // Unknown keys are reported and dropped so the rest of the file still
    // gets checked in this same pass; any other schema error ends it.
    let raw: RawConfig = loop {
        match serde_path_to_error::deserialize(value.clone()) {
            Ok(raw) => break raw,
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = e.inner().to_string();
                let unknown_key = message.starts_with("unknown field");
                problems.add(path, message);
                if !unknown_key || problems.list.len() > 100 || !remove_at(&mut value, e.path()) {
                    return Err(problems.list);
                }
            }
        }
    };
    let config = compile(raw, &mut problems);
    if problems.list.is_empty() {
        Ok(config)
    } else {
        Err(problems.list)
    }
}

/// Removes the mapping entry at `path`; false if there is none.
fn remove_at(value: &mut serde_yaml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, serde_yaml::Value::Mapping(m)) => {
                match m.get_mut(key.as_str()) {
                    Some(child) => child,
                    None => return false,
                }
            }
            (Segment::Seq { index }, serde_yaml::Value::Sequence(s)) => match s.get_mut(*index) {
                Some(child) => child,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, serde_yaml::Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

fn compile(raw: RawConfig, p: &mut Problems) -> Config {
    let listen = socket_addr(&raw.listen, "listen", p);
    let admin_listen = socket_addr(&raw.admin.listen, "admin.listen", p);
    if listen.is_some_and(|l| l.port() != 0) && listen == admin_listen {
        p.add(
            "admin.listen",
            "must differ from `listen`: the admin API is never served on the proxy port",
        );
    }
    let tls = raw.tls.map(|t| TlsFiles {
        cert_file: existing_file(&t.cert_file, "tls.certFile", p),
        key_file: existing_file(&t.key_file, "tls.keyFile", p),
    });

    let idp_configured = raw.idp.is_some() || !raw.idps.is_empty();
    let providers = providers(raw.idp, raw.idps, p);
    let provider_index: HashMap<&str, usize> = providers
        .iter()
        .enumerate()
        .map(|(i, pr)| (pr.name.as_str(), i))
        .collect();

    let mut upstreams = Vec::new();
    let mut upstream_index = HashMap::new();
    for (name, u) in raw.upstreams {
        let path = format!("upstreams.{name}");
        let url = http_url(&u.url, &format!("{path}.url"), p);
        if u.connect_timeout_ms == 0 {
            p.add(format!("{path}.connectTimeoutMs"), "must be greater than 0");
        }
        if u.request_timeout_ms == 0 {
            p.add(format!("{path}.requestTimeoutMs"), "must be greater than 0");
        }
        let ca_file = optional_file(&u.ca_file, &format!("{path}.caFile"), p);
        let protocol = upstream_protocol(&u.protocol, url.as_ref(), &path, p);
        if u.idle_timeout_ms == 0 {
            p.add(format!("{path}.idleTimeoutMs"), "must be greater than 0");
        }
        upstream_index.insert(name.clone(), upstreams.len());
        upstreams.push(UpstreamConfig {
            name,
            url: url.unwrap_or_else(placeholder_url),
            connect_timeout: Duration::from_millis(u.connect_timeout_ms),
            request_timeout: Duration::from_millis(u.request_timeout_ms),
            ca_file,
            max_connections: positive(u.max_connections, &format!("{path}.maxConnections"), p),
            protocol,
            idle_timeout: Duration::from_millis(u.idle_timeout_ms),
            host: upstream_host(&u.host, &format!("{path}.host"), p),
        });
    }

    let organizations = raw.organizations.map(|orgs| {
        orgs.into_iter()
            .map(|(id, o)| (id, o.name))
            .collect::<HashMap<_, _>>()
    });

    let default_rate_limit = raw
        .rate_limit
        .as_ref()
        .and_then(|r| rate_limit(r, "rateLimit", p));

    if raw.routes.is_empty() {
        p.add("routes", "at least one route is required");
    }
    let mut names = HashSet::new();
    let mut routes: Vec<Route> = raw
        .routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let path = format!("routes[{i}]");
            if !names.insert(r.name.clone()) {
                p.add(
                    format!("{path}.name"),
                    format!("duplicate route name {:?}", r.name),
                );
            }
            route(
                r,
                &path,
                &upstream_index,
                &provider_index,
                &providers,
                idp_configured,
                p,
            )
        })
        .collect();
    // The default is for protected routes only: a public route has no
    // organization to count by, and its callers would share one bucket.
    for r in &mut routes {
        if r.rate_limit.is_none() && matches!(r.access, Access::Jwt { .. }) {
            r.rate_limit = default_rate_limit;
        }
    }

    let binding = match raw.organization_binding {
        Some(b) => OrganizationBinding {
            header: b
                .header
                .and_then(|h| header_name(&h, "organizationBinding.header", p)),
            query_param: b.query_param.filter(|q| !q.is_empty()),
        },
        None => OrganizationBinding::default(),
    };

    let f = raw.forwarding;
    let mut claim_paths = Vec::new();
    let claims = f
        .claims_headers
        .iter()
        .filter_map(|(claim, header)| {
            let path = key_path("forwarding.claimsHeaders", claim);
            if claim.is_empty() {
                p.add(&path, "claim name is empty");
                return None;
            }
            let h = header_name(header, &path, p)?;
            claim_paths.push(path);
            Some((ClaimRef::parse(claim), h))
        })
        .collect();
    let forwarding = Forwarding {
        user: header_name(
            &f.identity_headers.user,
            "forwarding.identityHeaders.user",
            p,
        )
        .unwrap_or(HeaderName::from_static("x-forwarded-user")),
        organization: header_name(
            &f.identity_headers.organization,
            "forwarding.identityHeaders.organization",
            p,
        )
        .unwrap_or(HeaderName::from_static("x-forwarded-org")),
        subject: header_name(
            &f.identity_headers.subject,
            "forwarding.identityHeaders.subject",
            p,
        )
        .unwrap_or(HeaderName::from_static("x-forwarded-sub")),
        claims,
        forward_authorization: f.forward_authorization,
    };
    let identity = [
        (&forwarding.user, "forwarding.identityHeaders.user"),
        (
            &forwarding.organization,
            "forwarding.identityHeaders.organization",
        ),
        (&forwarding.subject, "forwarding.identityHeaders.subject"),
    ]
    .map(|(h, path)| (h, path.to_string(), Sets::Identity));
    let gateway_headers = identity
        .into_iter()
        .chain(
            binding
                .header
                .iter()
                .map(|h| (h, "organizationBinding.header".to_string(), Sets::Binding)),
        )
        .chain(
            forwarding
                .claims
                .iter()
                .zip(claim_paths)
                .map(|((_, h), path)| (h, path, Sets::Claim)),
        );
    check_gateway_headers(gateway_headers, p);

    // Headers the gateway alone may set: computed once, stripped from
    // every request.
    let protected_headers = forwarding
        .identity_header_names()
        .chain(binding.header.as_ref())
        .chain(std::iter::once(&crate::headers::X_WSO2_ORGANIZATION))
        .cloned()
        .collect();
    Config {
        protected_headers,
        listen: listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8080))),
        admin_listen: admin_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9901))),
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_seconds),
        tls,
        providers,
        upstreams,
        routes,
        organizations,
        binding,
        forwarding,
        organization_label: raw.metrics.organization_label,
        limits: limits(&raw.limits, p),
    }
}

fn limits(l: &super::raw::RawLimits, p: &mut Problems) -> Limits {
    let ms = |v: u64, key: &str, p: &mut Problems| {
        Duration::from_millis(positive(v, &format!("limits.{key}"), p) as u64)
    };
    Limits {
        header_read_timeout: ms(l.header_read_timeout_ms, "headerReadTimeoutMs", p),
        idle_timeout: ms(l.idle_timeout_ms, "idleTimeoutMs", p),
        max_connections: positive(l.max_connections, "limits.maxConnections", p),
        max_connections_per_client: positive(
            l.max_connections_per_client,
            "limits.maxConnectionsPerClient",
            p,
        ),
        max_header_bytes: {
            let v = positive(l.max_header_bytes, "limits.maxHeaderBytes", p);
            // hyper needs room for at least one read buffer.
            if v < 8192 {
                p.add("limits.maxHeaderBytes", "must be at least 8192");
            }
            v
        },
        max_request_body_bytes: (l.max_request_body_bytes > 0).then_some(l.max_request_body_bytes),
        request_body_timeout: ms(l.request_body_timeout_ms, "requestBodyTimeoutMs", p),
        response_write_timeout: ms(l.response_write_timeout_ms, "responseWriteTimeoutMs", p),
        tunnel_idle_timeout: ms(l.tunnel_idle_timeout_ms, "tunnelIdleTimeoutMs", p),
    }
}

/// An upstream's `Host`: an authority without user information, path or
/// anything else a header could smuggle.
fn upstream_host(raw: &str, path: &str, p: &mut Problems) -> Option<http::HeaderValue> {
    if raw.is_empty() {
        return None;
    }
    let valid = raw
        .parse::<http::uri::Authority>()
        .ok()
        .filter(|a| a.as_str() == raw && !raw.contains('@'))
        .and_then(|_| http::HeaderValue::from_str(raw).ok());
    if valid.is_none() {
        p.add(
            path,
            "must be a host name with an optional port, e.g. `api.internal:8443`",
        );
    }
    valid
}

/// A count or duration that must be at least 1 (and fit in memory).
fn positive(v: u64, path: &str, p: &mut Problems) -> usize {
    match usize::try_from(v) {
        Ok(0) => {
            p.add(path, "must be greater than 0");
            1
        }
        Ok(v) if v <= u32::MAX as usize => v,
        _ => {
            p.add(path, format!("{v} is too large"));
            1
        }
    }
}

fn providers(idp: Option<RawIdp>, idps: Vec<RawIdp>, p: &mut Problems) -> Vec<ProviderConfig> {
    let mut out = Vec::new();
    match (idp, idps.is_empty()) {
        (Some(_), false) => {
            p.add("idps", "use either `idp` or `idps`, not both");
        }
        (Some(idp), true) => {
            let name = idp.name.clone().unwrap_or_else(|| "default".into());
            out.extend(provider(idp, name, "idp", p));
        }
        (None, false) => {
            let mut names = HashSet::new();
            let mut cache_files: Vec<(PathBuf, String, String)> = Vec::new();
            for (i, idp) in idps.into_iter().enumerate() {
                let path = format!("idps[{i}]");
                let cache_file = &idp.jwks.cache_file;
                if !cache_file.is_empty() {
                    let cache_path = format!("{path}.jwks.cacheFile");
                    let same = lexical(cache_file);
                    match cache_files.iter().find(|(f, _, _)| *f == same) {
                        Some((_, first_path, first)) => p.add(
                            &cache_path,
                            format!(
                                "{cache_file:?} is the same file as {first_path} ({first:?}): two providers would overwrite each other's keys"
                            ),
                        ),
                        None => cache_files.push((same, cache_path, cache_file.clone())),
                    }
                }
                let Some(name) = idp.name.clone().filter(|n| !n.is_empty()) else {
                    p.add(format!("{path}.name"), "every entry of `idps` needs a name");
                    continue;
                };
                if !names.insert(name.clone()) {
                    p.add(
                        format!("{path}.name"),
                        format!("duplicate provider name {name:?}"),
                    );
                }
                out.extend(provider(idp, name, &path, p));
            }
            let mut issuers = HashSet::new();
            for (i, pr) in out.iter().enumerate() {
                if !issuers.insert(pr.issuer.clone()) {
                    p.add(
                        format!("idps[{i}].issuer"),
                        format!("issuer {:?} is configured twice", pr.issuer),
                    );
                }
            }
        }
        (None, true) => {}
    }
    out
}

fn provider(idp: RawIdp, name: String, path: &str, p: &mut Problems) -> Option<ProviderConfig> {
    let issuer_ok = if idp.issuer.is_empty() {
        p.add(format!("{path}.issuer"), "is required");
        false
    } else {
        http_url(&idp.issuer, &format!("{path}.issuer"), p)
            .is_some_and(|u| key_source(&u, idp.allow_insecure_http, &format!("{path}.issuer"), p))
    };
    let jwks = if idp.jwks_endpoint.is_empty() {
        // Discovery per OIDC: the issuer without its trailing slash.
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            idp.issuer.trim_end_matches('/')
        );
        Url::parse(&discovery).ok().map(JwksSource::Discovery)
    } else {
        http_url(&idp.jwks_endpoint, &format!("{path}.jwksEndpoint"), p)
            .filter(|u| {
                key_source(
                    u,
                    idp.allow_insecure_http,
                    &format!("{path}.jwksEndpoint"),
                    p,
                )
            })
            .map(JwksSource::Url)
    };

    if idp.audiences.is_empty() {
        p.add(
            format!("{path}.audiences"),
            "at least one audience is required, or tokens minted for any other API of the provider would be accepted",
        );
    }
    for (i, a) in idp.audiences.iter().enumerate() {
        if a.is_empty() {
            p.add(
                format!("{path}.audiences[{i}]"),
                "is empty (an unset environment variable?)",
            );
        }
    }
    for (claim, key) in [
        (&idp.username_claim, "usernameClaim"),
        (&idp.organization_claim, "organizationClaim"),
    ] {
        if claim.is_empty() {
            p.add(format!("{path}.{key}"), "must not be empty");
        }
    }

    let mut algorithms = Vec::new();
    if idp.algorithms.is_empty() {
        p.add(
            format!("{path}.algorithms"),
            "must list at least one algorithm",
        );
    }
    for (i, a) in idp.algorithms.iter().enumerate() {
        let apath = format!("{path}.algorithms[{i}]");
        if a.eq_ignore_ascii_case("none") {
            p.add(
                apath,
                "\"none\" is never allowed: unsigned tokens are refused",
            );
            continue;
        }
        match Algorithm::from_str(a) {
            Ok(alg) => {
                if !algorithms.contains(&alg) {
                    algorithms.push(alg);
                }
            }
            Err(_) => p.add(
                apath,
                format!(
                    "unknown algorithm {a:?} (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA HS256 HS384 HS512)"
                ),
            ),
        }
    }
    let wants_hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let client_secret = if wants_hmac {
        if idp.client_secret.len() < 32 {
            p.add(
                format!("{path}.clientSecret"),
                "HS256/384/512 in `algorithms` need a client secret of at least 32 bytes",
            );
        }
        Some(idp.client_secret)
    } else {
        None
    };

    let jwks_path = format!("{path}.jwks");
    for (v, key) in [
        (idp.jwks.refresh_seconds, "refreshSeconds"),
        (
            idp.jwks.min_refetch_interval_seconds,
            "minRefetchIntervalSeconds",
        ),
    ] {
        if v == 0 {
            p.add(format!("{jwks_path}.{key}"), "must be greater than 0");
        }
    }

    if idp.token_sources.is_empty() {
        p.add(
            format!("{path}.tokenSources"),
            "must list at least one source",
        );
    }
    let token_sources = idp
        .token_sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| token_source(s, &format!("{path}.tokenSources[{i}]"), p))
        .collect();

    let cache_file = (!idp.jwks.cache_file.is_empty()).then(|| PathBuf::from(&idp.jwks.cache_file));
    let ca_file = optional_file(&idp.ca_file, &format!("{path}.caFile"), p);

    if !issuer_ok {
        return None;
    }
    Some(ProviderConfig {
        name,
        issuer: idp.issuer,
        jwks: jwks?,
        username_claim: idp.username_claim,
        organization_claim: idp.organization_claim,
        audiences: idp.audiences,
        client_secret,
        algorithms,
        clock_skew: Duration::from_secs(idp.clock_skew_seconds),
        refresh: Duration::from_secs(idp.jwks.refresh_seconds.max(1)),
        min_refetch_interval: Duration::from_secs(idp.jwks.min_refetch_interval_seconds.max(1)),
        max_stale: Duration::from_secs(idp.jwks.max_stale_seconds),
        cache_file,
        token_sources,
        ca_file,
        allow_insecure_http: idp.allow_insecure_http,
        allow_unverified_email: idp.allow_unverified_email,
    })
}

/// Keys over plain HTTP can be swapped by anyone on the path, so a key
/// source must be HTTPS or loopback unless the operator opts out.
fn key_source(url: &Url, allow_insecure_http: bool, path: &str, p: &mut Problems) -> bool {
    if allow_insecure_http || is_secure_or_loopback(url) {
        return true;
    }
    p.add(
        path,
        format!(
            "{:?} is plain http:// to a non-loopback host: anyone on the network path could replace the signing keys; use https://, or set `allowInsecureHttp: true` on this provider to accept the risk",
            url.as_str()
        ),
    );
    false
}

fn token_source(s: &RawTokenSource, path: &str, p: &mut Problems) -> Option<TokenSource> {
    let set = [s.header.is_some(), s.query.is_some(), s.cookie.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        p.add(path, "give exactly one of `header`, `query` or `cookie`");
        return None;
    }
    if s.scheme.is_some() && s.header.is_none() {
        p.add(format!("{path}.scheme"), "only applies to `header`");
        return None;
    }
    if let Some(h) = &s.header {
        let name = header_name(h, &format!("{path}.header"), p)?;
        let scheme = match &s.scheme {
            Some(sch) if sch.is_empty() => None,
            Some(sch) => Some(sch.clone()),
            None if name == http::header::AUTHORIZATION => Some("Bearer".into()),
            None => None,
        };
        return Some(TokenSource::Header { name, scheme });
    }
    if let Some(q) = &s.query {
        if q.is_empty() {
            p.add(format!("{path}.query"), "must not be empty");
            return None;
        }
        return Some(TokenSource::Query(q.clone()));
    }
    match &s.cookie {
        Some(c) if !c.is_empty() => Some(TokenSource::Cookie(c.clone())),
        _ => {
            p.add(format!("{path}.cookie"), "must not be empty");
            None
        }
    }
}

fn route(
    r: RawRoute,
    path: &str,
    upstreams: &HashMap<String, usize>,
    provider_index: &HashMap<&str, usize>,
    provider_configs: &[ProviderConfig],
    idp_configured: bool,
    p: &mut Problems,
) -> Option<Route> {
    if r.name.is_empty() {
        p.add(format!("{path}.name"), "must not be empty");
    }
    let m = &r.matcher;
    let path_match = match (&m.path, &m.path_prefix) {
        (Some(exact), None) => {
            route_path(exact, &format!("{path}.match.path"), p).map(PathMatch::Exact)
        }
        (None, Some(prefix)) => route_path(prefix, &format!("{path}.match.pathPrefix"), p)
            .map(|c| PathMatch::Prefix(c.trim_end_matches('/').to_string())),
        (Some(_), Some(_)) => {
            p.add(
                format!("{path}.match"),
                "give `path` or `pathPrefix`, not both",
            );
            None
        }
        (None, None) => {
            p.add(format!("{path}.match"), "needs `path` or `pathPrefix`");
            None
        }
    };
    let methods = m.methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let upper = s.to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(m) if !upper.is_empty() => Some(m),
                    _ => {
                        p.add(
                            format!("{path}.match.methods[{i}]"),
                            format!("invalid method {s:?}"),
                        );
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    });
    if methods.as_ref().is_some_and(|m| m.is_empty()) {
        p.add(
            format!("{path}.match.methods"),
            "must not be empty (omit it for any method)",
        );
    }
    let host = m.host.as_ref().map(|h| h.to_ascii_lowercase());
    if host.as_ref().is_some_and(|h| h.is_empty()) {
        p.add(
            format!("{path}.match.host"),
            "must not be empty (omit it for any host)",
        );
    }

    let upstream = upstream_ref(&r.upstream, &format!("{path}.upstream"), upstreams, p);
    let mut organization_upstreams = HashMap::new();
    for (org, name) in &r.organization_upstreams {
        if let Some(i) = upstream_ref(
            name,
            &format!("{path}.organizationUpstreams.{org}"),
            upstreams,
            p,
        ) {
            organization_upstreams.insert(org.clone(), i);
        }
    }
    if r.strip_prefix && !matches!(path_match, Some(PathMatch::Prefix(_))) {
        p.add(format!("{path}.stripPrefix"), "needs `match.pathPrefix`");
    }

    let access = match r.auth.as_deref().unwrap_or("jwt") {
        "none" => {
            for (set, key) in [
                (r.allow.is_some(), "allow"),
                (
                    !r.organization_upstreams.is_empty(),
                    "organizationUpstreams",
                ),
                (r.providers.is_some(), "providers"),
            ] {
                if set {
                    p.add(
                        format!("{path}.{key}"),
                        "has no effect on a public route (`auth: none`): remove it or the `auth: none`",
                    );
                }
            }
            if r.rate_limit.is_some() {
                p.add(
                    format!("{path}.rateLimit"),
                    "counts per organization, and a public route (`auth: none`) has none: remove it or the `auth: none`",
                );
            }
            Access::Public
        }
        "jwt" => {
            if !idp_configured {
                p.add(
                    format!("{path}.auth"),
                    "a protected route needs an identity provider: configure `idp`",
                );
            }
            let allow = r.allow.map(|a| {
                // `"*"`: any organization, but the token must carry one
                // (omitting the list is what allows none).
                let organizations = match a.organizations {
                    None => Organizations::Unrestricted,
                    Some(orgs) if orgs.iter().any(|o| o == "*") => Organizations::AnyPresent,
                    Some(orgs) => {
                        if orgs.is_empty() {
                            p.add(
                                format!("{path}.allow.organizations"),
                                "is empty, so nobody could pass; omit it or use \"*\" for any organization",
                            );
                        }
                        Organizations::OneOf(orgs.into_iter().collect())
                    }
                };
                for (i, s) in a.scopes.iter().enumerate() {
                    if s.is_empty() || s.contains(' ') {
                        p.add(
                            format!("{path}.allow.scopes[{i}]"),
                            "must be one non-empty scope without spaces",
                        );
                    }
                }
                let claims = a
                    .claims
                    .into_iter()
                    .filter_map(|(name, values)| {
                        claim_rule(&name, values, &format!("{path}.allow.claims.{name}"), p)
                    })
                    .collect();
                Allow {
                    organizations,
                    scopes: a.scopes,
                    claims,
                }
            });
            let providers: Option<Vec<usize>> = r.providers.map(|names| {
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| match provider_index.get(n.as_str()) {
                        Some(ix) => Some(*ix),
                        None => {
                            p.add(
                                format!("{path}.providers[{i}]"),
                                format!("provider {n:?} is not defined in `idps`"),
                            );
                            None
                        }
                    })
                    .collect()
            });
            let mut token_sources: Vec<TokenSource> = Vec::new();
            for (i, pr) in provider_configs.iter().enumerate() {
                if providers.as_ref().is_some_and(|a| !a.contains(&i)) {
                    continue;
                }
                for s in &pr.token_sources {
                    if !token_sources.contains(s) {
                        token_sources.push(s.clone());
                    }
                }
            }
            Access::Jwt {
                allow: allow.unwrap_or_default(),
                providers,
                token_sources,
            }
        }
        other => {
            p.add(
                format!("{path}.auth"),
                format!("must be \"jwt\" or \"none\", got {other:?}"),
            );
            return None;
        }
    };

    let rate_limit = match (&access, &r.rate_limit) {
        (Access::Jwt { .. }, Some(raw)) => rate_limit(raw, &format!("{path}.rateLimit"), p),
        _ => None,
    };
    Some(Route {
        name: r.name.into(),
        host,
        methods,
        path: path_match?,
        access,
        upstream: upstream?,
        organization_upstreams,
        strip_prefix: r.strip_prefix,
        allow_path_parameters: m.allow_path_parameters,
        rate_limit,
    })
}

/// A `rateLimit` block: `perOrganization` as `N/s`, `N/m` or `N/h`, and
/// `burst` (default N).
fn rate_limit(raw: &RawRateLimit, path: &str, p: &mut Problems) -> Option<RateLimit> {
    let rate = &raw.per_organization;
    let parsed = RateLimit::parse(rate)
        .map_err(|why| p.add(format!("{path}.perOrganization"), format!("{rate:?} {why}")))
        .ok();
    let burst = match raw.burst {
        None => None,
        Some(b) => {
            let b = positive(b, &format!("{path}.burst"), p);
            Some(std::num::NonZeroU32::new(u32::try_from(b).ok()?)?)
        }
    };
    let parsed = parsed?;
    Some(RateLimit {
        burst: burst.unwrap_or(parsed.burst),
        ..parsed
    })
}

/// One `allow.claims` entry: scalar values, compared as text.
fn claim_rule(
    name: &str,
    values: super::raw::OneOrMany,
    path: &str,
    p: &mut Problems,
) -> Option<ClaimRule> {
    use super::raw::OneOrMany;
    if name.is_empty() {
        p.add(path, "claim name is empty");
        return None;
    }
    let values = match values {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(vs) => vs,
    };
    if values.is_empty() {
        p.add(
            path,
            "lists no value, so nobody could pass; remove the rule instead",
        );
        return None;
    }
    let mut out = Vec::new();
    for v in values {
        match v {
            serde_yaml::Value::String(s) => out.push(s),
            serde_yaml::Value::Number(n) => out.push(n.to_string()),
            serde_yaml::Value::Bool(b) => out.push(b.to_string()),
            other => {
                p.add(
                    path,
                    format!("values must be strings, numbers or booleans, not {other:?}"),
                );
                return None;
            }
        }
    }
    Some(ClaimRule {
        claim: ClaimRef::parse(name),
        values: out,
    })
}

/// A configured path in the form requests are matched in, so `/api/%61`
/// in the file means what it means on the wire.
fn route_path(s: &str, path: &str, p: &mut Problems) -> Option<String> {
    match canonicalize(s) {
        Ok(c) if c.has_parameters() => {
            p.add(
                path,
                "must not contain `;` (path parameters are never matched)",
            );
            None
        }
        Ok(c) => Some(c.matched().to_string()),
        Err(why) => {
            p.add(path, format!("{why}"));
            None
        }
    }
}

fn upstream_ref(
    name: &str,
    path: &str,
    upstreams: &HashMap<String, usize>,
    p: &mut Problems,
) -> Option<usize> {
    let found = upstreams.get(name).copied();
    if found.is_none() {
        p.add(
            path,
            format!("upstream {name:?} is not defined in `upstreams`"),
        );
    }
    found
}

/// The upstream's protocol; `h2` is negotiated by TLS ALPN and `h2c` has
/// no TLS, so each is checked against the url's scheme.
fn upstream_protocol(
    s: &str,
    url: Option<&Url>,
    upstream: &str,
    p: &mut Problems,
) -> UpstreamProtocol {
    let path = format!("{upstream}.protocol");
    let (protocol, scheme) = match s {
        "http1" => return UpstreamProtocol::Http1,
        "h2" => (UpstreamProtocol::H2, "https"),
        "h2c" => (UpstreamProtocol::H2c, "http"),
        other => {
            p.add(path, format!("{other:?} is not one of http1, h2, h2c"));
            return UpstreamProtocol::Http1;
        }
    };
    if url.is_some_and(|u| u.scheme() != scheme) {
        p.add(
            path,
            format!("{s} needs a {scheme}:// url (see {upstream}.url)"),
        );
    }
    protocol
}

fn socket_addr(s: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    match s.to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(a)) => Some(a),
        _ => {
            p.add(path, format!("{s:?} is not a host:port address"));
            None
        }
    }
}

fn http_url(s: &str, path: &str, p: &mut Problems) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                p.add(path, format!("{s:?} must not have a query or fragment"));
                return None;
            }
            Some(u)
        }
        Ok(_) => {
            p.add(path, format!("{s:?} is not an http:// or https:// URL"));
            None
        }
        Err(e) => {
            p.add(path, format!("{s:?} is not a valid URL: {e}"));
            None
        }
    }
}

fn placeholder_url() -> Url {
    // Only reached when a problem was recorded, so the config is discarded.
    Url::parse("http://invalid.invalid/").unwrap_or_else(|_| unreachable!())
}

fn header_name(s: &str, path: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            p.add(path, format!("{s:?} is not a valid header name"));
            None
        }
    }
}

/// `prefix.key`, the key quoted unless it is a plain word: claims are
/// named by URL (`"https://example.com/roles"`) or JSON Pointer, and the
/// path must still read back as one key.
fn key_path(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{prefix}.{key}")
    } else {
        format!("{prefix}.{key:?}")
    }
}

/// Which setting makes the gateway set a header from verified claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sets {
    /// `forwarding.identityHeaders.*`.
    Identity,
    /// `organizationBinding.header`.
    Binding,
    /// `forwarding.claimsHeaders.*`.
    Claim,
}

/// Checks the headers the gateway fills from verified claims: none may be
/// a header that frames, routes or authenticates the request, or one that
/// says where it came from, and no two may be the same header (the later
/// would silently overwrite the earlier). Names are compared as servers
/// behind the gateway read them: case-insensitively, with CGI and WSGI
/// servers taking `_` for `-`.
fn check_gateway_headers<'a>(
    headers: impl Iterator<Item = (&'a HeaderName, String, Sets)>,
    p: &mut Problems,
) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (name, path, sets) in headers {
        let folded = name.as_str().replace('_', "-");
        if let Some(why) = unfit_header(&folded, sets) {
            p.add(path, format!("{name} {why}"));
            continue;
        }
        match seen.get(&folded) {
            Some(first) => p.add(
                &path,
                format!("{name} is also {first}: each header carries one value"),
            ),
            None => {
                seen.insert(folded, path);
            }
        }
    }
}

/// The `X-Forwarded-*` headers that describe the connection or the
/// original request, which proxies and frameworks behind the gateway act on
/// (Envoy, nginx, Traefik, Spring): a claim must not speak for them. The
/// rest of the family carries identity in oauth2-proxy's fashion
/// (`X-Forwarded-User`, `X-Forwarded-Groups`), as the defaults do.
const FORWARDED_CONNECTION: [&str; 11] = [
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-path",
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
];

/// Why a header the gateway sets from verified claims cannot be `folded`
/// (lower case, `_` read as `-`).
fn unfit_header(folded: &str, sets: Sets) -> Option<&'static str> {
    use crate::headers::{is_hop_by_hop, is_spoofable};
    let hop_by_hop = HeaderName::from_bytes(folded.as_bytes()).is_ok_and(|h| is_hop_by_hop(&h));
    let proxy_header = FORWARDED_CONNECTION.contains(&folded)
        || (is_spoofable(folded) && !folded.starts_with("x-forwarded-"));
    Some(match folded {
        _ if hop_by_hop => "is hop-by-hop: it is removed before the request goes upstream",
        "authorization" => "carries the credential, which the gateway forwards or removes itself",
        "host" | "content-length" | "cookie" => {
            "is part of the request itself and must not be replaced by a claim"
        }
        "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto" | "x-request-id" => {
            "is set by the gateway itself"
        }
        _ if proxy_header => {
            "is a proxy header that servers behind the gateway trust to describe the connection or the original request: choose another name"
        }
        "x-wso2-organization" if sets == Sets::Claim => {
            "is APK's organization header: set it with organizationBinding.header"
        }
        _ => return None,
    })
}

/// `path` with `.` segments dropped and each `..` taking away the segment
/// before it, without asking the file system (a `..` past a symbolic link
/// is read as written).
fn lexical(path: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in std::path::Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

fn existing_file(s: &str, path: &str, p: &mut Problems) -> PathBuf {
    if s.is_empty() {
        p.add(path, "is required");
    } else if !std::path::Path::new(s).is_file() {
        p.add(path, format!("file {s:?} does not exist"));
    }
    PathBuf::from(s)
}

fn optional_file(s: &str, path: &str, p: &mut Problems) -> Option<PathBuf> {
    (!s.is_empty()).then(|| existing_file(s, path, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        from_yaml(yaml, &|name| (name == "SET").then(|| "value".to_string()))
            .err()
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    const BASE: &str = "upstreams: {u: {url: 'http://127.0.0.1:1'}}\n";

    #[test]
    fn every_problem_in_one_pass() {
        let yaml = format!(
            "{BASE}idp: {{issuer: 'https://i/', isuer: x, audiences: ['${{UNSET}}'], algorithms: [RS256, none]}}\n\
             upstreams2: 1\n\
             routes:\n - {{name: r, match: {{pathPrefix: /}}, upstream: u}}\n - {{name: r, match: {{path: /x}}, upstream: nope}}\n"
        );
        let found = problems(&yaml);
        for want in [
            "idp.isuer: unknown field",
            "upstreams2: unknown field",
            "idp.audiences[0]: environment variable UNSET is not set",
            "idp.algorithms[1]: \"none\" is never allowed",
            "routes[1].name: duplicate route name",
            "routes[1].upstream: upstream \"nope\" is not defined",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn empty_algorithms_bad_urls_and_hmac_without_secret() {
        let yaml = format!(
            "{BASE}idp: {{issuer: 'not a url', audiences: [a], algorithms: []}}\nroutes: [{{name: r, match: {{pathPrefix: /}}, upstream: u}}]\n"
        );
        let found = problems(&yaml);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("idp.algorithms: must list")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|p| p.starts_with("idp.issuer:")),
            "{found:#?}"
        );
        let yaml = format!(
            "{BASE}idp: {{issuer: 'https://i/', audiences: [a], algorithms: [HS256]}}\nroutes: [{{name: r, match: {{pathPrefix: /}}, upstream: u}}]\n"
        );
        let found = problems(&yaml);
        assert!(
            found.iter().any(|p| p.starts_with("idp.clientSecret:")),
            "{found:#?}"
        );
    }

    #[test]
    fn env_values_fill_numbers_and_keys() {
        let yaml = format!(
            "{BASE}idp: {{issuer: 'https://i/', audiences: ['${{SET}}'], clockSkewSeconds: '${{SKEW:-45}}'}}\n\
             organizations: {{'${{SET}}': {{name: org1}}}}\n\
             routes: [{{name: r, match: {{pathPrefix: /api/}}, upstream: u}}]\n"
        );
        let config =
            from_yaml(&yaml, &|name| (name == "SET").then(|| "value".to_string())).unwrap();
        assert_eq!(config.providers[0].audiences, vec!["value".to_string()]);
        assert_eq!(config.providers[0].clock_skew.as_secs(), 45);
        assert_eq!(config.organizations.unwrap()["value"], "org1");
        assert_eq!(config.routes[0].path, PathMatch::Prefix("/api".into()));
    }

    #[test]
    fn upstream_protocols_match_their_url_scheme() {
        let yaml = "upstreams:\n\
             \x20 a: {url: 'http://127.0.0.1:1', protocol: h2}\n\
             \x20 b: {url: 'https://127.0.0.1:1', protocol: h2c}\n\
             \x20 c: {url: 'http://127.0.0.1:1', protocol: http2}\n\
             \x20 d: {url: 'http://127.0.0.1:1', idleTimeoutMs: 0}\n\
             routes: [{name: r, match: {pathPrefix: /}, upstream: a}]\n";
        let found = problems(yaml);
        for want in [
            "upstreams.a.protocol: h2 needs a https:// url",
            "upstreams.b.protocol: h2c needs a http:// url",
            "upstreams.c.protocol: \"http2\" is not one of http1, h2, h2c",
            "upstreams.d.idleTimeoutMs: must be greater than 0",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }

        let yaml = "upstreams:\n\
             \x20 a: {url: 'https://127.0.0.1:1', protocol: h2}\n\
             \x20 b: {url: 'http://127.0.0.1:1', protocol: h2c, idleTimeoutMs: 500}\n\
             \x20 c: {url: 'http://127.0.0.1:1'}\n\
             routes: [{name: r, match: {pathPrefix: /}, auth: none, upstream: a}]\n";
        let config = from_yaml(yaml, &|_| None).unwrap();
        let protocols: Vec<_> = config.upstreams.iter().map(|u| u.protocol).collect();
        assert_eq!(
            protocols,
            [
                UpstreamProtocol::H2,
                UpstreamProtocol::H2c,
                UpstreamProtocol::Http1
            ]
        );
        assert_eq!(config.upstreams[1].idle_timeout, Duration::from_millis(500));
        assert_eq!(config.upstreams[2].idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn rate_limits_are_checked_and_the_default_fills_protected_routes_only() {
        use crate::ratelimit::Per;
        let idp = "idp: {issuer: 'https://i/', audiences: [a]}\n";
        let yaml = format!(
            "{BASE}{idp}rateLimit: {{perOrganization: '0/s'}}\n\
             routes:\n\
             \x20- {{name: a, match: {{path: /a}}, upstream: u, rateLimit: {{perOrganization: '100/x'}}}}\n\
             \x20- {{name: b, match: {{path: /b}}, upstream: u, rateLimit: {{perOrganization: '5/m', burst: 0}}}}\n\
             \x20- {{name: c, match: {{path: /c}}, auth: none, upstream: u, rateLimit: {{perOrganization: '5/m'}}}}\n\
             \x20- {{name: d, match: {{path: /d}}, upstream: u, rateLimit: {{perOrganization: '5/m', brust: 2}}}}\n"
        );
        let found = problems(&yaml);
        for want in [
            "rateLimit.perOrganization: \"0/s\" lets nothing through",
            "routes[0].rateLimit.perOrganization: \"100/x\" is not N/s, N/m or N/h",
            "routes[1].rateLimit.burst: must be greater than 0",
            "routes[2].rateLimit: counts per organization",
            "routes[3].rateLimit.brust: unknown field",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }

        let yaml = format!(
            "{BASE}{idp}rateLimit: {{perOrganization: '1000/s'}}\n\
             routes:\n\
             \x20- {{name: own, match: {{path: /a}}, upstream: u, rateLimit: {{perOrganization: '100/h', burst: '${{SET:-200}}'}}}}\n\
             \x20- {{name: default, match: {{path: /b}}, upstream: u}}\n\
             \x20- {{name: public, match: {{path: /c}}, auth: none, upstream: u}}\n"
        );
        let config = from_yaml(&yaml, &|_| None).unwrap();
        let limits: Vec<_> = config
            .routes
            .iter()
            .map(|r| r.rate_limit.map(|l| (l.count.get(), l.per, l.burst.get())))
            .collect();
        assert_eq!(
            limits,
            [
                Some((100, Per::Hour, 200)),
                Some((1000, Per::Second, 1000)),
                None
            ]
        );
    }

    const ROUTE: &str = "routes: [{name: r, match: {pathPrefix: /}, upstream: u}]\n";

    fn assert_found(found: &[String], wants: &[&str]) {
        for want in wants {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "{want:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn claims_and_binding_headers_cannot_name_a_header_the_gateway_manages() {
        let idp = "idp: {issuer: 'https://i/', audiences: [a]}\n";
        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: X_Forwarded_Host}}\n\
             forwarding:\n\
             \x20 claimsHeaders:\n\
             \x20   'https://example.com/roles': authorization\n\
             \x20   a: Host\n\
             \x20   b: Content_Length\n\
             \x20   c: transfer-encoding\n\
             \x20   d: Cookie\n\
             \x20   e: Keep-Alive\n\
             \x20   f: Proxy_Authorization\n\
             \x20   g: Upgrade\n\
             \x20   h: Forwarded\n\
             \x20   i: X-Forwarded-For\n\
             \x20   j: x-forwarded-port\n\
             \x20   k: X-Real-IP\n\
             \x20   l: X_Request_Id\n\
             \x20   m: X-HTTP-Method-Override\n\
             \x20   n: X-WSO2-Organization\n\
             \x20   ok: X-Roles\n\
             \x20   ok2: X-Forwarded-Groups\n"
        );
        let found = problems(&yaml);
        assert_found(
            &found,
            &[
                "forwarding.claimsHeaders.\"https://example.com/roles\": authorization",
                "forwarding.claimsHeaders.a: host",
                "forwarding.claimsHeaders.b: content_length",
                "forwarding.claimsHeaders.c: transfer-encoding",
                "forwarding.claimsHeaders.d: cookie",
                "forwarding.claimsHeaders.e: keep-alive",
                "forwarding.claimsHeaders.f: proxy_authorization",
                "forwarding.claimsHeaders.g: upgrade",
                "forwarding.claimsHeaders.h: forwarded",
                "forwarding.claimsHeaders.i: x-forwarded-for",
                "forwarding.claimsHeaders.j: x-forwarded-port",
                "forwarding.claimsHeaders.k: x-real-ip",
                "forwarding.claimsHeaders.l: x_request_id",
                "forwarding.claimsHeaders.m: x-http-method-override",
                "forwarding.claimsHeaders.n: x-wso2-organization",
                "organizationBinding.header: x_forwarded_host",
            ],
        );
        assert!(
            !found.iter().any(|p| p.contains("claimsHeaders.ok")),
            "{found:#?}"
        );
        assert_eq!(found.len(), 16, "one problem per header: {found:#?}");
    }

    #[test]
    fn identity_claims_and_binding_headers_are_distinct_headers() {
        let idp = "idp: {issuer: 'https://i/', audiences: [a]}\n";
        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: x_org}}\n\
             forwarding:\n\
             \x20 identityHeaders: {{user: X-User, organization: X-Org, subject: X_USER}}\n\
             \x20 claimsHeaders:\n\
             \x20   'https://example.com/roles': X-Roles\n\
             \x20   /team: X_Roles\n\
             \x20   email: x-user\n\
             \x20   tenant: X-Tenant\n"
        );
        let found = problems(&yaml);
        assert_found(
            &found,
            &[
                "forwarding.identityHeaders.subject: x_user is also forwarding.identityHeaders.user",
                "organizationBinding.header: x_org is also forwarding.identityHeaders.organization",
                "forwarding.claimsHeaders.\"https://example.com/roles\": x-roles is also forwarding.claimsHeaders.\"/team\"",
                "forwarding.claimsHeaders.email: x-user is also forwarding.identityHeaders.user",
            ],
        );
        assert_eq!(found.len(), 4, "{found:#?}");

        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: X-Tenant}}\n\
             forwarding: {{claimsHeaders: {{tenant: x_tenant}}}}\n"
        );
        assert_found(
            &problems(&yaml),
            &["forwarding.claimsHeaders.tenant: x_tenant is also organizationBinding.header"],
        );

        // Identity headers are X-Forwarded-* by default, but not the ones
        // the gateway itself sets from the connection.
        let yaml = format!(
            "{BASE}{idp}{ROUTE}forwarding:\n\
             \x20 identityHeaders: {{user: X-Forwarded-For, organization: x_request_id, subject: Cookie}}\n"
        );
        assert_found(
            &problems(&yaml),
            &[
                "forwarding.identityHeaders.user: x-forwarded-for",
                "forwarding.identityHeaders.organization: x_request_id",
                "forwarding.identityHeaders.subject: cookie",
            ],
        );
        let yaml = format!(
            "{BASE}{idp}{ROUTE}organizationBinding: {{header: X-WSO2-Organization}}\n\
             forwarding: {{claimsHeaders: {{roles: X-Forwarded-Roles, team: X-Team}}}}\n"
        );
        assert!(
            from_yaml(&yaml, &|_| None).is_ok(),
            "{:#?}",
            problems(&yaml)
        );
    }

    #[test]
    fn two_providers_never_share_a_jwks_cache_file() {
        let idp = |name: &str, cache: &str| {
            format!(
                "  - {{name: {name}, issuer: 'https://{name}/', audiences: [a], jwks: {{cacheFile: '{cache}'}}}}\n"
            )
        };
        let yaml = format!(
            "{BASE}{ROUTE}idps:\n{}{}{}{}",
            idp("a", "/var/cache/idp-gate/keys.json"),
            idp("b", "/var/cache/idp-gate/other.json"),
            idp("c", "/var/cache/./idp-gate/../idp-gate//keys.json"),
            idp("d", "/var/cache/idp-gate/other.json"),
        );
        let found = problems(&yaml);
        assert_found(
            &found,
            &[
                "idps[2].jwks.cacheFile: \"/var/cache/./idp-gate/../idp-gate//keys.json\" is the same file as idps[0].jwks.cacheFile (\"/var/cache/idp-gate/keys.json\")",
                "idps[3].jwks.cacheFile: \"/var/cache/idp-gate/other.json\" is the same file as idps[1].jwks.cacheFile (\"/var/cache/idp-gate/other.json\")",
            ],
        );
        assert_eq!(found.len(), 2, "{found:#?}");

        let yaml = format!(
            "{BASE}{ROUTE}idps:\n{}{}{}",
            idp("a", "keys.json"),
            idp("b", "./cache/../keys.json"),
            idp("c", "../keys.json"),
        );
        let found = problems(&yaml);
        assert_found(
            &found,
            &[
                "idps[1].jwks.cacheFile: \"./cache/../keys.json\" is the same file as idps[0].jwks.cacheFile (\"keys.json\")",
            ],
        );
        assert_eq!(found.len(), 1, "`../keys.json` is another file: {found:#?}");
    }
}
