//! Finding the first matching route without scanning them all: routes are
//! filed in a tree by their path segments, so a request only meets the
//! routes on its own path. The answer is the one a scan in file order
//! would give (first match wins); the tree only skips routes that cannot
//! match.

use std::collections::HashMap;

use http::Method;

use super::{PathMatch, Route};

/// An index over one route list, by path segment.
#[derive(Debug, Default)]
pub struct RouteIndex {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    /// Prefix routes ending here (they take this path and all below it),
    /// in file order.
    prefix: Vec<usize>,
    /// Exact routes ending here, in file order.
    exact: Vec<usize>,
}

/// A path's segments: `/api/x` is `api`, `x`; `/` is one empty segment;
/// the root prefix (stored as `""`) has none.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/')
        .into_iter()
        .flat_map(|p| p.split('/'))
}

impl RouteIndex {
    /// Files every route of `routes` (indices into it).
    pub fn new(routes: &[Route]) -> RouteIndex {
        let mut root = Node::default();
        for (i, route) in routes.iter().enumerate() {
            let (path, exact) = match &route.path {
                PathMatch::Exact(p) => (p, true),
                PathMatch::Prefix(p) => (p, false),
            };
            let mut node = &mut root;
            for segment in segments(path) {
                node = node.children.entry(segment.to_string()).or_default();
            }
            if exact {
                node.exact.push(i);
            } else {
                node.prefix.push(i);
            }
        }
        RouteIndex { root }
    }

    /// The first route of `routes` (the list this index was built from)
    /// that takes the request, as [`super::find`] would find it.
    pub fn find<'r>(
        &self,
        routes: &'r [Route],
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> Option<&'r Route> {
        let mut best: Option<usize> = None;
        // Each list is in file order: its first route that takes the host
        // and method is its best, and none after `best` can win.
        let mut consider = |list: &[usize]| {
            for &i in list {
                if best.is_some_and(|b| i >= b) {
                    return;
                }
                if routes.get(i).is_some_and(|r| r.accepts(host, method)) {
                    best = Some(i);
                    return;
                }
            }
        };
        let mut node = &self.root;
        consider(&node.prefix);
        let mut whole = true;
        for segment in segments(path) {
            match node.children.get(segment) {
                Some(child) => {
                    node = child;
                    consider(&node.prefix);
                }
                None => {
                    whole = false;
                    break;
                }
            }
        }
        if whole {
            consider(&node.exact);
        }
        best.and_then(|i| routes.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Access, find};
    use proptest::prelude::*;

    fn route(path: PathMatch, host: Option<&str>, methods: Option<Vec<Method>>) -> Route {
        Route {
            name: "".into(),
            host: host.map(str::to_string),
            methods,
            path,
            access: Access::Public,
            upstream: Some(0),
            organization_upstreams: Default::default(),
            strip_prefix: false,
            allow_path_parameters: false,
            rate_limit: None,
        }
    }

    fn a_path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["api", "am", "admin", "x", ""]),
            0..4,
        )
        .prop_map(|s| format!("/{}", s.join("/")))
    }

    fn a_route() -> impl Strategy<Value = Route> {
        (
            a_path(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["a.example", "b.example"])),
            prop::option::of(prop::sample::select(vec![Method::GET, Method::POST])),
        )
            .prop_map(|(p, exact, host, method)| {
                let path = if exact {
                    PathMatch::Exact(p)
                } else {
                    PathMatch::Prefix(p.trim_end_matches('/').to_string())
                };
                route(path, host, method.map(|m| vec![m]))
            })
    }

    proptest! {
        #[test]
        fn the_index_finds_what_a_scan_finds(
            routes in prop::collection::vec(a_route(), 0..12),
            path in a_path(),
            host in prop::option::of(prop::sample::select(vec!["a.example", "b.example:8443"])),
            method in prop::sample::select(vec![Method::GET, Method::POST, Method::PUT]),
        ) {
            let index = RouteIndex::new(&routes);
            let scanned = find(&routes, host, &method, &path).map(|r| r as *const Route);
            let indexed = index.find(&routes, host, &method, &path).map(|r| r as *const Route);
            prop_assert_eq!(scanned, indexed);
        }
    }
}
