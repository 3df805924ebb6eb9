//! `routes`: what each route matches, who may use it, where it forwards
//! and how fast; and the top-level `rateLimit` it falls back on.

use std::collections::{BTreeMap, HashMap, HashSet};

use http::Method;

use super::Problems;
use super::values::positive;
use crate::config::raw::{OneOrMany, RawAllow, RawMatch, RawRateLimit, RawRoute};
use crate::config::{ClaimRef, ProviderConfig, TokenSource};
use crate::ratelimit::RateLimit;
use crate::routing::policy::{Allow, ClaimRule, Organizations};
use crate::routing::{Access, PathMatch, Route, canonicalize};

/// What a route may refer to: the upstreams and identity providers the
/// rest of the file defines.
struct Defined<'a> {
    /// Upstream name → index.
    upstreams: &'a HashMap<String, usize>,
    /// Provider name → index.
    provider_index: HashMap<&'a str, usize>,
    /// The providers, in order.
    providers: &'a [ProviderConfig],
    /// Whether `idp` or `idps` is present at all.
    idp_configured: bool,
    /// Whether the proxy listens, so that every route needs an upstream.
    proxy: bool,
}

/// The routes in file order. Protected routes without a `rateLimit` of
/// their own take `default_rate_limit` (the top-level one).
pub(super) fn routes(
    raw: Vec<RawRoute>,
    default_rate_limit: Option<&RawRateLimit>,
    upstream_index: &HashMap<String, usize>,
    providers: &[ProviderConfig],
    idp_configured: bool,
    proxy: bool,
    p: &mut Problems,
) -> Vec<Route> {
    let defined = Defined {
        upstreams: upstream_index,
        provider_index: providers
            .iter()
            .enumerate()
            .map(|(i, pr)| (pr.name.as_str(), i))
            .collect(),
        providers,
        idp_configured,
        proxy,
    };
    let default_rate_limit = default_rate_limit.and_then(|r| rate_limit(r, "rateLimit", p));

    if raw.is_empty() {
        p.add("routes", "at least one route is required");
    }
    let mut names = HashSet::new();
    let mut routes: Vec<Route> = raw
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
            route(r, &path, &defined, p)
        })
        .collect();
    // The default is for protected routes only: a public route has no
    // organization to count by, and its callers would share one bucket.
    for r in &mut routes {
        if r.rate_limit.is_none() && matches!(r.access, Access::Jwt { .. }) {
            r.rate_limit = default_rate_limit;
        }
    }
    routes
}

/// One route: its matcher, its upstreams, then who may use it.
fn route(r: RawRoute, path: &str, defined: &Defined, p: &mut Problems) -> Option<Route> {
    if r.name.is_empty() {
        p.add(format!("{path}.name"), "must not be empty");
    }
    let m = &r.matcher;
    let path_match = path_match(m, path, p);
    let methods = methods(m.methods.as_deref(), path, p);
    let host = host(m.host.as_deref(), path, p);

    let upstream = if r.upstream.is_empty() && !defined.proxy {
        // Nothing forwards: the configuration only decides.
        Some(None)
    } else {
        upstream_ref(
            &r.upstream,
            &format!("{path}.upstream"),
            defined.upstreams,
            p,
        )
        .map(Some)
    };
    let organization_upstreams =
        organization_upstreams(&r.organization_upstreams, path, defined.upstreams, p);
    if r.strip_prefix && !matches!(path_match, Some(PathMatch::Prefix(_))) {
        p.add(format!("{path}.stripPrefix"), "needs `match.pathPrefix`");
    }

    let access = match r.auth.as_deref().unwrap_or("jwt") {
        "none" => public_access(&r, path, p),
        "jwt" => protected_access(r.allow, r.providers, path, defined, p),
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

/// `match.path` or `match.pathPrefix`, exactly one of them.
fn path_match(m: &RawMatch, path: &str, p: &mut Problems) -> Option<PathMatch> {
    match (&m.path, &m.path_prefix) {
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
    }
}

/// `match.methods`, upper-cased; omitted: any method.
fn methods(raw: Option<&[String]>, path: &str, p: &mut Problems) -> Option<Vec<Method>> {
    let methods = raw.map(|ms| {
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
    methods
}

/// `match.host`, lower-cased; omitted: any host.
fn host(raw: Option<&str>, path: &str, p: &mut Problems) -> Option<String> {
    let host = raw.map(|h| h.to_ascii_lowercase());
    if host.as_ref().is_some_and(|h| h.is_empty()) {
        p.add(
            format!("{path}.match.host"),
            "must not be empty (omit it for any host)",
        );
    }
    host
}

/// `organizationUpstreams`: organization → upstream index.
fn organization_upstreams(
    raw: &BTreeMap<String, String>,
    path: &str,
    upstreams: &HashMap<String, usize>,
    p: &mut Problems,
) -> HashMap<String, usize> {
    let mut organization_upstreams = HashMap::new();
    for (org, name) in raw {
        if let Some(i) = upstream_ref(
            name,
            &format!("{path}.organizationUpstreams.{org}"),
            upstreams,
            p,
        ) {
            organization_upstreams.insert(org.clone(), i);
        }
    }
    organization_upstreams
}

/// `auth: none`. Settings about the caller would have nothing to act on,
/// so each one given is a problem rather than silently ignored.
fn public_access(r: &RawRoute, path: &str, p: &mut Problems) -> Access {
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

/// `auth: jwt` (the default): the `allow` rules, the providers the route
/// takes tokens from, and where those providers look for a token.
fn protected_access(
    allow: Option<RawAllow>,
    providers: Option<Vec<String>>,
    path: &str,
    defined: &Defined,
    p: &mut Problems,
) -> Access {
    if !defined.idp_configured {
        p.add(
            format!("{path}.auth"),
            "a protected route needs an identity provider: configure `idp`",
        );
    }
    let allow = allow.map(|a| allow_rules(a, path, p));
    let providers: Option<Vec<usize>> =
        providers.map(|names| route_providers(&names, path, &defined.provider_index, p));
    let token_sources = token_sources(providers.as_deref(), defined.providers);
    Access::Jwt {
        allow: allow.unwrap_or_default(),
        providers,
        token_sources,
    }
}

/// `allow`: organizations, scopes and claim rules.
fn allow_rules(a: RawAllow, path: &str, p: &mut Problems) -> Allow {
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
}

/// `providers`: names from `idps` → provider indexes.
fn route_providers(
    names: &[String],
    path: &str,
    provider_index: &HashMap<&str, usize>,
    p: &mut Problems,
) -> Vec<usize> {
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
}

/// Every token source of the providers a route takes (all of them when
/// `providers` is omitted), each once, in provider order.
fn token_sources(providers: Option<&[usize]>, configs: &[ProviderConfig]) -> Vec<TokenSource> {
    let mut token_sources: Vec<TokenSource> = Vec::new();
    for (i, pr) in configs.iter().enumerate() {
        if providers.is_some_and(|a| !a.contains(&i)) {
            continue;
        }
        for s in &pr.token_sources {
            if !token_sources.contains(s) {
                token_sources.push(s.clone());
            }
        }
    }
    token_sources
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
fn claim_rule(name: &str, values: OneOrMany, path: &str, p: &mut Problems) -> Option<ClaimRule> {
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
    if name.is_empty() {
        p.add(
            path,
            "required: the proxy forwards every route to an upstream (`listen: \"\"` for a configuration that only decides)",
        );
    } else if found.is_none() {
        p.add(
            path,
            format!("upstream {name:?} is not defined in `upstreams`"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::config::validate::from_yaml;
    use crate::config::validate::tests::{BASE, problems};

    #[test]
    fn routes_need_an_upstream_only_when_the_proxy_listens() {
        let idp = "idp: {issuer: 'https://i/', audiences: [a], jwksEndpoint: 'https://i/j'}\n";
        let routes = "routes: [{name: r, match: {pathPrefix: /}}]\n";
        let found = problems(&format!("{idp}{routes}"));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("routes[0].upstream: required")),
            "{found:#?}"
        );

        let config = from_yaml(&format!("listen: ''\n{idp}{routes}"), &|_| None)
            .expect("a configuration that only decides");
        assert_eq!(config.listen, None);
        assert_eq!(config.routes[0].upstream, None);
        // An upstream that is named must still exist.
        let found = problems(&format!(
            "listen: ''\n{idp}routes: [{{name: r, match: {{pathPrefix: /}}, upstream: nope}}]\n"
        ));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("routes[0].upstream: upstream \"nope\"")),
            "{found:#?}"
        );
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
}
