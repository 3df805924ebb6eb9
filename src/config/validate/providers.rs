//! `idp` and `idps`: the identity providers, their key sources,
//! algorithms and token sources.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::Problems;
use super::values::{header_name, http_url, optional_file};
use crate::config::raw::{RawIdp, RawTokenSource};
use crate::config::{JwksSource, ProviderConfig, TokenSource, is_secure_or_loopback};
use crate::secret::Secret;

/// `idp` (one provider, named `default` unless it has a name) or `idps`
/// (each entry named); never both.
pub(super) fn providers(
    idp: Option<RawIdp>,
    idps: Vec<RawIdp>,
    p: &mut Problems,
) -> Vec<ProviderConfig> {
    match (idp, idps.is_empty()) {
        (Some(_), false) => {
            p.add("idps", "use either `idp` or `idps`, not both");
            Vec::new()
        }
        (Some(idp), true) => {
            let name = idp.name.clone().unwrap_or_else(|| "default".into());
            provider(idp, name, "idp", p).into_iter().collect()
        }
        (None, false) => named_providers(idps, p),
        (None, true) => Vec::new(),
    }
}

/// `idps`: every entry has a name of its own, its own JWKS cache file and
/// its own issuer.
fn named_providers(idps: Vec<RawIdp>, p: &mut Problems) -> Vec<ProviderConfig> {
    let mut out = Vec::new();
    // Each provider's index in `idps`, so a problem found later names the
    // entry it is about even when an earlier entry was dropped.
    let mut at = Vec::new();
    let mut names = HashSet::new();
    let mut cache_files = Vec::new();
    for (i, idp) in idps.into_iter().enumerate() {
        let path = format!("idps[{i}]");
        distinct_cache_file(&idp.jwks.cache_file, &path, &mut cache_files, p);
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
        if let Some(pr) = provider(idp, name, &path, p) {
            out.push(pr);
            at.push(i);
        }
    }
    let mut issuers = HashSet::new();
    for (pr, i) in out.iter().zip(at) {
        if !issuers.insert(pr.issuer.clone()) {
            p.add(
                format!("idps[{i}].issuer"),
                format!("issuer {:?} is configured twice", pr.issuer),
            );
        }
    }
    out
}

/// A cache file seen so far: the file read lexically, its YAML path, and
/// the value as written.
type SeenCacheFile = (PathBuf, String, String);

/// Two providers writing one cache file would overwrite each other's keys,
/// so `cache_file` (of the provider at `path`) must differ from every one
/// in `seen`; it is then added to `seen`.
fn distinct_cache_file(
    cache_file: &str,
    path: &str,
    seen: &mut Vec<SeenCacheFile>,
    p: &mut Problems,
) {
    if cache_file.is_empty() {
        return;
    }
    let cache_path = format!("{path}.jwks.cacheFile");
    let same = lexical(cache_file);
    match seen.iter().find(|(f, _, _)| *f == same) {
        Some((_, first_path, first)) => p.add(
            &cache_path,
            format!(
                "{cache_file:?} is the same file as {first_path} ({first:?}): two providers would overwrite each other's keys"
            ),
        ),
        None => seen.push((same, cache_path, cache_file.to_string())),
    }
}

/// One provider at `path`; `None` when its issuer or key source is unusable.
fn provider(idp: RawIdp, name: String, path: &str, p: &mut Problems) -> Option<ProviderConfig> {
    let issuer_ok = issuer(&idp, path, p);
    let jwks = jwks_source(&idp, path, p);
    audiences(&idp.audiences, path, p);
    for (claim, key) in [
        (&idp.username_claim, "usernameClaim"),
        (&idp.organization_claim, "organizationClaim"),
    ] {
        if claim.is_empty() {
            p.add(format!("{path}.{key}"), "must not be empty");
        }
    }
    let algorithms = algorithms(&idp.algorithms, path, p);
    let client_secret = client_secret(&algorithms, idp.client_secret, path, p);
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
    let token_sources = token_sources(&idp.token_sources, path, p);
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

/// `issuer`: required, an http(s) URL, and a safe place to fetch keys from.
fn issuer(idp: &RawIdp, path: &str, p: &mut Problems) -> bool {
    if idp.issuer.is_empty() {
        p.add(format!("{path}.issuer"), "is required");
        false
    } else {
        http_url(&idp.issuer, &format!("{path}.issuer"), p)
            .is_some_and(|u| key_source(&u, idp.allow_insecure_http, &format!("{path}.issuer"), p))
    }
}

/// `jwksEndpoint`, or OIDC discovery from the issuer when it is empty.
fn jwks_source(idp: &RawIdp, path: &str, p: &mut Problems) -> Option<JwksSource> {
    if idp.jwks_endpoint.is_empty() {
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
    }
}

/// `audiences`: at least one, none empty.
fn audiences(audiences: &[String], path: &str, p: &mut Problems) {
    if audiences.is_empty() {
        p.add(
            format!("{path}.audiences"),
            "at least one audience is required, or tokens minted for any other API of the provider would be accepted",
        );
    }
    for (i, a) in audiences.iter().enumerate() {
        if a.is_empty() {
            p.add(
                format!("{path}.audiences[{i}]"),
                "is empty (an unset environment variable?)",
            );
        }
    }
}

/// `algorithms`: at least one, each known, never `none`; duplicates dropped.
fn algorithms(raw: &[String], path: &str, p: &mut Problems) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    if raw.is_empty() {
        p.add(
            format!("{path}.algorithms"),
            "must list at least one algorithm",
        );
    }
    for (i, a) in raw.iter().enumerate() {
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
    algorithms
}

/// `clientSecret`: kept only when an HMAC algorithm is allowed, and then
/// at least 32 bytes long.
fn client_secret(
    algorithms: &[Algorithm],
    secret: Secret,
    path: &str,
    p: &mut Problems,
) -> Option<Secret> {
    let wants_hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    if !wants_hmac {
        return None;
    }
    if secret.len() < 32 {
        p.add(
            format!("{path}.clientSecret"),
            "HS256/384/512 in `algorithms` need a client secret of at least 32 bytes",
        );
    }
    Some(secret)
}

/// `tokenSources`: at least one, each checked.
fn token_sources(raw: &[RawTokenSource], path: &str, p: &mut Problems) -> Vec<TokenSource> {
    if raw.is_empty() {
        p.add(
            format!("{path}.tokenSources"),
            "must list at least one source",
        );
    }
    raw.iter()
        .enumerate()
        .filter_map(|(i, s)| token_source(s, &format!("{path}.tokenSources[{i}]"), p))
        .collect()
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

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::{BASE, ROUTE, assert_found, problems};

    #[test]
    fn a_repeated_issuer_is_named_at_its_own_entry() {
        // The first entry is refused for its own reason; the path of the
        // repeated issuer still counts it.
        let yaml = format!(
            "{BASE}{ROUTE}idps:\n             \x20 - {{name: bad, issuer: 'https://a/', audiences: [a], jwksEndpoint: 'ftp://x'}}\n             \x20 - {{name: one, issuer: 'https://i/', audiences: [a], jwksEndpoint: 'https://i/j'}}\n             \x20 - {{name: two, issuer: 'https://i/', audiences: [a], jwksEndpoint: 'https://i/j'}}\n"
        );
        let found = problems(&yaml);
        assert_found(&found, &["idps[2].issuer"]);
        assert!(
            !found.iter().any(|p| p.starts_with("idps[1].issuer")),
            "{found:#?}"
        );
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
