//! Path canonicalisation and route matching on arbitrary request paths.
//!
//! The invariants are the ones the route-bypass defence rests on: the
//! forwarded form is a fixed point (an upstream that canonicalises again
//! reads the same path), and it holds nothing an upstream could resolve
//! into another route's space.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use http::Method;
use idp_gate::config::Config;
use idp_gate::internals::routing::{self, Route, canonical};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
idp:
  issuer: "https://tenant.example/"
  audiences: ["https://apk.example.com/api"]
  organizationClaim: org_id
upstreams:
  u: { url: "http://127.0.0.1:9" }
routes:
  - name: health
    match: { path: /health }
    auth: none
    upstream: u
  - name: admin
    match: { pathPrefix: /api/am/admin, methods: [GET, POST] }
    allow: { organizations: ["*"], scopes: ["apk:api_view"] }
    upstream: u
    stripPrefix: true
  - name: host-bound
    match: { pathPrefix: /api, host: api.example }
    upstream: u
  - name: encoded
    match: { pathPrefix: "/files/a b" }
    upstream: u
  - name: root
    match: { pathPrefix: / }
    auth: none
    upstream: u
"#;

static ROUTES: LazyLock<Vec<Route>> = LazyLock::new(|| {
    Config::from_yaml(CONFIG, Path::new("fuzz.yaml"), &|_| None)
        .unwrap_or_else(|e| panic!("harness config: {e}"))
        .routes
});

fuzz_target!(|data: &[u8]| {
    // Paths come from `http::Uri`, which is already text.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = canonical::canonicalize(raw) else {
        return;
    };
    let forward = path.forward();

    let again = canonical::canonicalize(forward)
        .unwrap_or_else(|e| panic!("{forward:?} (from {raw:?}) is refused when seen again: {e:?}"));
    assert_eq!(again.forward(), forward, "not idempotent for {raw:?}");
    assert_eq!(
        again.matched(),
        path.matched(),
        "matched form drifts for {raw:?}"
    );

    assert!(forward.starts_with('/'), "{forward:?} is not origin-form");
    assert!(!forward.contains("//"), "{forward:?} has an empty segment");
    assert!(!forward.contains('\\'), "{forward:?} has a backslash");
    for segment in forward.split('/') {
        assert!(
            segment != "." && segment != "..",
            "{forward:?} has a dot segment"
        );
    }
    // What Tomcat-style readers route on: parameters dropped, then decoded.
    for segment in path.matched().split('/') {
        assert!(
            segment != "." && segment != "..",
            "matched form {:?} of {raw:?} has a dot segment",
            path.matched()
        );
    }
    assert_eq!(path.has_parameters(), forward.contains(';'));

    let _ = routing::find(&ROUTES, None, &Method::GET, path.matched());
    let _ = routing::find(
        &ROUTES,
        Some("api.example:443"),
        &Method::POST,
        path.matched(),
    );
});
