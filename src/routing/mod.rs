//! Compiled routes and request matching. Pure: values in, values out.

pub mod canonical;
pub mod index;
pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::ratelimit::RateLimit;
use policy::{Allow, TokenSource};

pub use canonical::{CanonicalPath, PathRefusal, canonicalize};
pub use index::RouteIndex;

/// How a route's path is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path, byte for byte.
    Exact(String),
    /// A prefix ending on a segment boundary: `/api` takes `/api` and
    /// `/api/x`, never `/apix`. Stored without a trailing slash (`/` is empty).
    Prefix(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
        }
    }
}

/// Whether and how a route authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Public: no token needed, none is verified.
    Public,
    /// A verified token is required.
    Jwt {
        /// Who may pass.
        allow: Allow,
        /// Indices into the configured providers; `None`: any provider.
        providers: Option<Vec<usize>>,
        /// Where to look for the token: the sources of those providers, in
        /// order, without repeats. Compiled once, not per request.
        token_sources: Vec<TokenSource>,
    },
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name for metrics and logs.
    pub name: Arc<str>,
    /// Lowercase host without port; `None`: any host.
    pub host: Option<String>,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    /// Path matcher.
    pub path: PathMatch,
    /// Authentication and authorization.
    pub access: Access,
    /// Index of the default upstream; `None` in a configuration that only
    /// decides (no proxy listener).
    pub upstream: Option<usize>,
    /// Organization → upstream index.
    pub organization_upstreams: HashMap<String, usize>,
    /// Remove a matched prefix before forwarding.
    pub strip_prefix: bool,
    /// Take paths with `;` parameters (refused with 400 otherwise).
    pub allow_path_parameters: bool,
    /// Per-organization rate limit: the route's own, else the global
    /// default (protected routes only).
    pub rate_limit: Option<RateLimit>,
}

impl Route {
    /// Whether this route takes the request.
    pub fn matches(&self, host: Option<&str>, method: &Method, path: &str) -> bool {
        self.accepts(host, method) && self.path.matches(path)
    }

    /// Whether the route takes this host and method (its path aside).
    pub fn accepts(&self, host: Option<&str>, method: &Method) -> bool {
        if let Some(want) = &self.host {
            match host {
                Some(h) if host_without_port(h).eq_ignore_ascii_case(want) => {}
                _ => return false,
            }
        }
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// The upstream for a verified organization.
    pub fn upstream_for(&self, organization: Option<&str>) -> Option<usize> {
        organization
            .and_then(|o| self.organization_upstreams.get(o))
            .copied()
            .or(self.upstream)
    }

    /// The path sent upstream: the canonical path, less the matched prefix
    /// with `stripPrefix`.
    pub fn upstream_path<'a>(&self, path: &'a CanonicalPath) -> &'a str {
        match (&self.path, self.strip_prefix) {
            (PathMatch::Prefix(p), true) => {
                path.forward_without_segments(p.bytes().filter(|&b| b == b'/').count())
            }
            _ => path.forward(),
        }
    }

    /// Refuses `;` path parameters unless the route allows them.
    pub fn check_parameters(&self, path: &CanonicalPath) -> Result<(), PathRefusal> {
        if path.has_parameters() && !self.allow_path_parameters {
            return Err(PathRefusal::PathParameters);
        }
        Ok(())
    }
}

/// First route that takes the request.
pub fn find<'r>(
    routes: &'r [Route],
    host: Option<&str>,
    method: &Method,
    path: &str,
) -> Option<&'r Route> {
    routes.iter().find(|r| r.matches(host, method, path))
}

/// `Host` without its port; IPv6 literals keep their brackets.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: PathMatch) -> Route {
        Route {
            name: "r".into(),
            host: None,
            methods: None,
            path,
            access: Access::Public,
            upstream: Some(0),
            organization_upstreams: HashMap::new(),
            strip_prefix: false,
            allow_path_parameters: false,
            rate_limit: None,
        }
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        let r = route(PathMatch::Prefix("/api".into()));
        assert!(r.matches(None, &Method::GET, "/api"));
        assert!(r.matches(None, &Method::GET, "/api/"));
        assert!(r.matches(None, &Method::GET, "/api/x/y"));
        assert!(!r.matches(None, &Method::GET, "/apix"));
        assert!(!r.matches(None, &Method::GET, "/ap"));
        let root = route(PathMatch::Prefix(String::new()));
        assert!(root.matches(None, &Method::GET, "/anything"));
    }

    #[test]
    fn exact_host_and_method() {
        let mut r = route(PathMatch::Exact("/health".into()));
        r.host = Some("apk.example.com".into());
        r.methods = Some(vec![Method::GET]);
        assert!(r.matches(Some("APK.example.com:8443"), &Method::GET, "/health"));
        assert!(!r.matches(Some("other.example.com"), &Method::GET, "/health"));
        assert!(!r.matches(None, &Method::GET, "/health"));
        assert!(!r.matches(Some("apk.example.com"), &Method::POST, "/health"));
        assert!(!r.matches(Some("apk.example.com"), &Method::GET, "/health/x"));
    }

    #[test]
    fn first_match_wins() {
        let mut a = route(PathMatch::Prefix("/api".into()));
        a.name = "a".into();
        let mut b = route(PathMatch::Prefix("/api/x".into()));
        b.name = "b".into();
        let routes = [a, b];
        assert_eq!(
            &*find(&routes, None, &Method::GET, "/api/x").unwrap().name,
            "a"
        );
        assert!(find(&routes, None, &Method::GET, "/other").is_none());
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let mut r = route(PathMatch::Prefix("/api".into()));
        r.strip_prefix = true;
        let path = |p| canonicalize(p).unwrap();
        assert_eq!(r.upstream_path(&path("/api/x")), "/x");
        assert_eq!(r.upstream_path(&path("/api")), "/");
        assert_eq!(r.upstream_path(&path("/api//x;p=1")), "/x;p=1");
    }

    #[test]
    fn organization_upstreams_override_the_default() {
        let mut r = route(PathMatch::Prefix("/api".into()));
        r.upstream = Some(0);
        r.organization_upstreams.insert("org_eu".into(), 1);
        assert_eq!(r.upstream_for(Some("org_eu")), Some(1));
        assert_eq!(r.upstream_for(Some("org_us")), Some(0));
        assert_eq!(r.upstream_for(None), Some(0));
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("a.b:80"), "a.b");
        assert_eq!(host_without_port("a.b"), "a.b");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }
}
