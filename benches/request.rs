//! The per-request work around verification: route matching on 10 and on
//! 10,000 routes (the protected route last, so every other one is tried),
//! the header rewrite, the request id, the upstream URI, and the whole
//! decision (`decide`, cached token) at 10 vs 10,000 routes and 10 vs
//! 100,000 organizations, and the per-organization rate limiter.
//!
//!   cargo bench --bench request

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Request};
use idp_gate::internals::auth::Identity;
use idp_gate::internals::decision::{RequestFacts, decide};
use idp_gate::internals::decision::{Rewrite, Seen};
use idp_gate::internals::proxy::Upstream;
use idp_gate::internals::request_id::RequestId;
use idp_gate::internals::routing::{self, canonicalize};

use common::{Keys, now, ready};

const PATH: &str = "/api/configurator/apis/4f2a/definition";

fn routing(c: &mut Criterion) {
    let keys = Keys::new();
    let mut g = c.benchmark_group("route");
    for routes in [10, 10_000] {
        let config = common::config(&keys.jwks_file, routes - 1, 0);
        assert_eq!(config.routes.len(), routes);
        g.bench_function(format!("find_last_of_{routes}"), |b| {
            b.iter(|| {
                let path = canonicalize(black_box(PATH)).unwrap();
                let r = routing::find(
                    &config.routes,
                    Some("apk.example.com"),
                    &Method::GET,
                    path.matched(),
                );
                assert_eq!(&*r.unwrap().name, "configurator");
            })
        });
    }
    g.finish();
}

/// A browser-ish request head as it reaches the gateway.
fn incoming(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |n: &'static str, v: &str| {
        h.append(n, HeaderValue::from_str(v).unwrap());
    };
    add("host", "apk.example.com");
    add("user-agent", "curl/8.5.0");
    add("accept", "application/json");
    add("accept-encoding", "gzip, br");
    add("authorization", &format!("Bearer {token}"));
    add("connection", "keep-alive");
    add("x-forwarded-for", "203.0.113.9");
    add("x-forwarded-user", "mallory@example.com");
    add("cookie", "a=1");
    add("content-type", "application/json");
    h
}

fn rewrite(c: &mut Criterion) {
    let keys = Keys::new();
    let config = common::config(&keys.jwks_file, 0, 10);
    let token = keys.rs256("rewrite");
    let claims = common::claims("rewrite");
    let identity = Identity::from_claims(&config.providers[0], claims.as_object().unwrap().clone());
    let host = http::HeaderValue::from_static("apk.example.com");
    let seen = Seen {
        client: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        proto: "http",
        host: Some(&host),
        upstream_host: None,
        request_id: &RequestId::from_str_or_fresh("2b8f9a3c-1d2e-4f50-8a6b-7c8d9e0f1a2b"),
    };
    let head = incoming(&token);

    let mut g = c.benchmark_group("headers");
    g.bench_function("rewrite_new", |b| {
        b.iter(|| {
            Rewrite::new(
                &config,
                Some(&identity),
                Some(black_box(&token)),
                Some(&seen),
            )
        })
    });
    let rw = Rewrite::new(&config, Some(&identity), Some(&token), Some(&seen));
    g.bench_function("rewrite_apply", |b| {
        b.iter_batched_ref(
            || (head.clone(), rw.clone()),
            |(h, rw)| std::mem::take(rw).apply(h),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rewrite_new_and_apply", |b| {
        b.iter_batched_ref(
            || head.clone(),
            |h| Rewrite::new(&config, Some(&identity), Some(&token), Some(&seen)).apply(h),
            BatchSize::SmallInput,
        )
    });
    // No X-Request-Id from the client: a fresh one is made.
    g.bench_function("request_id_fresh", |b| {
        b.iter(|| RequestId::from_headers(black_box(&head)))
    });
    let upstream = Upstream::new(config.upstreams[0].clone()).unwrap();
    g.bench_function("upstream_uri", |b| {
        b.iter(|| upstream.uri(black_box(PATH), Some("page=2&size=50")))
    });
    g.finish();
}

/// `decide` as the gateway calls it, with the token in the cache: route,
/// token extraction, cache hit, authorization, binding, rewrite.
fn decision(c: &mut Criterion) {
    let keys = Keys::new();
    let rt = common::runtime();
    let _entered = rt.enter();
    let token = keys.rs256("decide");
    let mut g = c.benchmark_group("decide");
    for (routes, orgs) in [(10, 10), (10_000, 10), (10, 100_000)] {
        let (snap, _metrics) = common::snapshot(common::config(&keys.jwks_file, routes - 1, orgs));
        let req = Request::get(PATH)
            .header("host", "apk.example.com")
            .header("authorization", format!("Bearer {token}"))
            .header("user-agent", "wrk")
            .body(())
            .unwrap();
        let now = now();
        let request_id = RequestId::from_str_or_fresh("2b8f9a3c-1d2e-4f50-8a6b-7c8d9e0f1a2b");
        let facts = RequestFacts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: false,
            request_id: &request_id,
            now,
            draining: false,
            next_hop: true,
        };
        let first = ready(decide(&snap, &facts));
        assert!(first.verdict.is_ok(), "{:?}", first.verdict.err());
        g.bench_function(format!("cached_token_{routes}_routes_{orgs}_orgs"), |b| {
            b.iter(|| {
                let d = ready(decide(&snap, black_box(&facts)));
                assert!(d.verdict.is_ok());
                d
            })
        });
    }
    g.finish();
}

/// The per-organization rate limiter's cost per request: one organization
/// hot, and one among 100,000 tracked ones.
fn rate_limit(c: &mut Criterion) {
    use idp_gate::internals::metrics::Metrics;
    use idp_gate::internals::ratelimit::{RateLimit, RateLimits};
    let metrics = Metrics::new(false).unwrap();
    // A rate no benchmark reaches: every check passes, as most do.
    let limit = RateLimit::parse("1000000000/s").unwrap();
    let limits = RateLimits::build(
        [("r", limit)],
        None,
        &metrics,
        std::time::Duration::from_secs(3600),
    );
    let mut g = c.benchmark_group("rate_limit");
    let hot = Some("org_abc123".to_string());
    g.bench_function("check_one_organization", |b| {
        b.iter(|| limits.check(black_box("r"), black_box(&hot)).unwrap())
    });
    let orgs: Vec<Option<String>> = (0..100_000).map(|i| Some(format!("org_{i}"))).collect();
    for o in &orgs {
        limits.check("r", o).unwrap();
    }
    let mut i = 0;
    g.bench_function("check_among_100000_organizations", |b| {
        b.iter(|| {
            i = (i + 7919) % orgs.len();
            limits.check(black_box("r"), black_box(&orgs[i])).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, routing, rewrite, decision, rate_limit);
criterion_main!(benches);
