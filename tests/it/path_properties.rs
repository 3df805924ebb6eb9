//! Properties of path canonicalisation over generated paths: whatever the
//! gateway would forward is already canonical, and an upstream that decodes
//! and merges slashes itself (or drops `;params` as Tomcat does) lands on
//! the very route the gateway authorized.

use std::path::Path;

use http::Method;
use idp_gate::config::Config;
use idp_gate::internals::routing::{self, Route, canonicalize};
use proptest::prelude::*;

const ROUTES: &str = r#"
idp:
  issuer: "https://tenant.example.com/"
  audiences: [api]
upstreams: { u: { url: "http://127.0.0.1:1" } }
routes:
  - { name: admin, match: { pathPrefix: /api/am/admin }, upstream: u }
  - { name: exact, match: { path: "/api/a:b" }, upstream: u }
  - { name: tilde, match: { pathPrefix: "/api/~user" }, upstream: u }
  - { name: space, match: { pathPrefix: "/api/a%20b" }, upstream: u }
  - { name: api, match: { pathPrefix: /api }, upstream: u }
  - { name: root, match: { pathPrefix: / }, upstream: u }
"#;

fn routes() -> Vec<Route> {
    Config::from_yaml(ROUTES, Path::new("t.yaml"), &|_| None)
        .expect("valid")
        .routes
}

/// Percent-decodes every `%XX` once, as most upstream frameworks do.
fn decode(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// An upstream's reading: optionally drop `;params` per segment (Tomcat
/// does so before decoding), decode, merge repeated slashes.
fn upstream_reading(forwarded: &str, drop_params: bool) -> String {
    let mut out = String::new();
    for segment in forwarded.split('/') {
        let segment = if drop_params {
            segment.split(';').next().unwrap_or("")
        } else {
            segment
        };
        if segment.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(&String::from_utf8_lossy(&decode(segment)));
    }
    if out.is_empty() || forwarded.ends_with('/') {
        out.push('/');
    }
    out
}

fn route_of<'r>(routes: &'r [Route], path: &str) -> Option<&'r str> {
    routing::find(routes, None, &Method::GET, path).map(|r| &*r.name)
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api".to_string()),
        Just("am".to_string()),
        Just("admin".to_string()),
        Just("%61dmin".to_string()),
        Just("%61%64%6D%69%6e".to_string()),
        Just("a:b".to_string()),
        Just("a%3ab".to_string()),
        Just("%7Euser".to_string()),
        Just("~user".to_string()),
        Just("a%20b".to_string()),
        Just("%25".to_string()),
        Just("%2561".to_string()),
        Just("".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2F".to_string()),
        Just("%5c".to_string()),
        Just("\\".to_string()),
        Just("admin;x=1".to_string()),
        Just("%zz".to_string()),
        "[a-zA-Z0-9._~-]{1,6}",
        "(%[0-9a-fA-F]{2}){1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..7), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut p = format!("/{}", segments.join("/"));
        if trailing {
            p.push('/');
        }
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn forwarded_paths_are_canonical_and_read_alike_upstream(raw in path()) {
        let routes = routes();
        let Ok(c) = canonicalize(&raw) else { return Ok(()) };
        // Idempotent: forwarding the forwarded path changes nothing.
        let again = canonicalize(c.forward()).expect("a canonical path is accepted");
        prop_assert_eq!(again.forward(), c.forward());
        prop_assert_eq!(again.matched(), c.matched());
        prop_assert!(!c.forward().contains("//"), "{}", c.forward());
        let gate = route_of(&routes, c.matched());
        // A route without allowPathParameters refuses `;`, so only
        // parameter-free paths are ever forwarded there.
        if !c.has_parameters() {
            prop_assert_eq!(route_of(&routes, &upstream_reading(c.forward(), false)), gate,
                "forwarded {}", c.forward());
        }
        // Tomcat drops `;params` before routing: same route still.
        prop_assert_eq!(route_of(&routes, &upstream_reading(c.forward(), true)), gate,
            "forwarded {}", c.forward());
    }
}
