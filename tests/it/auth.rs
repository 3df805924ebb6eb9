//! Authentication and authorization through the real gateway: every check
//! of the contract, with forged, expired, mis-issued and mis-scoped tokens
//! refused with the right status, `WWW-Authenticate`, reason and metric.

use std::time::Duration;

use crate::support::*;
use http::{Method, Request, header};
use idp_gate::demo::keys::SigningKey;
use jsonwebtoken::Algorithm;
use serde_json::json;

// ---------------------------------------------------------------- algorithms

async fn accepts_algorithm(alg: Algorithm) {
    let w = World::start(alg, &format!("  algorithms: [{alg:?}]"), DEFAULT_ROUTES).await;
    let token = w.token("org_abc", &[]);
    let r = w.gate.expect_ok("/api/items", &token).await;
    let body = r.json();
    assert_eq!(body["path"], "/api/items");
    assert_eq!(body["method"], "GET");
    w.gate
        .assert_metric(
            "idp_gate_upstream_requests_total",
            &[("status", "200")],
            1.0,
        )
        .await;
}

#[tokio::test]
async fn valid_rs256_token_reaches_the_upstream() {
    accepts_algorithm(Algorithm::RS256).await;
}

#[tokio::test]
async fn valid_ps256_token_reaches_the_upstream() {
    accepts_algorithm(Algorithm::PS256).await;
}

#[tokio::test]
async fn valid_es256_token_reaches_the_upstream() {
    accepts_algorithm(Algorithm::ES256).await;
}

#[tokio::test]
async fn valid_eddsa_token_reaches_the_upstream() {
    accepts_algorithm(Algorithm::EdDSA).await;
}

#[tokio::test]
async fn valid_hs256_token_with_the_client_secret() {
    let w = World::start(
        Algorithm::RS256,
        &format!("  algorithms: [RS256, HS256]\n  clientSecret: \"{CLIENT_SECRET}\""),
        DEFAULT_ROUTES,
    )
    .await;
    let c = w.claims("org_abc", &[]);
    let token = sign_hs256_raw(
        CLIENT_SECRET.as_bytes(),
        &json!({"alg": "HS256", "typ": "JWT"}),
        &c,
    );
    w.gate.expect_ok("/api/x", &token).await;
    // The RS256 key still works beside it.
    w.gate.expect_ok("/api/x", &w.token("org_abc", &[])).await;
    // Another secret does not.
    let wrong = sign_hs256_raw(
        b"another-secret-that-is-also-32-bytes-long!!",
        &json!({"alg": "HS256", "typ": "JWT"}),
        &w.claims("org_abc", &[]),
    );
    w.gate
        .expect_token_refused("/api/x", &wrong, 401, "bad_signature")
        .await;
}

// ---------------------------------------------------------------- token presence

#[tokio::test]
async fn missing_token_is_401_without_error_code() {
    let w = World::default().await;
    let req = Request::get(w.gate.url("/api/x")).body(empty()).unwrap();
    w.gate.expect_refusal(req, 401, "missing_token", None).await;
    // Another scheme is no token either.
    let req = Request::get(w.gate.url("/api/x"))
        .header(header::AUTHORIZATION, "Basic YWxpY2U6c2VjcmV0")
        .body(empty())
        .unwrap();
    w.gate.expect_refusal(req, 401, "missing_token", None).await;
    let req = Request::get(w.gate.url("/api/x"))
        .header(header::AUTHORIZATION, "Bearer ")
        .body(empty())
        .unwrap();
    w.gate.expect_refusal(req, 401, "missing_token", None).await;
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = w
            .gate
            .get_with("/api/x", &[("authorization", &format!("{scheme} {token}"))])
            .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
}

// ---------------------------------------------------------------- malformed and forged

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let w = World::default().await;
    let valid = w.token("org_abc", &[]);
    let mut parts = valid.split('.');
    let (h, p) = (parts.next().unwrap(), parts.next().unwrap());
    for bad in [
        "garbage".to_string(),
        format!("{h}.{p}"),
        "!!!.???.sig".to_string(),
        format!("{h}.not*base64.c2ln"),
        format!("{h}.{}.c2ln", b64(b"not json")),
        format!("{h}.{p}."),
        format!("{valid}.extra"),
    ] {
        w.gate
            .expect_token_refused("/api/x", &bad, 401, "malformed")
            .await;
    }
}

#[tokio::test]
async fn tampered_payload_is_bad_signature() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut c = w.claims("org_abc", &[]);
    c["org_id"] = json!("org_xyz");
    let forged_payload = b64_json(&c);
    parts[1] = &forged_payload;
    let forged = parts.join(".");
    w.gate
        .expect_token_refused("/api/x", &forged, 401, "bad_signature")
        .await;
}

#[tokio::test]
async fn another_key_with_the_same_kid_is_bad_signature() {
    let w = World::default().await;
    let attacker = SigningKey::generate(Algorithm::RS256).unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": w.ring.active().kid()});
    let token = sign_rs256_raw(&attacker, &header, &w.claims("org_abc", &[]));
    w.gate
        .expect_token_refused("/api/x", &token, 401, "bad_signature")
        .await;
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let w = World::default().await;
    let attacker = SigningKey::generate(Algorithm::RS256).unwrap();
    let token = sign(&attacker, &w.claims("org_abc", &[]));
    w.gate
        .expect_token_refused("/api/x", &token, 401, "unknown_kid")
        .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let w = World::default().await;
    let c = w.claims("org_abc", &[]);
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&c));
        w.gate
            .expect_token_refused("/api/x", &unsigned, 401, "alg_not_allowed")
            .await;
        let with_kid = json!({"alg": alg, "kid": w.ring.active().kid()});
        let token = compact(&with_kid, &c, b"sig");
        w.gate
            .expect_token_refused("/api/x", &token, 401, "alg_not_allowed")
            .await;
    }
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_refused() {
    // Only RS256 is allowed (the default); the JWKS also publishes an ES256 key.
    let rsa = ring(Algorithm::RS256);
    let ec = SigningKey::generate(Algorithm::ES256).unwrap();
    let jwks = JwksServer::start(JwksSource::Json(json!({
        "keys": [rsa.active().public_jwk(), ec.public_jwk()]
    })))
    .await;
    let echo = Echo::start().await;
    let gate = Gate::start_ready(&config(&jwks, &echo, "", DEFAULT_ROUTES)).await;
    let c = claims(&jwks.issuer(), "org_abc", &[]);
    gate.expect_ok("/api/x", &sign(&rsa.active(), &c)).await;
    let es = sign(&ec, &claims(&jwks.issuer(), "org_abc", &[]));
    gate.expect_token_refused("/api/x", &es, 401, "alg_not_allowed")
        .await;
    // RS384 with the very RSA key that is published: still not allowed.
    let rs384 = SigningKey::from_pem(
        rsa.active().private_pem().as_bytes(),
        Some(Algorithm::RS384),
    )
    .unwrap();
    let t = sign(&rs384, &claims(&jwks.issuer(), "org_abc", &[]));
    gate.expect_token_refused("/api/x", &t, 401, "alg_not_allowed")
        .await;
}

#[tokio::test]
async fn hmac_confusion_with_only_rs256_allowed_is_refused() {
    let w = World::default().await;
    let key = w.ring.active();
    let (n, der, pem) = rsa_public_material(&key);
    let jwk_json = key.public_jwk().to_string();
    let c = w.claims("org_abc", &[]);
    for secret in [
        n.as_slice(),
        der.as_slice(),
        pem.as_bytes(),
        jwk_json.as_bytes(),
    ] {
        for header in [
            json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()}),
            json!({"alg": "HS256", "typ": "JWT"}),
        ] {
            let token = sign_hs256_raw(secret, &header, &c);
            w.gate
                .expect_token_refused("/api/x", &token, 401, "alg_not_allowed")
                .await;
        }
    }
}

#[tokio::test]
async fn hmac_confusion_with_hs256_allowed_is_bad_signature() {
    let w = World::start(
        Algorithm::RS256,
        &format!("  algorithms: [RS256, HS256]\n  clientSecret: \"{CLIENT_SECRET}\""),
        DEFAULT_ROUTES,
    )
    .await;
    let key = w.ring.active();
    let (n, der, pem) = rsa_public_material(&key);
    let jwk_json = key.public_jwk().to_string();
    let c = w.claims("org_abc", &[]);
    for secret in [
        n.as_slice(),
        der.as_slice(),
        pem.as_bytes(),
        jwk_json.as_bytes(),
    ] {
        let token = sign_hs256_raw(
            secret,
            &json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()}),
            &c,
        );
        w.gate
            .expect_token_refused("/api/x", &token, 401, "bad_signature")
            .await;
    }
}

#[tokio::test]
async fn embedded_keys_and_key_urls_are_ignored() {
    let w = World::default().await;
    // The attacker publishes their own JWKS and points the token at it.
    let attacker_ring = ring(Algorithm::RS256);
    let attacker_jwks = JwksServer::with_ring(attacker_ring.clone()).await;
    let attacker = attacker_ring.active();
    let c = w.claims("org_abc", &[]);

    // Embedded `jwk` with the attacker's kid: the kid is unknown to the real JWKS.
    let header = json!({"alg": "RS256", "kid": attacker.kid(), "jwk": attacker.public_jwk()});
    let token = sign_rs256_raw(&attacker, &header, &c);
    w.gate
        .expect_token_refused("/api/x", &token, 401, "unknown_kid")
        .await;
    // Embedded `jwk` claiming the real kid: verified against the real key.
    let header =
        json!({"alg": "RS256", "kid": w.ring.active().kid(), "jwk": attacker.public_jwk()});
    let token = sign_rs256_raw(&attacker, &header, &c);
    w.gate
        .expect_token_refused("/api/x", &token, 401, "bad_signature")
        .await;
    // `jku` and `x5u` pointing at the attacker's server are never followed.
    for field in ["jku", "x5u"] {
        let mut header = json!({"alg": "RS256", "kid": attacker.kid()});
        header[field] = json!(attacker_jwks.jwks_url());
        let token = sign_rs256_raw(&attacker, &header, &c);
        w.gate
            .expect_token_refused("/api/x", &token, 401, "unknown_kid")
            .await;
        let mut header = json!({"alg": "RS256", "kid": w.ring.active().kid()});
        header[field] = json!(attacker_jwks.jwks_url());
        let token = sign_rs256_raw(&attacker, &header, &c);
        w.gate
            .expect_token_refused("/api/x", &token, 401, "bad_signature")
            .await;
    }
    assert_eq!(
        attacker_jwks.fetches(),
        0,
        "the attacker's JWKS was fetched"
    );
    assert_eq!(attacker_jwks.discovery_fetches(), 0);
}

// ---------------------------------------------------------------- time claims

#[tokio::test]
async fn expired_beyond_the_skew_is_refused_within_it_accepted() {
    let w = World::start(Algorithm::RS256, "  clockSkewSeconds: 30", DEFAULT_ROUTES).await;
    let mut c = w.claims("org_abc", &[]);
    c["iat"] = json!(now() - 600);
    c["exp"] = json!(now() - 90);
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "expired")
        .await;
    let mut c = w.claims("org_abc", &[]);
    c["iat"] = json!(now() - 600);
    c["exp"] = json!(now() - 10);
    w.gate.expect_ok("/api/x", &w.sign(&c)).await;
}

#[tokio::test]
async fn not_yet_valid_nbf_and_iat_are_refused() {
    let w = World::default().await;
    let mut c = w.claims("org_abc", &[]);
    c["nbf"] = json!(now() + 600);
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "not_yet_valid")
        .await;
    let mut c = w.claims("org_abc", &[]);
    c["iat"] = json!(now() + 600);
    c["exp"] = json!(now() + 1200);
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "not_yet_valid")
        .await;
    // Within the default 30 s skew: fine.
    let mut c = w.claims("org_abc", &[]);
    c["nbf"] = json!(now() + 5);
    w.gate.expect_ok("/api/x", &w.sign(&c)).await;
}

#[tokio::test]
async fn token_without_exp_is_missing_claim() {
    let w = World::default().await;
    let mut c = w.claims("org_abc", &[]);
    c.as_object_mut().unwrap().remove("exp");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "missing_claim")
        .await;
    let mut c = w.claims("org_abc", &[]);
    c["exp"] = json!("tomorrow");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "malformed")
        .await;
}

// ---------------------------------------------------------------- issuer and audience

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let w = World::default().await;
    let issuer = w.issuer();
    let mut c = w.claims("org_abc", &[]);
    // Auth0's issuer has a trailing slash; without it, it is another issuer.
    c["iss"] = json!(issuer.trim_end_matches('/'));
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "wrong_issuer")
        .await;
    c["iss"] = json!("https://evil.example.com/");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "wrong_issuer")
        .await;
    c.as_object_mut().unwrap().remove("iss");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "wrong_issuer")
        .await;
}

#[tokio::test]
async fn audience_must_match_one_of_the_configured() {
    let w = World::default().await;
    let mut c = w.claims("org_abc", &[]);
    c["aud"] = json!("https://other.example.com/api");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "wrong_audience")
        .await;
    c["aud"] = json!(["https://other.example.com/api", "x"]);
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "wrong_audience")
        .await;
    c.as_object_mut().unwrap().remove("aud");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 401, "wrong_audience")
        .await;
    let mut c = w.claims("org_abc", &[]);
    c["aud"] = json!(["https://tenant.auth0.com/userinfo", AUDIENCE]);
    w.gate.expect_ok("/api/x", &w.sign(&c)).await;
}

// ---------------------------------------------------------------- routes and authorization

const ROUTES: &str = r#"routes:
  - name: public
    match: { pathPrefix: /public }
    auth: none
    upstream: echo
  - name: deployer
    match:
      pathPrefix: /api/configurator
      methods: [GET, POST]
      host: apk.example.com
    allow:
      organizations: [org_abc, org_xyz]
      scopes: ["apk:api_create"]
    upstream: echo
  - name: open-orgs
    match: { pathPrefix: /api/any }
    allow:
      organizations: ["*"]
    upstream: echo
  - name: api
    match: { pathPrefix: /api }
    allow:
      organizations: [org_abc]
    upstream: echo
"#;

async fn routes_world() -> World {
    World::start(Algorithm::RS256, "", ROUTES).await
}

fn req(
    gate: &Gate,
    method: Method,
    path: &str,
    host: &str,
    token: Option<&str>,
) -> Request<ReqBody> {
    let mut r = Request::builder()
        .method(method)
        .uri(gate.url(path))
        .header(header::HOST, host);
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    r.body(empty()).unwrap()
}

/// Sends `method path` with `Host: host` and the token.
async fn call(w: &World, method: Method, path: &str, host: &str, token: &str) -> Resp {
    w.gate
        .send(req(&w.gate, method, path, host, Some(token)))
        .await
}

/// Sends like [`call`] and expects the refusal `status`/`reason`.
async fn refused(
    w: &World,
    method: Method,
    path: &str,
    host: &str,
    token: &str,
    status: u16,
    reason: &str,
) -> Resp {
    let request = req(&w.gate, method, path, host, Some(token));
    w.gate
        .expect_refusal(request, status, reason, Some(token))
        .await
}

#[tokio::test]
async fn public_route_needs_no_token() {
    let w = routes_world().await;
    let r = w.gate.get("/public/info?x=1", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/public/info?x=1");
    // A garbage token on a public route is not looked at.
    let r = w.gate.get("/public/info", Some("garbage")).await;
    assert_eq!(r.status, 200);
    assert_eq!(w.gate.auth_failures("malformed").await, 0.0);
}

#[tokio::test]
async fn organization_not_allowed_is_403() {
    let w = routes_world().await;
    let token = w.token("org_other", &[]);
    let r = w
        .gate
        .expect_token_refused("/api/x", &token, 403, "organization_denied")
        .await;
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.contains(r#"error_description="organization_denied""#),
        "{www}"
    );
    w.gate.expect_ok("/api/x", &w.token("org_abc", &[])).await;
    // "*" lets any organization through…
    w.gate.expect_ok("/api/any/x", &token).await;
    // …but a token still needs one there.
    w.gate
        .expect_token_refused("/api/any/x", &w.token("", &[]), 403, "missing_claim")
        .await;
}

#[tokio::test]
async fn missing_organization_claim_is_403_missing_claim() {
    let w = routes_world().await;
    let token = w.token("", &[]);
    w.gate
        .expect_token_refused("/api/x", &token, 403, "missing_claim")
        .await;
    let mut c = w.claims("", &[]);
    c["org_id"] = json!("");
    w.gate
        .expect_token_refused("/api/x", &w.sign(&c), 403, "missing_claim")
        .await;
}

#[tokio::test]
async fn missing_scope_is_403_insufficient_scope() {
    let w = routes_world().await;
    let token = w.token("org_abc", &["openid", "apk:api_view"]);
    let r = refused(
        &w,
        Method::GET,
        "/api/configurator/apis",
        "apk.example.com",
        &token,
        403,
        "insufficient_scope",
    )
    .await;
    let www = r.header("www-authenticate").unwrap();
    assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
    assert!(www.contains(r#"scope="apk:api_create""#), "{www}");
    assert_eq!(r.json()["error"], "insufficient_scope");

    // A scope that merely starts with the required one does not count.
    let token = w.token("org_abc", &["apk:api_create_x", "xapk:api_create"]);
    refused(
        &w,
        Method::GET,
        "/api/configurator/apis",
        "apk.example.com",
        &token,
        403,
        "insufficient_scope",
    )
    .await;

    // The right scope passes.
    let token = w.token("org_abc", &["openid", "apk:api_create"]);
    let r = call(
        &w,
        Method::GET,
        "/api/configurator/apis",
        "apk.example.com",
        &token,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn scopes_from_the_permissions_array_count() {
    let w = routes_world().await;
    let mut c = w.claims("org_xyz", &[]);
    c.as_object_mut().unwrap().remove("scope");
    c["permissions"] = json!(["apk:api_view", "apk:api_create"]);
    let token = w.sign(&c);
    let r = call(
        &w,
        Method::POST,
        "/api/configurator/apis",
        "apk.example.com:8443",
        &token,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "POST");
    // A permission that is a prefix-extension does not count either.
    c["permissions"] = json!(["apk:api_create_x"]);
    let token = w.sign(&c);
    refused(
        &w,
        Method::GET,
        "/api/configurator/apis",
        "apk.example.com",
        &token,
        403,
        "insufficient_scope",
    )
    .await;
}

#[tokio::test]
async fn trusted_organizations_map_refuses_unlisted_orgs() {
    let rest = format!(
        "{DEFAULT_ROUTES}organizations:\n  org_abc: {{ name: org1 }}\n  org_xyz: {{ name: org2 }}\n"
    );
    let w = World::start(Algorithm::RS256, "", &rest).await;
    w.gate.expect_ok("/api/x", &w.token("org_abc", &[])).await;
    w.gate.expect_ok("/api/x", &w.token("org_xyz", &[])).await;
    w.gate
        .expect_token_refused(
            "/api/x",
            &w.token("org_evil", &[]),
            403,
            "organization_denied",
        )
        .await;
    w.gate
        .expect_token_refused("/api/x", &w.token("", &[]), 403, "missing_claim")
        .await;
}

#[tokio::test]
async fn no_route_is_404_json_with_request_id() {
    let w = routes_world().await;
    let r = w.gate.get("/nothing/here", None).await;
    assert_eq!(r.status, 404);
    let body = r.json();
    assert_eq!(body["error"], "not_found");
    let rid = body["request_id"].as_str().unwrap();
    assert!(!rid.is_empty());
    assert_eq!(r.header("x-request-id").as_deref(), Some(rid));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    w.gate
        .assert_metric(
            "idp_gate_requests_total",
            &[("route", "unmatched"), ("status", "404")],
            1.0,
        )
        .await;
}

#[tokio::test]
async fn prefix_matches_on_segment_boundaries() {
    let w = routes_world().await;
    let token = w.token("org_abc", &[]);
    w.gate.expect_ok("/api", &token).await;
    w.gate.expect_ok("/api/", &token).await;
    let r = w.gate.get("/apix", Some(&token)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = w.gate.get("/publicity", None).await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn host_and_method_select_the_route() {
    let w = routes_world().await;
    let token = w.token("org_abc", &["apk:api_create"]);
    let ok = call(
        &w,
        Method::GET,
        "/api/configurator/x",
        "APK.example.com:8080",
        &token,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    w.gate
        .assert_metric(
            "idp_gate_requests_total",
            &[("route", "deployer"), ("status", "200")],
            1.0,
        )
        .await;
    // Another host falls through to the generic `api` route.
    let other = call(
        &w,
        Method::GET,
        "/api/configurator/x",
        "other.example.com",
        &token,
    )
    .await;
    assert_eq!(other.status, 200);
    w.gate
        .assert_metric(
            "idp_gate_requests_total",
            &[("route", "api"), ("status", "200")],
            1.0,
        )
        .await;
    // A method the route does not list falls through too: the scope-less
    // token of org_xyz is then refused by the `api` route's organization list.
    let xyz = w.token("org_xyz", &[]);
    refused(
        &w,
        Method::DELETE,
        "/api/configurator/x",
        "apk.example.com",
        &xyz,
        403,
        "organization_denied",
    )
    .await;
    w.gate
        .assert_metric(
            "idp_gate_requests_total",
            &[("route", "api"), ("method", "DELETE")],
            1.0,
        )
        .await;
}

#[tokio::test]
async fn dot_segments_are_400() {
    let w = routes_world().await;
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/./x",
        "/public/a%2Fb",
    ] {
        let r = w.gate.get(path, None).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
    }
}

#[tokio::test]
async fn organization_upstreams_route_by_org_claim() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let us = Echo::start().await;
    let eu = Echo::start().await;
    let yaml = format!(
        r#"idp:
  issuer: "{issuer}"
  jwksEndpoint: "{jwks_url}"
  audiences: ["{AUDIENCE}"]
upstreams:
  us: {{ url: "{us}/us" }}
  eu: {{ url: "{eu}/eu" }}
routes:
  - name: api
    match: {{ pathPrefix: /api }}
    upstream: us
    organizationUpstreams:
      org_xyz: eu
"#,
        issuer = jwks.issuer(),
        jwks_url = jwks.jwks_url(),
        us = us.url(),
        eu = eu.url(),
    );
    let gate = Gate::start_ready(&yaml).await;
    let abc = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    let xyz = sign(&ring.active(), &claims(&jwks.issuer(), "org_xyz", &[]));
    assert_eq!(
        gate.expect_ok("/api/a", &abc).await.json()["path"],
        "/us/api/a"
    );
    assert_eq!(
        gate.expect_ok("/api/a", &xyz).await.json()["path"],
        "/eu/api/a"
    );
    gate.assert_metric(
        "idp_gate_upstream_requests_total",
        &[("upstream", "eu")],
        1.0,
    )
    .await;
    gate.assert_metric(
        "idp_gate_upstream_requests_total",
        &[("upstream", "us")],
        1.0,
    )
    .await;
    // With the EU server gone, only org_xyz is affected: it really was served there.
    eu.stop().await;
    let r = gate.get("/api/a", Some(&xyz)).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        gate.expect_ok("/api/a", &abc).await.json()["path"],
        "/us/api/a"
    );
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn refusals_never_echo_the_token() {
    let w = routes_world().await;
    let mut expired = w.claims("org_abc", &[]);
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = w.claims("org_abc", &[]);
    wrong_aud["aud"] = json!("nope");
    let cases: Vec<(String, u16, &str)> = vec![
        (w.sign(&expired), 401, "expired"),
        (w.sign(&wrong_aud), 401, "wrong_audience"),
        (w.token("org_other", &[]), 403, "organization_denied"),
        (
            format!("{}x", w.token("org_abc", &[])),
            401,
            "bad_signature",
        ),
    ];
    for (token, status, reason) in cases {
        let r = w
            .gate
            .expect_token_refused("/api/x", &token, status, reason)
            .await;
        // expect_token_refused checks the token and its signature are absent;
        // the payload part must not come back either.
        let payload = token.split('.').nth(1).unwrap();
        r.assert_not_echoed(payload);
    }
    // Nor in the metrics.
    let text = w.gate.metrics_text().await;
    assert!(!text.contains("eyJ"), "a token part leaked into /metrics");
}

#[tokio::test]
async fn cached_verdicts_still_expire() {
    let _load = timed().await;
    // The verified-token cache must not serve a token past its exp.
    let w = World::start(Algorithm::RS256, "  clockSkewSeconds: 0", DEFAULT_ROUTES).await;
    let mut c = w.claims("org_abc", &[]);
    c["exp"] = json!(now() + 2);
    let token = w.sign(&c);
    w.gate.expect_ok("/api/x", &token).await;
    w.gate.expect_ok("/api/x", &token).await;
    assert!(
        w.gate.metric("idp_gate_token_cache_hits_total", &[]).await >= 1.0,
        "second use was not a cache hit"
    );
    // No readiness signal exists for a clock: wait out the token's life.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    w.gate
        .expect_token_refused("/api/x", &token, 401, "expired")
        .await;
}

// ---------------------------------------------------------------- token sources and providers

#[tokio::test]
async fn configured_token_sources() {
    let w = World::start(
        Algorithm::RS256,
        "  tokenSources:\n    - header: X-Api-Token\n    - query: access_token\n    - cookie: session\n",
        DEFAULT_ROUTES,
    )
    .await;
    let token = w.token("org_abc", &[]);
    // A custom header without a scheme.
    let r = w.gate.get_with("/api/x", &[("x-api-token", &token)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A query parameter.
    let r = w
        .gate
        .get(&format!("/api/x?access_token={token}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A cookie.
    let cookie = format!("theme=dark; session={token}");
    let r = w.gate.get_with("/api/x", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Authorization is not among the sources here, so it does not count.
    let r = w.gate.get("/api/x", Some(&token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "missing_token");
    // Two sources, even when one holds a good token: which one would the
    // upstream read? Refused before either is verified.
    let r = w
        .gate
        .get_with(
            &format!("/api/x?access_token={token}"),
            &[("x-api-token", "not-a-token")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
}

#[tokio::test]
async fn several_providers_matched_by_issuer_and_restricted_per_route() {
    let ring_a = ring(Algorithm::RS256);
    let ring_b = ring(Algorithm::ES256);
    let jwks_a = JwksServer::with_ring(ring_a.clone()).await;
    let jwks_b = JwksServer::with_ring(ring_b.clone()).await;
    let echo = Echo::start().await;
    let yaml = format!(
        r#"idps:
  - name: tenant
    issuer: "{iss_a}"
    jwksEndpoint: "{jwks_a}"
    audiences: ["{AUDIENCE}"]
  - name: custom-domain
    issuer: "{iss_b}"
    jwksEndpoint: "{jwks_b}"
    audiences: ["{AUDIENCE}"]
    algorithms: [ES256]
upstreams:
  echo:
    url: "{echo}"
routes:
  - name: tenant-only
    match: {{ pathPrefix: /tenant }}
    providers: [tenant]
    upstream: echo
  - name: any
    match: {{ pathPrefix: /api }}
    upstream: echo
"#,
        iss_a = jwks_a.issuer(),
        iss_b = jwks_b.issuer(),
        jwks_a = jwks_a.jwks_url(),
        jwks_b = jwks_b.jwks_url(),
        echo = echo.url(),
    );
    let gate = Gate::start_ready(&yaml).await;
    let from_a = sign(&ring_a.active(), &claims(&jwks_a.issuer(), "org_abc", &[]));
    let from_b = sign(&ring_b.active(), &claims(&jwks_b.issuer(), "org_abc", &[]));
    gate.expect_ok("/api/x", &from_a).await;
    gate.expect_ok("/api/x", &from_b).await;
    gate.expect_ok("/tenant/x", &from_a).await;
    let r = gate.get("/tenant/x", Some(&from_b)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error_description"], "wrong_issuer");
    // B's key does not verify a token that claims A's issuer.
    let forged = sign(&ring_b.active(), &claims(&jwks_a.issuer(), "org_abc", &[]));
    let r = gate.get("/api/x", Some(&forged)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error_description"], "alg_not_allowed");
    let forged = sign(&ring_a.active(), &claims(&jwks_b.issuer(), "org_abc", &[]));
    let r = gate.get("/api/x", Some(&forged)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error_description"], "alg_not_allowed");
}
