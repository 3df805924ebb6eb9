//! Per-organization rate limits over real sockets: a burst, then 429 with
//! `Retry-After`; a bucket per organization and one for tokens without
//! one; the global default; refused callers using up nothing; the metric;
//! budgets kept across a reload; and 100,000 organizations forgotten once
//! they go quiet.

use std::time::{Duration, Instant};

use crate::support::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// A route limited to 3 requests a minute per organization (so nothing
/// refills during a test), one without a limit, and a public one.
const LIMITED: &str = r#"routes:
  - name: deployer
    match: { pathPrefix: /deploy }
    allow:
      scopes: [apk:deploy]
    rateLimit: { perOrganization: "1/m", burst: 3 }
    upstream: echo
  - name: api
    match: { pathPrefix: /api }
    upstream: echo
  - name: public
    match: { pathPrefix: /public }
    auth: none
    upstream: echo
"#;

async fn rate_limited(gate: &Gate, route: &str) -> f64 {
    gate.metric("idp_gate_rate_limited_total", &[("route", route)])
        .await
}

/// Sum of every `auth_failures_total` series.
async fn all_auth_failures(gate: &Gate) -> f64 {
    gate.metric("idp_gate_auth_failures_total", &[]).await
}

#[tokio::test]
async fn a_burst_passes_then_429_with_retry_after_and_the_json_error() {
    let w = World::start(Algorithm::RS256, "", LIMITED).await;
    // Announced from the first scrape, before any request.
    let text = w.gate.metrics_text().await;
    assert!(
        text.contains("idp_gate_rate_limited_total{route=\"deployer\"} 0"),
        "{text}"
    );
    let token = w.token("org_a", &["apk:deploy"]);
    for _ in 0..3 {
        w.gate.expect_ok("/deploy/x", &token).await;
    }
    let failures = all_auth_failures(&w.gate).await;

    let r = w.gate.get("/deploy/x", Some(&token)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After on 429")
        .parse()
        .expect("Retry-After in whole seconds");
    // One request a minute: the next one is due in at most 60 s.
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.header("www-authenticate"), None);
    let body = r.json();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(
        body["request_id"].as_str(),
        r.header("x-request-id").as_deref()
    );
    r.assert_not_echoed(&token);

    // Counted as rate limited, never as an auth failure.
    assert_eq!(rate_limited(&w.gate, "deployer").await, 1.0);
    assert_eq!(all_auth_failures(&w.gate).await, failures);
    w.gate
        .assert_metric(
            "idp_gate_requests_total",
            &[("route", "deployer"), ("status", "429")],
            1.0,
        )
        .await;
    // Routes without a limit are not affected.
    for _ in 0..10 {
        w.gate.expect_ok("/api/x", &token).await;
        assert_eq!(w.gate.get("/public/x", None).await.status, 200);
    }
    assert_eq!(rate_limited(&w.gate, "api").await, 0.0);
}

#[tokio::test]
async fn each_organization_has_its_own_bucket_and_tokens_without_one_share_one() {
    let w = World::start(Algorithm::RS256, "", LIMITED).await;
    let a = w.token("org_a", &["apk:deploy"]);
    for _ in 0..3 {
        w.gate.expect_ok("/deploy/x", &a).await;
    }
    assert_eq!(w.gate.get("/deploy/x", Some(&a)).await.status, 429);
    // A fresh token of the same organization draws from the same bucket.
    let a_again = w.token("org_a", &["apk:deploy"]);
    assert_eq!(w.gate.get("/deploy/x", Some(&a_again)).await.status, 429);
    // Another organization is untouched.
    let b = w.token("org_b", &["apk:deploy"]);
    for _ in 0..3 {
        w.gate.expect_ok("/deploy/x", &b).await;
    }

    // Two users without an organization share one bucket.
    let no_org = |user: &str| {
        let mut c = w.claims("", &["apk:deploy"]);
        c["sub"] = json!(user);
        w.sign(&c)
    };
    let (alice, bob) = (no_org("auth0|alice"), no_org("auth0|bob"));
    w.gate.expect_ok("/deploy/x", &alice).await;
    w.gate.expect_ok("/deploy/x", &bob).await;
    w.gate.expect_ok("/deploy/x", &alice).await;
    assert_eq!(w.gate.get("/deploy/x", Some(&bob)).await.status, 429);
    assert_eq!(rate_limited(&w.gate, "deployer").await, 3.0);
}

#[tokio::test]
async fn the_global_default_limits_protected_routes_without_their_own() {
    let routes = format!("{LIMITED}rateLimit: {{ perOrganization: \"1/h\" }}\n");
    let w = World::start(Algorithm::RS256, "", &routes).await;
    let token = w.token("org_a", &["apk:deploy"]);
    // `api` takes the default: a burst of 1.
    w.gate.expect_ok("/api/x", &token).await;
    let r = w.gate.get("/api/x", Some(&token)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&wait), "Retry-After: {wait}");
    // `deployer` keeps its own limit.
    for _ in 0..3 {
        w.gate.expect_ok("/deploy/x", &token).await;
    }
    assert_eq!(w.gate.get("/deploy/x", Some(&token)).await.status, 429);
    // The public route has no organization to count by: never limited.
    for _ in 0..5 {
        assert_eq!(w.gate.get("/public/x", None).await.status, 200);
    }
    assert_eq!(rate_limited(&w.gate, "api").await, 1.0);
    assert_eq!(rate_limited(&w.gate, "deployer").await, 1.0);
    assert_eq!(rate_limited(&w.gate, "public").await, 0.0);
}

#[tokio::test]
async fn refused_requests_use_up_nothing() {
    let w = World::start(Algorithm::RS256, "", LIMITED).await;
    // The organization's own tokens, refused (no scope, expired): many of them.
    let unscoped = w.token("org_a", &[]);
    let mut expired = w.claims("org_a", &["apk:deploy"]);
    expired["exp"] = json!(now() - 3600);
    let expired = w.sign(&expired);
    for _ in 0..5 {
        w.gate
            .expect_token_refused("/deploy/x", &unscoped, 403, "insufficient_scope")
            .await;
        w.gate
            .expect_token_refused("/deploy/x", &expired, 401, "expired")
            .await;
        w.gate
            .expect_refusal(
                http::Request::get(w.gate.url("/deploy/x"))
                    .body(empty())
                    .unwrap(),
                401,
                "missing_token",
                None,
            )
            .await;
    }
    // The whole burst is still there.
    let token = w.token("org_a", &["apk:deploy"]);
    for _ in 0..3 {
        w.gate.expect_ok("/deploy/x", &token).await;
    }
    assert_eq!(w.gate.get("/deploy/x", Some(&token)).await.status, 429);
    assert_eq!(rate_limited(&w.gate, "deployer").await, 1.0);
}

#[tokio::test]
async fn a_reload_keeps_the_budgets_of_unchanged_limits() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let dir = TempDir::new("rate");
    let file = dir.join("gate.yaml");
    let write = |deployer_burst: u32, extra_route: &str| {
        let routes = LIMITED.replace("burst: 3", &format!("burst: {deployer_burst}"));
        let text = format!("{}{extra_route}", config(&jwks, &echo, "", &routes));
        dir.write("gate.yaml", with_loopback_listeners(&text));
    };
    write(3, "");
    let gate = Gate::start_file(&file).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let issuer = jwks.issuer();
    let token = sign(&ring.active(), &claims(&issuer, "org_a", &["apk:deploy"]));
    for _ in 0..3 {
        gate.expect_ok("/deploy/x", &token).await;
    }
    assert_eq!(gate.get("/deploy/x", Some(&token)).await.status, 429);

    // Another route added, `deployer` unchanged: its budget carries over.
    let before = gate.running().gateway.snapshot();
    write(
        3,
        "  - name: extra\n    match: { pathPrefix: /extra }\n    upstream: echo\n",
    );
    gate.running().reload().await.expect("reload");
    let after = gate.running().gateway.snapshot();
    assert!(!std::ptr::eq(&*before, &*after), "no new snapshot");
    assert!(after.rate_limits.shares(&before.rate_limits, "deployer"));
    assert_eq!(gate.get("/deploy/x", Some(&token)).await.status, 429);
    assert_eq!(gate.get("/extra", Some(&token)).await.status, 200);

    // A changed limit is a new limit: it starts full.
    write(4, "");
    gate.running().reload().await.expect("reload");
    for _ in 0..4 {
        gate.expect_ok("/deploy/x", &token).await;
    }
    assert_eq!(gate.get("/deploy/x", Some(&token)).await.status, 429);
    assert_eq!(rate_limited(&gate, "deployer").await, 3.0);
}

#[tokio::test]
async fn config_errors_name_their_yaml_path() {
    let jwks = JwksServer::start(JwksSource::Json(json!({"keys": []}))).await;
    let echo = Echo::start().await;
    let text = config(
        &jwks,
        &echo,
        "",
        r#"routes:
  - name: public
    match: { path: /health }
    auth: none
    rateLimit: { perOrganization: "10/s" }
    upstream: echo
  - name: a
    match: { pathPrefix: /a }
    rateLimit: { perOrganization: "10/s", burst: 0 }
    upstream: echo
  - name: b
    match: { pathPrefix: /b }
    rateLimit: { perOrganization: "100/x" }
    upstream: echo
rateLimit: { perOrganization: "0/m" }
"#,
    );
    let err =
        idp_gate::config::Config::from_yaml(&text, std::path::Path::new("gate.yaml"), &|_| None)
            .expect_err("refused");
    let found: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    for want in [
        "routes[0].rateLimit: counts per organization, and a public route (`auth: none`) has none",
        "routes[1].rateLimit.burst: must be greater than 0",
        "routes[2].rateLimit.perOrganization: \"100/x\" is not N/s, N/m or N/h",
        "rateLimit.perOrganization: \"0/m\" lets nothing through",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(want)),
            "{want:?} not in {found:#?}"
        );
    }
}

/// 100,000 organizations each take one request's worth of their bucket;
/// once they are quiet, the sweep forgets every one of them. The first 500
/// come through the gateway over sockets; the rest go straight to the
/// running gateway's limiter (the call `decide` makes), which keeps the
/// test seconds long instead of minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_organizations_are_forgotten_once_idle() {
    let _load = heavy().await;
    const ORGANIZATIONS: usize = 100_000;
    const OVER_SOCKETS: usize = 500;
    // A bucket refills in 3 s, so none is forgettable while they are added
    // (the periodic sweep cannot race the count), and all are soon after.
    let routes = r#"routes:
  - name: flood
    match: { pathPrefix: /flood }
    rateLimit: { perOrganization: "20/m", burst: 1 }
    upstream: echo
"#;
    let w = World::start(Algorithm::RS256, "", routes).await;
    let org = |i: usize| format!("org_{i:06}");
    let rss_before = rss_bytes();
    let started = Instant::now();
    for i in 0..OVER_SOCKETS {
        let token = w.token(&org(i), &[]);
        w.gate.expect_ok("/flood", &token).await;
        // Its one request was its burst.
        assert_eq!(w.gate.get("/flood", Some(&token)).await.status, 429);
    }
    let snapshot = w.gate.running().gateway.snapshot();
    let limits = &snapshot.rate_limits;
    assert_eq!(limits.tracked("flood"), OVER_SOCKETS);
    let direct = Instant::now();
    for i in OVER_SOCKETS..ORGANIZATIONS {
        assert!(limits.check("flood", &Some(org(i))).is_ok());
    }
    let per_check = direct.elapsed() / (ORGANIZATIONS - OVER_SOCKETS) as u32;
    let filled = started.elapsed();
    let tracked = limits.tracked("flood");
    let rss_full = rss_bytes();
    assert_eq!(tracked, ORGANIZATIONS);

    let quiet = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        limits.sweep();
        if limits.tracked("flood") == 0 {
            break;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(30),
            "{} organizations still tracked",
            limits.tracked("flood")
        );
    }
    let rss_after = rss_bytes();
    eprintln!(
        "{ORGANIZATIONS} organizations added in {filled:?} ({per_check:?} a check for a new \
         organization, debug build): {tracked} tracked, RSS {} -> {} MiB; idle for {:?}: 0 \
         tracked, RSS {} MiB",
        rss_before >> 20,
        rss_full >> 20,
        quiet.elapsed(),
        rss_after >> 20,
    );
    // Forgotten is not refused: a returning organization has a full bucket.
    let token = w.token(&org(0), &[]);
    w.gate.expect_ok("/flood", &token).await;
}
