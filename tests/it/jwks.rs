//! The JWKS cache against a real HTTP server: cold start while the provider
//! fails, unknown-kid refetch and its rate limit, rotation, stale keys,
//! discovery, Cache-Control and the cache file.

use std::time::{Duration, Instant, SystemTime};

use crate::support::*;
use http::{Request, StatusCode, header};
use idp_gate::demo::keys::{KeyRing, SigningKey};
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::task::JoinSet;

fn jwks_block(refresh: u64, min_refetch: u64, max_stale: u64) -> String {
    format!(
        "  jwks:\n    refreshSeconds: {refresh}\n    minRefetchIntervalSeconds: {min_refetch}\n    maxStaleSeconds: {max_stale}\n"
    )
}

const ROUTES: &str =
    "routes:\n  - name: api\n    match: { pathPrefix: /api }\n    upstream: echo\n";

/// A token for the ring's active key with a fresh `jti` (never a cache hit).
fn fresh(ring: &KeyRing, jwks: &JwksServer) -> String {
    sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]))
}

#[tokio::test]
async fn cold_start_while_the_provider_fails_then_recovers() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    jwks.fail(500);
    let echo = Echo::start().await;
    let gate = Gate::start(&config(&jwks, &echo, &jwks_block(600, 1, 60), ROUTES)).await;

    assert!(jwks.wait_fetches(1, Duration::from_secs(10)).await);
    let r = gate.readyz().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().contains(&jwks.issuer()),
        "{body}"
    );
    assert_eq!(gate.admin_get("/healthz").await.status, StatusCode::OK);

    // Fail closed: a valid-looking token is not let through.
    let token = fresh(&ring, &jwks);
    let r = gate
        .expect_token_refused("/api/x", &token, 503, "jwks_unavailable")
        .await;
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(
        gate.metric("idp_gate_jwks_fetches_total", &[("result", "error")])
            .await
            >= 1.0
    );
    gate.assert_metric("idp_gate_jwks_keys", &[("issuer", &jwks.issuer())], 0.0)
        .await;

    // The provider comes back: the retry loop (backoff capped at 10 s) picks it up.
    jwks.recover();
    gate.wait_ready(Duration::from_secs(15)).await;
    gate.expect_ok("/api/x", &token).await;
    gate.assert_metric("idp_gate_jwks_keys", &[("issuer", &jwks.issuer())], 1.0)
        .await;
    assert!(
        gate.metric("idp_gate_jwks_fetches_total", &[("result", "success")])
            .await
            >= 1.0
    );
}

fn random_kid_token(attacker: &SigningKey, jwks: &JwksServer) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": uuid::Uuid::new_v4().to_string()});
    sign_rs256_raw(attacker, &header, &claims(&jwks.issuer(), "org_abc", &[]))
}

async fn flood(gate: &Gate, tokens: Vec<String>) -> Vec<Resp> {
    let mut set = JoinSet::new();
    for t in tokens {
        let client = gate.client.clone();
        let url = gate.url("/api/x");
        set.spawn(async move {
            let req = Request::get(url)
                .header(header::AUTHORIZATION, format!("Bearer {t}"))
                .body(empty())
                .unwrap();
            send(&client, req).await
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn unknown_kid_flood_is_one_refetch() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(600, 3, 60), ROUTES)).await;
    let attacker = SigningKey::generate(Algorithm::RS256).unwrap();

    // Scheduled fetches (the start-up one here) do not use up the budget.
    let before = jwks.fetches();
    let replies = flood(
        &gate,
        (0..50)
            .map(|_| random_kid_token(&attacker, &jwks))
            .collect(),
    )
    .await;
    for r in &replies {
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["error_description"], "unknown_kid");
    }
    let extra = jwks.fetches() - before;
    assert!(
        (1..=2).contains(&extra),
        "50 unknown kids caused {extra} JWKS fetches"
    );
    assert_eq!(gate.auth_failures("unknown_kid").await, 50.0);

    // A second wave inside the interval fetches nothing at all.
    let before = jwks.fetches();
    let replies = flood(
        &gate,
        (0..50)
            .map(|_| random_kid_token(&attacker, &jwks))
            .collect(),
    )
    .await;
    assert!(replies.iter().all(|r| r.status == 401));
    assert_eq!(
        jwks.fetches(),
        before,
        "refetched within minRefetchInterval"
    );
    // Valid tokens are unaffected.
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;
}

#[tokio::test]
async fn rotation_is_picked_up_without_restart() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    // Background refresh far away: only the unknown-kid refetch can find
    // the new key. The default 30 s interval must not delay a key rotated
    // in right after the start-up fetch.
    let gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(600, 30, 60), ROUTES)).await;
    let old_token = fresh(&ring, &jwks);
    gate.expect_ok("/api/x", &old_token).await;

    let old_kid = ring.active().kid().to_string();
    let new = ring.rotate().unwrap();
    assert_ne!(new.kid(), old_kid);
    let before = jwks.fetches();
    let new_token = fresh(&ring, &jwks);
    gate.expect_ok("/api/x", &new_token).await;
    assert_eq!(
        jwks.fetches(),
        before + 1,
        "exactly one refetch for the new kid"
    );
    gate.assert_metric("idp_gate_jwks_keys", &[("issuer", &jwks.issuer())], 2.0)
        .await;
    // The old key is still published, so its tokens still verify.
    gate.expect_ok("/api/x", &fresh_with(&ring.keys()[0], &jwks))
        .await;
}

fn fresh_with(key: &SigningKey, jwks: &JwksServer) -> String {
    sign(key, &claims(&jwks.issuer(), "org_abc", &[]))
}

#[tokio::test]
async fn last_good_keys_survive_a_failing_endpoint() {
    let _load = timed().await;
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(1, 1, 60), ROUTES)).await;
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;

    jwks.fail(500);
    let before = jwks.fetches();
    assert!(
        jwks.wait_fetches(before + 3, Duration::from_secs(10)).await,
        "the refresher did not retry"
    );
    assert!(
        gate.metric("idp_gate_jwks_fetches_total", &[("result", "error")])
            .await
            >= 2.0
    );
    // Still ready, still verifying with the last good keys.
    assert_eq!(gate.readyz().await.status, StatusCode::OK);
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;
    gate.assert_metric("idp_gate_jwks_keys", &[("issuer", &jwks.issuer())], 1.0)
        .await;
}

#[tokio::test]
async fn stale_keys_fail_closed_after_max_stale() {
    let _load = timed().await;
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(1, 1, 1), ROUTES)).await;
    let cached = fresh(&ring, &jwks);
    gate.expect_ok("/api/x", &cached).await;

    jwks.fail(500);
    let failed_at = Instant::now();
    // Right after the failure starts the last good keys still serve.
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;
    // Then, at most refreshSeconds + maxStaleSeconds later, fail closed.
    let deadline = failed_at + Duration::from_secs(8);
    let closed_at = loop {
        let r = gate.get("/api/x", Some(&fresh(&ring, &jwks))).await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.json()["error_description"], "jwks_unavailable");
            assert!(r.header("retry-after").is_some());
            break Instant::now();
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "stale keys were used for 8 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let open_for = closed_at - failed_at;
    assert!(
        open_for >= Duration::from_millis(800),
        "failed closed after only {open_for:?}"
    );
    assert!(open_for <= Duration::from_millis(5000), "{open_for:?}");
    // A verdict cached earlier does not bypass the fail-closed state.
    gate.expect_token_refused("/api/x", &cached, 503, "jwks_unavailable")
        .await;
    let r = gate.readyz().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.json()["reason"].is_string());

    jwks.recover();
    gate.wait_ready(Duration::from_secs(15)).await;
    gate.expect_ok("/api/x", &cached).await;
}

#[tokio::test]
async fn a_slow_but_healthy_endpoint_never_fails_closed() {
    let _load = timed().await;
    // maxStaleSeconds: 0 keeps no stale keys at all, but a refresh that is
    // merely slow is not a failure: requests must keep passing meanwhile.
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(1, 1, 0), ROUTES)).await;
    jwks.set_delay(Duration::from_millis(400));
    let start = Instant::now();
    let before = jwks.fetches();
    while start.elapsed() < Duration::from_secs(3) {
        let r = gate.get("/api/x", Some(&fresh(&ring, &jwks))).await;
        assert_eq!(r.status, 200, "after {:?}: {}", start.elapsed(), r.text());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        jwks.fetches() >= before + 2,
        "no refresh happened meanwhile"
    );
}

#[tokio::test]
async fn discovery_finds_the_jwks_from_the_issuer() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let yaml = format!(
        "idp:\n  issuer: \"{}\"\n  audiences: [\"{AUDIENCE}\"]\nupstreams:\n  echo: {{ url: \"{}\" }}\n{ROUTES}",
        jwks.issuer(),
        echo.url()
    );
    let gate = Gate::start_ready(&yaml).await;
    assert!(jwks.discovery_fetches() >= 1);
    assert!(jwks.fetches() >= 1);
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;
}

#[tokio::test]
async fn discovery_with_another_issuer_is_never_ready() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    // The document claims the issuer without its trailing slash: not ours.
    jwks.set_discovery(json!({
        "issuer": jwks.base,
        "jwks_uri": jwks.jwks_url(),
    }));
    let echo = Echo::start().await;
    let yaml = format!(
        "idp:\n  issuer: \"{}\"\n  audiences: [\"{AUDIENCE}\"]\nupstreams:\n  echo: {{ url: \"{}\" }}\n{ROUTES}",
        jwks.issuer(),
        echo.url()
    );
    let gate = Gate::start(&yaml).await;
    assert!(
        poll_until(Duration::from_secs(10), || jwks.discovery_fetches() >= 3).await,
        "discovery was not retried"
    );
    let r = gate.readyz().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(
        jwks.fetches(),
        0,
        "the JWKS of an unverified document was fetched"
    );
    let token = fresh(&ring, &jwks);
    gate.expect_token_refused("/api/x", &token, 503, "jwks_unavailable")
        .await;
}

#[tokio::test]
async fn short_cache_control_max_age_refetches_sooner() {
    let _load = timed().await;
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    jwks.set_cache_control(Some("public, max-age=1"));
    let echo = Echo::start().await;
    // refreshSeconds 600; max-age=1 wins, raised to the 5 s floor.
    let _gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(600, 30, 3600), ROUTES)).await;
    assert!(
        jwks.wait_fetches(2, Duration::from_secs(9)).await,
        "max-age did not shorten the refresh"
    );
    let t = jwks.fetch_times();
    let gap = t[1] - t[0];
    assert!(
        gap >= Duration::from_millis(4500),
        "refetched after {gap:?}: the 5 s floor was not applied"
    );
}

#[tokio::test]
async fn long_max_age_does_not_delay_a_short_refresh() {
    let _load = timed().await;
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    jwks.set_cache_control(Some("max-age=3600"));
    let echo = Echo::start().await;
    let _gate = Gate::start_ready(&config(&jwks, &echo, &jwks_block(1, 30, 3600), ROUTES)).await;
    let start = Instant::now();
    assert!(
        jwks.wait_fetches(3, Duration::from_secs(6)).await,
        "refreshSeconds: 1 was not honoured ({} fetches in {:?})",
        jwks.fetches(),
        start.elapsed()
    );
}

fn cache_config(
    jwks_issuer: &str,
    jwks_url: &str,
    echo: &Echo,
    file: &std::path::Path,
    max_stale: u64,
) -> String {
    format!(
        r#"idp:
  issuer: "{jwks_issuer}"
  jwksEndpoint: "{jwks_url}"
  audiences: ["{AUDIENCE}"]
  jwks:
    refreshSeconds: 600
    minRefetchIntervalSeconds: 30
    maxStaleSeconds: {max_stale}
    cacheFile: "{}"
upstreams:
  echo: {{ url: "{}" }}
{ROUTES}"#,
        file.display(),
        echo.url()
    )
}

#[tokio::test]
async fn cache_file_serves_a_cold_start_while_the_provider_is_down() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let dir = TempDir::new("jwks-cache");
    let file = dir.join("cold.json");
    let (issuer, url) = (jwks.issuer(), jwks.jwks_url());
    let yaml = cache_config(&issuer, &url, &echo, &file, 86_400);

    let gate = Gate::start_ready(&yaml).await;
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;
    gate.shutdown().await;
    assert!(file.is_file(), "no cache file written");

    // The provider is gone entirely (connection refused).
    let token = fresh(&ring, &jwks);
    drop(jwks);
    let gate = Gate::start(&yaml).await;
    gate.wait_ready(Duration::from_secs(5)).await;
    gate.expect_ok("/api/x", &token).await;
}

fn set_mtime(file: &std::path::Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

#[tokio::test]
async fn cache_file_age_counts_from_the_last_successful_fetch() {
    // Keys that have not changed for a long time were still confirmed by
    // the last fetch: a cold start right after must trust the cache file.
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let dir = TempDir::new("jwks-cache");
    let file = dir.join("age.json");
    std::fs::write(&file, ring.jwks().to_string()).unwrap();
    set_mtime(&file, Duration::from_secs(7200));
    let (issuer, url) = (jwks.issuer(), jwks.jwks_url());
    let yaml = cache_config(&issuer, &url, &echo, &file, 3600);

    let gate = Gate::start_ready(&yaml).await;
    assert!(jwks.fetches() >= 1);
    gate.expect_ok("/api/x", &fresh(&ring, &jwks)).await;
    gate.shutdown().await;

    let token = fresh(&ring, &jwks);
    drop(jwks);
    let gate = Gate::start(&yaml).await;
    gate.wait_ready(Duration::from_secs(5)).await;
    gate.expect_ok("/api/x", &token).await;
}

#[tokio::test]
async fn a_stale_cache_file_stays_stale_across_restarts() {
    let ring = ring(Algorithm::RS256);
    let dead = dead_addr().await;
    let echo = Echo::start().await;
    let dir = TempDir::new("jwks-cache");
    let file = dir.join("stale.json");
    std::fs::write(&file, ring.jwks().to_string()).unwrap();
    set_mtime(&file, Duration::from_secs(7200));
    let issuer = "https://tenant.example.com/";
    let yaml = cache_config(
        issuer,
        &format!("http://{dead}/jwks.json"),
        &echo,
        &file,
        3600,
    );
    let token = sign(&ring.active(), &claims(issuer, "org_abc", &[]));

    for attempt in 0..2 {
        let gate = Gate::start(&yaml).await;
        let r = gate.readyz().await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "start {attempt}: ready from a cache file older than maxStaleSeconds"
        );
        gate.expect_token_refused("/api/x", &token, 503, "jwks_unavailable")
            .await;
        gate.shutdown().await;
    }
}
