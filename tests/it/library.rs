//! The policy as a library: the `axum_app` example (a small axum app
//! behind `AuthLayer`) is built and run, and answers like the sidecar:
//! the same refusals, and the verified identity in its handlers. Also the
//! layer on its own, wrapping a plain tower service.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use idp_gate::{AuthLayer, Verified};
use jsonwebtoken::Algorithm;
use tower::{Layer, Service};

/// The example binary, built by `cargo test` next to the test binaries.
fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let dir = deps.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples").join(name)
}

fn policy(jwks: &JwksServer) -> String {
    format!(
        r#"idp:
  issuer: "{}"
  jwksEndpoint: "{}"
  audiences: ["{AUDIENCE}"]
upstreams:
  app: {{ url: "http://127.0.0.1:1" }}
routes:
  - {{ name: ping, match: {{ path: /public/ping }}, auth: none, upstream: app }}
  - name: hello
    match: {{ pathPrefix: /api }}
    allow: {{ organizations: [org_abc] }}
    upstream: app
"#,
        jwks.issuer(),
        jwks.jwks_url()
    )
}

/// The layer for `yaml`, once its keys are loaded (10 s at most).
async fn ready_layer(yaml: &str) -> AuthLayer {
    let layer = AuthLayer::from_config(parse_config(yaml)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while layer.snapshot().readiness().is_err() {
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    layer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_example_is_protected_like_the_sidecar() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let dir = TempDir::new("lib");
    let config = dir.write("policy.yaml", policy(&jwks));
    let bin = example("axum_app");
    assert!(
        bin.is_file(),
        "{} is not built (`cargo test` builds it; so does `cargo build --example axum_app`)",
        bin.display()
    );
    let mut app = Proc::start(
        std::process::Command::new(&bin)
            .arg(&config)
            .arg("127.0.0.1:0"),
    );
    let addr = app
        .wait_for("the example's first line", Duration::from_secs(10), |l| {
            l.strip_prefix("listening on ").map(str::to_string)
        })
        .await;
    let c = client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = Request::get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        send(&c, req.body(empty()).unwrap())
    };
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    // Fail closed until the keys are in, then let the right caller through.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = get("/api/hello", Some(&token)).await;
        if r.status != 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello auth0|user-1 of org_abc (route hello)");

    let r = get("/api/hello", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "missing_token");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(r#"Bearer realm="idp-gate""#)
    );
    let other = sign(&ring.active(), &claims(&jwks.issuer(), "org_other", &[]));
    let r = get("/api/hello", Some(&other)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error_description"], "organization_denied");
    let forged = sign(
        &crate::support::ring(Algorithm::RS256).active(),
        &claims(&jwks.issuer(), "org_abc", &[]),
    );
    let r = get("/api/hello", Some(&forged)).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(get("/public/ping", None).await.text(), "pong");
    assert_eq!(get("/nowhere", None).await.status, 404);
}

#[tokio::test]
async fn the_layer_wraps_any_service_and_hands_it_the_identity() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let layer = ready_layer(&policy(&jwks)).await;
    let echo_identity = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let v = req.extensions().get::<Verified>().cloned();
        let org = v
            .and_then(|v| v.identity)
            .and_then(|i| i.organization.clone())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(org))))
    });
    let mut svc = layer.layer(echo_identity);
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    let req = Request::get("/api/x")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"org_abc");
    let req = Request::get("/api/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.call(req).await.unwrap();
    assert_eq!(resp.status(), 401);
}

/// Every request header the handler was given: name → its values.
async fn seen_headers(headers: http::HeaderMap) -> String {
    let mut seen = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<serde_json::Value> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
            .collect();
        seen.insert(name.as_str().to_string(), values.into());
    }
    serde_json::Value::Object(seen).to_string()
}

#[tokio::test]
async fn an_axum_handler_behind_the_layer_sees_only_verified_identity_headers() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let yaml = format!(
        "{}organizations: {{ org_abc: {{ name: org1 }} }}\n\
         organizationBinding: {{ header: X-WSO2-Organization }}\n\
         forwarding: {{ claimsHeaders: {{ \"https://example.com/roles\": X-Roles }} }}\n",
        policy(&jwks)
    );
    let layer = ready_layer(&yaml).await;
    let app = axum::Router::new()
        .route("/api/hello", axum::routing::get(seen_headers))
        .route("/public/ping", axum::routing::get(seen_headers))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut c = claims(&jwks.issuer(), "org_abc", &[]);
    c["https://example.com/roles"] = serde_json::json!("admin");
    let token = sign(&ring.active(), &c);
    let forged = [
        ("X-Forwarded-User", "mallory@example.com"),
        ("X_Forwarded_User", "mallory@example.com"),
        ("X-Forwarded-Org", "org_evil"),
        ("x_forwarded_sub", "auth0|mallory"),
        ("X-WSO2-Organization", "org_evil"),
        ("X_WSO2_Organization", "org_evil"),
        ("X-Roles", "superuser"),
        ("X_Roles", "superuser"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
        ("X-Original-URL", "/admin"),
    ];
    let c = client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = Request::get(format!("http://{addr}{path}"));
        for (k, v) in forged {
            req = req.header(k, v);
        }
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        send(&c, req.body(empty()).unwrap())
    };

    let r = get("/api/hello", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    for (name, want) in [
        ("x-forwarded-user", "auth0|user-1"),
        ("x-forwarded-org", "org_abc"),
        ("x-forwarded-sub", "auth0|user-1"),
        ("x-wso2-organization", "org1"),
        ("x-roles", "admin"),
    ] {
        assert_eq!(seen[name], serde_json::json!([want]), "{name}: {seen}");
    }
    assert_eq!(
        seen["authorization"],
        serde_json::json!([format!("Bearer {token}")])
    );
    let forged_left = |seen: &serde_json::Value| -> Vec<String> {
        seen.as_object()
            .unwrap()
            .iter()
            .filter(|(name, values)| {
                name.contains('_')
                    || ["forwarded", "x-real-ip", "x-original-url"].contains(&name.as_str())
                    || values.to_string().contains("mallory")
                    || values.to_string().contains("evil")
                    || values.to_string().contains("superuser")
                    || values.to_string().contains("203.0.113.9")
            })
            .map(|(name, values)| format!("{name}: {values}"))
            .collect()
    };
    assert_eq!(forged_left(&seen), Vec::<String>::new(), "{seen}");

    // A public route: no identity at all, and none of the forged one.
    let r = get("/public/ping", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(forged_left(&seen), Vec::<String>::new(), "{seen}");
    for name in [
        "x-forwarded-user",
        "x-forwarded-org",
        "x-forwarded-sub",
        "x-wso2-organization",
        "x-roles",
    ] {
        assert!(seen.get(name).is_none(), "{name}: {seen}");
    }
    server.abort();
}

#[tokio::test]
async fn the_layer_needs_no_upstream_and_tells_no_next_hop() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    // No proxy listener, no upstreams: a configuration that only decides.
    let yaml = format!(
        "listen: \"\"\nidp:\n  issuer: \"{}\"\n  jwksEndpoint: \"{}\"\n  audiences: [\"{AUDIENCE}\"]\n\
         routes:\n  - {{ name: hello, match: {{ pathPrefix: /api }} }}\n",
        jwks.issuer(),
        jwks.jwks_url()
    );
    let layer = ready_layer(&yaml).await;
    let app = axum::Router::new()
        .route("/api/hello", axum::routing::get(seen_headers))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let c = client();
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    let req = Request::get(format!("http://{addr}/api/hello"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-forwarded-for", "203.0.113.9")
        .body(empty())
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["x-forwarded-org"], serde_json::json!(["org_abc"]));
    // What a proxy tells its next hop is not set in-process, and the
    // client's claim is still removed.
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ] {
        assert!(seen.get(name).is_none(), "{name}: {seen}");
    }
    let req = Request::get(format!("http://{addr}/api/hello"))
        .body(empty())
        .unwrap();
    assert_eq!(send(&c, req).await.status, 401);
    server.abort();

    // The sidecar cannot serve it.
    let err = idp_gate::app::start(parse_config(&yaml))
        .await
        .err()
        .expect("no proxy listener to start");
    assert!(err.to_string().starts_with("listen is empty"), "{err}");
}
