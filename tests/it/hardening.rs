//! The security boundary, probed over real sockets: path encodings that
//! could bypass a route, silent and flooding connections, credentials and
//! tenant headers that were never verified, keys over plain HTTP, a JWKS
//! that would wipe good keys, unverified e-mail identities, and upstream
//! fan-out.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn status_of(reply: &str) -> u16 {
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"))
}

fn body_of(reply: &str) -> serde_json::Value {
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply:?}"))
}

// ------------------------------------------------------- 1. path encodings

const ADMIN_ROUTES: &str = r#"routes:
  - name: admin
    match: { pathPrefix: /api/am/admin }
    allow:
      scopes: [apk:admin]
    upstream: echo
  - name: matrix
    match: { pathPrefix: /matrix, allowPathParameters: true }
    upstream: echo
  - name: api
    match: { pathPrefix: /api }
    upstream: echo
"#;

#[tokio::test]
async fn path_encodings_cannot_bypass_a_stricter_route() {
    let w = World::start(Algorithm::RS256, "", ADMIN_ROUTES).await;
    let user = w.token("org_abc", &[]);
    // Each of these reads as /api/am/admin/x to Tomcat, Spring or nginx.
    for target in [
        "/api/am//admin/x",
        "/api/am/%61dmin/x",
        "/api//am/%61%64min/x",
    ] {
        let req = Request::get(w.gate.url(target))
            .header(header::AUTHORIZATION, format!("Bearer {user}"))
            .body(empty())
            .unwrap();
        w.gate
            .expect_refusal(req, 403, "insufficient_scope", Some(&user))
            .await;
    }
    // `;` parameters are refused outright, matched by their route first.
    let r = w.gate.get("/api/am/admin;x=1/x", Some(&user)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_request");
    let r = w.gate.get("/api/other;jsessionid=1", Some(&user)).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Authorized, the upstream gets exactly the path that was authorized.
    let admin = w.token("org_abc", &["apk:admin"]);
    let r = w.gate.expect_ok("/api/am//%61dmin/x?q=%2F", &admin).await;
    assert_eq!(r.json()["path"], "/api/am/admin/x?q=%2F");
    // A route that opts in keeps its matrix parameters.
    let r = w.gate.expect_ok("/matrix;v=1/x", &user).await;
    assert_eq!(r.json()["path"], "/matrix;v=1/x");
}

#[tokio::test]
async fn ambiguous_paths_are_refused_with_400() {
    let w = World::start(Algorithm::RS256, "", ADMIN_ROUTES).await;
    for target in [
        "/api/../api/am/admin",
        "/api/%2e%2E/x",
        "/api/./x",
        "/api/am%2Fadmin",
        "/api/am%5cadmin",
        "/api/am\\admin",
        "/api/a%zz",
    ] {
        let reply = raw(
            w.gate.proxy,
            format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status_of(&reply), 400, "{target}: {reply}");
        assert_eq!(body_of(&reply)["error"], "bad_request", "{target}");
    }
    w.gate
        .assert_metric("idp_gate_requests_total", &[("status", "400")], 7.0)
        .await;
}

// ------------------------------------------------- 2. silent connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_released_and_capped_per_client() {
    let _load = timed().await;
    let limits = r#"limits:
  headerReadTimeoutMs: 1000
  maxConnections: 150
  maxConnectionsPerClient: 100
"#;
    let w = World::start(Algorithm::RS256, "", &format!("{DEFAULT_ROUTES}{limits}")).await;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(w.gate.proxy).await.expect("connect"));
    }
    // A real client from another address is still served while they sit.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut real = socket
        .connect(w.gate.proxy)
        .await
        .expect("connect from 127.0.0.2");
    real.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), real.read_to_end(&mut reply))
        .await
        .expect("served in time")
        .unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        opened.elapsed() < Duration::from_millis(900),
        "too slow to tell"
    );

    // Every silent one is closed: 100 at once, the rest at the deadline.
    let mut closed_at = Vec::new();
    for mut s in silent {
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "a silent connection is still open or got data: {r:?}"
        );
        closed_at.push(opened.elapsed());
    }
    assert!(
        closed_at.iter().all(|t| *t < Duration::from_millis(3000)),
        "{closed_at:?}"
    );
    assert!(
        closed_at.iter().any(|t| *t >= Duration::from_millis(900)),
        "the accepted ones must get their full headerReadTimeoutMs: {closed_at:?}"
    );
    w.gate
        .assert_metric(
            "idp_gate_connections_refused_total",
            &[("reason", "max_connections_per_client")],
            100.0,
        )
        .await;
    // The listener still takes new clients afterwards.
    assert_eq!(w.gate.get("/public/x", None).await.status, 200);
}

#[tokio::test]
async fn past_max_connections_new_connections_are_closed_at_once() {
    let _load = timed().await;
    let limits = "limits: { maxConnections: 3, headerReadTimeoutMs: 5000 }\n";
    let w = World::start(Algorithm::RS256, "", &format!("{DEFAULT_ROUTES}{limits}")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(w.gate.proxy).await.unwrap());
    }
    let mut extra = TcpStream::connect(w.gate.proxy).await.unwrap();
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("closed at once, not queued");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    w.gate
        .assert_metric(
            "idp_gate_connections_refused_total",
            &[("reason", "max_connections")],
            1.0,
        )
        .await;
    drop(held);
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let limits = "limits: { idleTimeoutMs: 600 }\n";
    let w = World::start(Algorithm::RS256, "", &format!("{DEFAULT_ROUTES}{limits}")).await;
    let (mut sender, conn) = h2c::<Empty<Bytes>>(w.gate.proxy).await;
    let started = Instant::now();
    let req = Request::get(format!("http://{}/public/x", w.gate.proxy))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 request");
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn a_silent_tls_client_is_released_at_the_head_deadline() {
    // The TLS handshake itself is under the same clock: a client that
    // connects to a TLS listener and says nothing is closed on time.
    let dir = TempDir::new("tls");
    let (cert_path, key_path) = SelfSigned::new().write(&dir);
    let tls = format!(
        "tls: {{ certFile: {}, keyFile: {} }}\nlimits: {{ headerReadTimeoutMs: 700 }}\n",
        cert_path.display(),
        key_path.display()
    );
    let w = World::start(Algorithm::RS256, "", &format!("{DEFAULT_ROUTES}{tls}")).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(w.gate.proxy).await.unwrap();
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within the head deadline");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
}

// ------------------------------------------- 3. only the verified credential

const COOKIE_SOURCES: &str = r#"  tokenSources:
    - header: Authorization
    - cookie: session
    - query: access_token
"#;

#[tokio::test]
async fn only_the_verified_token_goes_upstream() {
    let w = World::start(Algorithm::RS256, COOKIE_SOURCES, DEFAULT_ROUTES).await;
    let token = w.token("org_abc", &[]);

    // Two Authorization headers: which one would the upstream read?
    let req = Request::get(w.gate.url("/api/x"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")
        .body(empty())
        .unwrap();
    let r = w.gate.send(req).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_request");

    // Token in a cookie or the query, next to an unverified Basic credential:
    // the upstream sees the verified token, never the Basic one.
    for (target, cookie) in [
        ("/api/x".to_string(), format!("session={token}")),
        (format!("/api/x?access_token={token}"), "a=b".to_string()),
    ] {
        let req = Request::get(w.gate.url(&target))
            .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")
            .header(header::COOKIE, cookie)
            .body(empty())
            .unwrap();
        let r = w.gate.send(req).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.assert_upstream(&[("authorization", &format!("Bearer {token}"))]);
    }
    // Public routes forward no credential at all.
    let r = w
        .gate
        .get_with("/public/x", &[("authorization", "Basic YWRtaW46YWRtaW4=")])
        .await;
    assert_eq!(r.status, 200);
    r.assert_not_upstream(&["authorization"]);
}

#[tokio::test]
async fn without_forward_authorization_no_credential_goes_upstream() {
    let rest = format!("{DEFAULT_ROUTES}forwarding:\n  forwardAuthorization: false\n");
    let w = World::start(Algorithm::RS256, COOKIE_SOURCES, &rest).await;
    let token = w.token("org_abc", &[]);
    let r = w.gate.expect_ok("/api/x", &token).await;
    r.assert_not_upstream(&["authorization"]);
    let req = Request::get(w.gate.url("/api/x"))
        .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")
        .header(header::COOKIE, format!("session={token}"))
        .body(empty())
        .unwrap();
    let r = w.gate.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.assert_not_upstream(&["authorization"]);
}

// ------------------------------------------------------ 4. tenant header

#[tokio::test]
async fn a_client_supplied_tenant_header_never_reaches_the_upstream() {
    // No organizationBinding at all: APK's header is still stripped.
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    for target in ["/api/x", "/public/x"] {
        let req = Request::get(w.gate.url(target))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("x-wso2-organization", "org_victim")
            .header("x_wso2_organization", "org_victim")
            .body(empty())
            .unwrap();
        let r = w.gate.send(req).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.assert_not_upstream(&["x-wso2-organization", "x_wso2_organization"]);
    }
}

#[tokio::test]
async fn a_token_without_organization_is_refused_where_the_tenant_header_is_set() {
    let rest = format!("{DEFAULT_ROUTES}organizationBinding:\n  header: X-WSO2-Organization\n");
    let w = World::start(Algorithm::RS256, "", &rest).await;
    let mut claims = w.claims("org_abc", &[]);
    claims.as_object_mut().unwrap().remove("org_id");
    let token = w.sign(&claims);
    let req = Request::get(w.gate.url("/api/x"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-wso2-organization", "org1")
        .body(empty())
        .unwrap();
    w.gate
        .expect_refusal(req, 403, "missing_claim", Some(&token))
        .await;
    // With one, the header carries the verified organization only.
    let token = w.token("org_abc", &[]);
    let req = Request::get(w.gate.url("/api/x"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-wso2-organization", "org_victim")
        .body(empty())
        .unwrap();
    let r = w.gate.send(req).await;
    assert_eq!(r.status, 200);
    r.assert_upstream(&[("x-wso2-organization", "org_abc")]);
}

#[tokio::test]
async fn refused_organizations_are_not_counted_per_organization() {
    let rest = r#"routes:
  - name: api
    match: { pathPrefix: /api }
    allow: { organizations: [org_good] }
    upstream: echo
metrics:
  organizationLabel: true
"#;
    let w = World::start(Algorithm::RS256, "", rest).await;
    for i in 0..5 {
        let t = w.token(&format!("org_refused_{i}"), &[]);
        assert_eq!(w.gate.get("/api/x", Some(&t)).await.status, 403);
    }
    let good = w.token("org_good", &[]);
    w.gate.expect_ok("/api/x", &good).await;
    let text = w.gate.metrics_text().await;
    assert!(!text.contains("org_refused"), "{text}");
    assert_eq!(
        metric_value(
            &text,
            "idp_gate_requests_by_organization_total",
            &[("organization", "org_good")]
        ),
        1.0
    );
}

// --------------------------------------------------- 5. keys over plain HTTP

#[test]
fn plain_http_key_sources_need_an_explicit_opt_out() {
    let yaml = |idp_extra: &str| {
        format!(
            r#"idp:
  issuer: "http://tenant.example.com/"
  jwksEndpoint: "http://tenant.example.com/.well-known/jwks.json"
  audiences: [api]
{idp_extra}
upstreams: {{ u: {{ url: "http://127.0.0.1:1" }} }}
routes:
  - {{ name: r, match: {{ pathPrefix: / }}, upstream: u }}
"#
        )
    };
    let err =
        idp_gate::config::Config::from_yaml(&yaml(""), std::path::Path::new("t.yaml"), &|_| None)
            .expect_err("plain HTTP is refused");
    let text = err.to_string();
    for path in ["idp.issuer", "idp.jwksEndpoint"] {
        assert!(text.contains(path), "{text}");
    }
    assert!(text.contains("allowInsecureHttp"), "{text}");
    idp_gate::config::Config::from_yaml(
        &yaml("  allowInsecureHttp: true"),
        std::path::Path::new("t.yaml"),
        &|_| None,
    )
    .expect("opted out");
    // Loopback and HTTPS need nothing.
    let ok = yaml("")
        .replace("http://tenant.example.com", "https://tenant.example.com")
        .replace(
            "https://tenant.example.com/.well-known",
            "http://127.0.0.1:9/.well-known",
        );
    idp_gate::config::Config::from_yaml(&ok, std::path::Path::new("t.yaml"), &|_| None)
        .expect("https issuer, loopback JWKS");
}

#[tokio::test]
async fn a_discovered_plain_http_jwks_uri_is_refused() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    // An address that reaches the same server but is not a loopback name
    // for the check (an IPv4-mapped IPv6 address).
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/jwks.json", jwks.addr.port());
    jwks.set_discovery(json!({ "issuer": jwks.issuer(), "jwks_uri": mapped }));
    let echo = Echo::start().await;
    let yaml = |extra: &str| {
        format!(
            "idp:\n  issuer: \"{}\"\n  audiences: [\"{AUDIENCE}\"]\n{extra}\nupstreams:\n  echo:\n    url: \"{}\"\n{DEFAULT_ROUTES}",
            jwks.issuer(),
            echo.url()
        )
    };
    let gate = Gate::start(&yaml("")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gate.readyz().await.status, 503);
    assert_eq!(jwks.fetches(), 0, "keys were fetched over plain HTTP");
    assert!(
        gate.metric("idp_gate_jwks_fetches_total", &[("result", "error")])
            .await
            >= 1.0
    );
    drop(gate);
    let gate = Gate::start(&yaml("  allowInsecureHttp: true")).await;
    gate.wait_ready(Duration::from_secs(10)).await;
}

// ----------------------------------------------- 6. an empty JWKS is a failure

#[tokio::test]
async fn a_jwks_without_usable_keys_keeps_the_last_good_ones() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let dir = TempDir::new("empty-jwks");
    let cache = dir.join("jwks.json");
    let extra = format!(
        "  jwks: {{ cacheFile: \"{}\", minRefetchIntervalSeconds: 1 }}",
        cache.display()
    );
    let gate = Gate::start_ready(&config(&jwks, &echo, &extra, DEFAULT_ROUTES)).await;
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    gate.expect_ok("/api/x", &token).await;
    let cached = std::fs::read(&cache).expect("cache file written");

    for empty in [
        json!({ "keys": [] }),
        json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }),
    ] {
        jwks.serve(JwksSource::Json(empty));
        let before = jwks.fetches();
        // An unknown kid makes the gateway refetch at once.
        let stranger = crate::support::ring(Algorithm::RS256);
        let t = sign(&stranger.active(), &claims(&jwks.issuer(), "org_abc", &[]));
        assert_eq!(gate.get("/api/y", Some(&t)).await.status, 401);
        assert!(jwks.wait_fetches(before + 1, Duration::from_secs(5)).await);
        // Fresh token (no cache hit): still verified with the last good keys.
        let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
        gate.expect_ok("/api/x", &token).await;
        assert_eq!(gate.readyz().await.status, 200);
        assert_eq!(
            std::fs::read(&cache).unwrap(),
            cached,
            "cache file overwritten"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(
        gate.metric("idp_gate_jwks_fetches_total", &[("result", "error")])
            .await
            >= 2.0
    );
    // The usable-keys gauge still shows the good key.
    gate.assert_metric("idp_gate_jwks_keys", &[], 1.0).await;
}

// ------------------------------------------------------ 7. spoofable headers

#[tokio::test]
async fn spoofable_headers_are_replaced_by_what_the_gateway_saw() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    let spoofed = [
        ("forwarded", "for=10.9.9.9;host=evil"),
        ("x-real-ip", "10.9.9.9"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-host", "evil.example.com"),
        ("x-forwarded-port", "1"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-proto", "https"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("x_forwarded_user", "root"),
        ("x_forwarded_org", "org_victim"),
        ("x-forwarded-user", "root"),
    ];
    for (target, auth) in [("/public/x", None), ("/api/x", Some(&token))] {
        let mut req = Request::get(w.gate.url(target)).header(header::HOST, "apk.example.com");
        for (k, v) in spoofed {
            req = req.header(k, v);
        }
        if let Some(t) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let r = w.gate.send(req.body(empty()).unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = &r.json()["headers"];
        for (k, v) in spoofed {
            let got = seen[k].as_str().unwrap_or("");
            assert!(!got.contains(v), "{target}: {k}: {v} reached the upstream");
        }
        r.assert_upstream(&[
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "apk.example.com"),
            ("host", "apk.example.com"),
        ]);
    }
}

#[tokio::test]
async fn host_is_read_the_same_way_over_http2_and_cookies_are_joined() {
    let rest = r#"routes:
  - name: apk
    match: { pathPrefix: /public, host: apk.example.com }
    auth: none
    upstream: echo
"#;
    let w = World::start(Algorithm::RS256, "", rest).await;
    // HTTP/2: the host is the :authority.
    let port = w.gate.proxy.port();
    let r = h2_get(
        w.gate.proxy,
        &format!("http://apk.example.com:{port}/public/x"),
        &[("cookie", "a=1"), ("cookie", "b=2")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let host = format!("apk.example.com:{port}");
    r.assert_upstream(&[
        ("host", &host),
        ("x-forwarded-host", &host),
        ("cookie", "a=1; b=2"),
    ]);
    // HTTP/1.1: the same host from the Host header takes the same route.
    let r = w.gate.get_with("/public/x", &[("host", &host)]).await;
    assert_eq!(r.status, 200);
    r.assert_upstream(&[("host", &host)]);
    // A Host header that disagrees with :authority is refused, not guessed.
    let r = h2_get(
        w.gate.proxy,
        &format!("http://apk.example.com:{port}/public/x"),
        &[("host", "other.example.com")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // So are two Host headers over HTTP/1.1.
    let reply = raw(
        w.gate.proxy,
        b"GET /public/x HTTP/1.1\r\nHost: apk.example.com\r\nHost: other\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&reply), 400, "{reply}");
}

// ------------------------------------------------------- 8. unverified email

#[tokio::test]
async fn an_unverified_email_is_not_an_identity() {
    let w = World::start(Algorithm::RS256, "  usernameClaim: email", DEFAULT_ROUTES).await;
    let with = |verified: serde_json::Value| {
        let mut c = w.claims("org_abc", &[]);
        c["email_verified"] = verified;
        w.sign(&c)
    };
    for unverified in [json!(false), json!("false")] {
        let t = with(unverified);
        let req = Request::get(w.gate.url("/api/x"))
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(empty())
            .unwrap();
        w.gate
            .expect_refusal(req, 403, "unverified_email", Some(&t))
            .await;
    }
    let r = w.gate.expect_ok("/api/x", &with(json!(true))).await;
    r.assert_upstream(&[("x-forwarded-user", "alice@example.com")]);

    let w = World::start(
        Algorithm::RS256,
        "  usernameClaim: email\n  allowUnverifiedEmail: true",
        DEFAULT_ROUTES,
    )
    .await;
    let mut c = w.claims("org_abc", &[]);
    c["email_verified"] = json!(false);
    w.gate.expect_ok("/api/x", &w.sign(&c)).await;
    // Only the e-mail identity depends on it.
    let w = World::default().await;
    let mut c = w.claims("org_abc", &[]);
    c["email_verified"] = json!(false);
    w.gate.expect_ok("/api/x", &w.sign(&c)).await;
}

// ----------------------------------------------------- 10. upstream fan-out

/// An upstream that holds each request for `delay` and records the most
/// requests it ever had at once.
async fn counting_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let p = peak.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (now, peak) = (now.clone(), p.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (now, peak) = (now.clone(), peak.clone());
                    async move {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"{}")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_cap_answers_503_past_it() {
    let _load = timed().await;
    let (slow, _) = counting_upstream(Duration::from_millis(800)).await;
    let rest = format!(
        "  slow:\n    url: \"http://{slow}\"\n    maxConnections: 2\nroutes:\n  - name: slow\n    match: {{ pathPrefix: /slow }}\n    auth: none\n    upstream: slow\n"
    );
    let w = World::start(Algorithm::RS256, "", &rest).await;
    let url = w.gate.url("/slow");
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (c, url) = (w.gate.client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            send(&c, Request::get(url).body(empty()).unwrap())
                .await
                .status
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = w.gate.get("/slow", None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "refused at once"
    );
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    w.gate
        .assert_metric(
            "idp_gate_upstream_errors_total",
            &[("upstream", "slow"), ("kind", "saturated")],
            1.0,
        )
        .await;
    // Slots come back when the responses are done.
    assert_eq!(w.gate.get("/slow", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http2_connection_carries_at_most_100_streams() {
    let _load = heavy().await;
    let (slow, peak) = counting_upstream(Duration::from_millis(500)).await;
    let rest = format!(
        "  slow:\n    url: \"http://{slow}\"\nroutes:\n  - name: slow\n    match: {{ pathPrefix: /slow }}\n    auth: none\n    upstream: slow\n"
    );
    let w = World::start(Algorithm::RS256, "", &rest).await;
    let (sender, _conn) = h2c::<Empty<Bytes>>(w.gate.proxy).await;
    let uri = format!("http://{}/slow", w.gate.proxy);
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let mut sender = sender.clone();
        let uri = uri.clone();
        tasks.push(tokio::spawn(async move {
            sender.ready().await.ok()?;
            let resp = sender
                .send_request(Request::get(uri).body(Empty::<Bytes>::new()).unwrap())
                .await
                .ok()?;
            Some(resp.status().as_u16())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == Some(200) {
            ok += 1;
        }
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 100, "{peak} requests at once from one connection");
    assert!(peak >= 50, "the test did not load the upstream ({peak})");
    assert!(ok >= 100, "only {ok} of 150 streams were served");
}

/// A request head of `total` bytes for `/api/x`, padded with one header.
fn head_of(total: usize, token: &str) -> Vec<u8> {
    let start = format!(
        "GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nX-Pad: "
    );
    let pad = total - start.len() - "\r\n\r\n".len();
    let mut head = start.into_bytes();
    head.extend(std::iter::repeat_n(b'a', pad));
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), total);
    head
}

#[tokio::test]
async fn max_header_bytes_is_exact_however_the_head_arrives() {
    // The default limit, 64 KiB.
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    // In one write: the server may read well past the limit at once.
    // (Well under it: the upstream gets a few headers more.)
    assert_eq!(
        status_of(&raw(w.gate.proxy, &head_of(60000, &token)).await),
        200
    );
    for total in [65537, 70 * 1024, 100 * 1024] {
        let status = status_of(&raw(w.gate.proxy, &head_of(total, &token)).await);
        assert_eq!(status, 431, "a head of {total} bytes");
    }
    // In small pieces.
    let head = head_of(65537, &token);
    let mut s = TcpStream::connect(w.gate.proxy).await.unwrap();
    for piece in head.chunks(1000) {
        if s.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&out)), 431);
}

/// Writes its first `split` bytes, waits, then the rest: an HTTP/2 client
/// whose connection preface reaches the server in two parts.
struct SplitFirstWrite {
    inner: TcpStream,
    split: usize,
    written: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for SplitFirstWrite {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SplitFirstWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.written < this.split {
            let n = buf.len().min(this.split - this.written);
            let r = Pin::new(&mut this.inner).poll_write(cx, &buf[..n]);
            if let std::task::Poll::Ready(Ok(n)) = r {
                this.written += n;
                if this.written == this.split {
                    this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))));
                }
            }
            return r;
        }
        if let Some(pause) = &mut this.pause {
            std::task::ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn http2_is_recognised_when_its_preface_arrives_in_parts() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    for split in [1, 10, 23] {
        let stream = SplitFirstWrite {
            inner: TcpStream::connect(w.gate.proxy).await.unwrap(),
            split,
            written: 0,
            pause: None,
        };
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let req = Request::get("http://a/api/x")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2 request");
        assert_eq!(resp.status(), 200, "preface split after {split} bytes");
    }
}
