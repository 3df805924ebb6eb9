//! What reaches the upstream, and what happens when the upstream or the
//! client misbehaves: paths, headers, identity, organization binding,
//! upstream failures, streaming, oversized and non-UTF-8 requests, and the
//! admin listener with its metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::*;
use http::{Method, Request, StatusCode, header};
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

// ---------------------------------------------------------------- paths

#[tokio::test]
async fn canonical_path_and_byte_for_byte_query_are_forwarded() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    for (target, forwarded) in [
        ("/api/a%20b/c?x=1&y=%2F&z", "/api/a%20b/c?x=1&y=%2F&z"),
        (
            "/api/%7Euser/a+b?q=a%20b+c&&empty=&%26=%3D",
            "/api/~user/a+b?q=a%20b+c&&empty=&%26=%3D",
        ),
        ("/api/x?", "/api/x?"),
        ("/api//double", "/api/double"),
        ("/api/a%3ab%2d", "/api/a%3Ab-"),
    ] {
        let r = w.gate.expect_ok(target, &token).await;
        assert_eq!(r.json()["path"], forwarded, "{target}");
    }
}

#[tokio::test]
async fn strip_prefix_removes_the_matched_prefix() {
    let rest = r#"routes:
  - name: stripped
    match: { pathPrefix: /svc/v1/ }
    auth: none
    stripPrefix: true
    upstream: echo
  - name: based
    match: { pathPrefix: /based }
    auth: none
    upstream: base
"#;
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring).await;
    let echo = Echo::start().await;
    let yaml = config(&jwks, &echo, "", rest).replace(
        "upstreams:\n",
        &format!(
            "upstreams:\n  base:\n    url: \"{}/base/path/\"\n",
            echo.url()
        ),
    );
    let gate = Gate::start_ready(&yaml).await;
    for (target, upstream) in [
        ("/svc/v1/items/7?full=1", "/items/7?full=1"),
        ("/svc/v1", "/"),
        ("/svc/v1/", "/"),
        ("/svc/v1?x=%2F", "/?x=%2F"),
        ("/based/x?y", "/base/path/based/x?y"),
    ] {
        let r = gate.get(target, None).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.json()["path"], upstream, "{target}");
    }
    // Not a segment boundary: no route.
    assert_eq!(gate.get("/svc/v10", None).await.status, 404);
}

// ---------------------------------------------------------------- headers

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    let r = w
        .gate
        .get_with(
            "/api/x",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("connection", "keep-alive, X-Secret-Hop, x-other-hop"),
                ("x-secret-hop", "1"),
                ("x-other-hop", "2"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("proxy-connection", "keep-alive"),
                ("te", "gzip, trailers"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json()["headers"].clone();
    for gone in [
        "connection",
        "x-secret-hop",
        "x-other-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the upstream: {seen}"
        );
    }
    assert_eq!(seen["x-end-to-end"], "kept");
    // gRPC needs `TE: trailers` end to end; no other TE value goes on.
    assert_eq!(seen["te"], "trailers");
}

#[tokio::test]
async fn connection_cannot_name_away_what_the_gateway_sets() {
    let w = World::start(
        Algorithm::RS256,
        "",
        &format!("{DEFAULT_ROUTES}organizationBinding:\n  header: X-WSO2-Organization\n"),
    )
    .await;
    let token = w.token("org_abc", &[]);
    let r = w
        .gate
        .get_with(
            "/api/x",
            &[
                ("authorization", &format!("Bearer {token}")),
                (
                    "connection",
                    "X-Forwarded-User, X-Forwarded-Org, X-Forwarded-Sub, X-WSO2-Organization, \
                     X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, Authorization",
                ),
                ("x-request-id", "trace-7"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.assert_upstream(&[
        ("x-forwarded-user", "auth0|user-1"),
        ("x-forwarded-org", "org_abc"),
        ("x-forwarded-sub", "auth0|user-1"),
        ("x-wso2-organization", "org_abc"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "trace-7"),
        ("authorization", &format!("Bearer {token}")),
    ]);
    r.assert_not_upstream(&["connection"]);
}

#[tokio::test]
async fn x_forwarded_headers_are_set() {
    let w = World::default().await;
    let r = w
        .gate
        .get_with(
            "/public/x",
            &[
                ("host", "apk.example.com:8443"),
                ("x-forwarded-for", "10.1.2.3"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example.com"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A sidecar trusts no hop in front of it: the client's claim is replaced.
    r.assert_upstream(&[
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "apk.example.com:8443"),
    ]);
    // Without a prior hop.
    let r = w.gate.get("/public/x", None).await;
    r.assert_upstream(&[
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", &w.gate.proxy.to_string()),
    ]);
}

#[tokio::test]
async fn an_upstream_host_replaces_the_clients_host_upstream_only() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring).await;
    let echo = Echo::start().await;
    let rest = format!(
        r#"  vhost:
    url: "{}"
    host: "api.internal:8443"
routes:
  - name: vhost
    match: {{ pathPrefix: /vhost }}
    auth: none
    upstream: vhost
  - name: plain
    match: {{ pathPrefix: /plain }}
    auth: none
    upstream: echo
"#,
        echo.url()
    );
    let gate = Gate::start_ready(&config(&jwks, &echo, "", &rest)).await;
    let r = gate
        .get_with("/vhost/x", &[("host", "apk.example.com")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.assert_upstream(&[
        ("host", "api.internal:8443"),
        ("x-forwarded-host", "apk.example.com"),
    ]);
    // Other upstreams still get the client's.
    let r = gate
        .get_with("/plain/x", &[("host", "apk.example.com")])
        .await;
    r.assert_upstream(&[("host", "apk.example.com")]);

    // A value that is not a host is a config error naming its path.
    let bad = config(
        &jwks,
        &echo,
        "",
        "  vhost:\n    url: \"http://127.0.0.1:1\"\n    host: \"a b/c\"\nroutes: []\n",
    );
    let err = idp_gate::config::Config::from_yaml(&bad, std::path::Path::new("t.yaml"), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("upstreams.vhost.host"), "{err}");
}

#[tokio::test]
async fn request_id_is_kept_when_sane_and_generated_otherwise() {
    let w = World::default().await;
    let r = w
        .gate
        .get_with("/public/x", &[("x-request-id", "abc-123_x.y:z")])
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("abc-123_x.y:z"));
    r.assert_upstream(&[("x-request-id", "abc-123_x.y:z")]);

    for bad in ["bad id<script>", &"x".repeat(200), ""] {
        let r = w.gate.get_with("/public/x", &[("x-request-id", bad)]).await;
        let rid = r.header("x-request-id").unwrap();
        assert_ne!(rid, bad);
        assert_eq!(rid.len(), 36, "{rid}");
        r.assert_upstream(&[("x-request-id", &rid)]);
    }
    // None sent: generated, and the same on both sides.
    let r = w.gate.get("/public/x", None).await;
    let rid = r.header("x-request-id").unwrap();
    assert_eq!(rid.len(), 36);
    r.assert_upstream(&[("x-request-id", &rid)]);
    // Refusals carry it too.
    let r = w
        .gate
        .get_with("/api/x", &[("x-request-id", "trace-42")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-request-id").as_deref(), Some("trace-42"));
    assert_eq!(r.json()["request_id"], "trace-42");
}

const IDENTITY_EXTRA: &str = "  usernameClaim: email";
/// Appended to `DEFAULT_ROUTES`.
const IDENTITY_FORWARDING: &str = r#"forwarding:
  claimsHeaders:
    "https://example.com/roles": X-Roles
    "/profile/team": X-Team
"#;

#[tokio::test]
async fn identity_headers_come_from_verified_claims_only() {
    let w = World::start(
        Algorithm::RS256,
        IDENTITY_EXTRA,
        &format!("{DEFAULT_ROUTES}{IDENTITY_FORWARDING}"),
    )
    .await;
    let mut c = w.claims("org_abc", &[]);
    c["https://example.com/roles"] = json!(["admin", "dev"]);
    c["profile"] = json!({"team": "platform"});
    let token = w.sign(&c);
    let spoofed = [
        ("x-forwarded-org", "org_evil"),
        ("x-forwarded-user", "mallory@example.com"),
        ("x-forwarded-sub", "auth0|mallory"),
        ("x-roles", "superuser"),
        ("x-team", "security"),
    ];
    let mut headers = vec![("authorization", format!("Bearer {token}"))];
    headers.extend(spoofed.iter().map(|(k, v)| (*k, v.to_string())));
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let r = w.gate.get_with("/api/x", &hs).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.assert_upstream(&[
        ("x-forwarded-org", "org_abc"),
        ("x-forwarded-user", "alice@example.com"),
        ("x-forwarded-sub", "auth0|user-1"),
        ("x-roles", "admin,dev"),
        ("x-team", "platform"),
    ]);
    // forwardAuthorization defaults to true.
    r.assert_upstream(&[("authorization", &format!("Bearer {token}"))]);

    // A token without those claims: the spoofed values are removed, not kept.
    let plain = w.token("org_abc", &[]);
    let mut headers = vec![("authorization", format!("Bearer {plain}"))];
    headers.extend(spoofed.iter().map(|(k, v)| (*k, v.to_string())));
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = w.gate.get_with("/api/x", &hs).await;
    assert_eq!(r.status, 200);
    r.assert_not_upstream(&["x-roles", "x-team"]);
    r.assert_upstream(&[("x-forwarded-org", "org_abc")]);

    // Public routes strip them as well: nobody can forge an identity there.
    let r = w.gate.get_with("/public/x", &spoofed).await;
    assert_eq!(r.status, 200);
    r.assert_not_upstream(&spoofed.map(|(name, _)| name));
}

#[tokio::test]
async fn forward_authorization_false_removes_it() {
    let rest = format!("{DEFAULT_ROUTES}forwarding:\n  forwardAuthorization: false\n");
    let w = World::start(Algorithm::RS256, "", &rest).await;
    let token = w.token("org_abc", &[]);
    let r = w.gate.expect_ok("/api/x", &token).await;
    r.assert_not_upstream(&["authorization"]);
    assert!(!r.text().contains(&token));
    r.assert_upstream(&[("x-forwarded-org", "org_abc")]);
    // On public routes too.
    let r = w
        .gate
        .get_with("/public/x", &[("authorization", "Bearer whatever")])
        .await;
    r.assert_not_upstream(&["authorization"]);
}

#[tokio::test]
async fn organization_binding_overwrites_the_header_and_checks_the_query() {
    let rest = format!(
        "{DEFAULT_ROUTES}organizations:\n  org_abc: {{ name: org1 }}\n  org_xyz: {{ name: org2 }}\n  org_raw: {{ name: org_raw }}\norganizationBinding:\n  header: X-WSO2-Organization\n  queryParam: organization\n"
    );
    let w = World::start(Algorithm::RS256, "", &rest).await;
    let token = w.token("org_abc", &[]);
    let auth = format!("Bearer {token}");

    // The caller's own value is overwritten with the mapped name.
    let r = w
        .gate
        .get_with(
            "/api/apis",
            &[("authorization", &auth), ("x-wso2-organization", "org2")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.assert_upstream(&[("x-wso2-organization", "org1")]);
    // Without one, it is added.
    let r = w.gate.get("/api/apis", Some(&token)).await;
    r.assert_upstream(&[("x-wso2-organization", "org1")]);

    // The query may name the verified organization (by name or id)…
    for q in ["organization=org1", "organization=org_abc", "x=1"] {
        let r = w.gate.get(&format!("/api/apis?{q}"), Some(&token)).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(r.json()["path"], format!("/api/apis?{q}"));
    }
    // …but never another one.
    for q in [
        "organization=org2",
        "organization=org_xyz",
        "x=1&organization=org1&organization=org2",
        "organization=",
    ] {
        let req = Request::get(w.gate.url(&format!("/api/apis?{q}")))
            .header(header::AUTHORIZATION, &auth)
            .body(empty())
            .unwrap();
        w.gate
            .expect_refusal(req, 403, "organization_mismatch", Some(&token))
            .await;
    }

    // A public route gets no binding header, whatever the caller sends.
    let r = w
        .gate
        .get_with("/public/x", &[("x-wso2-organization", "org2")])
        .await;
    assert_eq!(r.status, 200);
    r.assert_not_upstream(&["x-wso2-organization"]);
}

// ---------------------------------------------------------------- upstream failures

/// Accepts connections and never answers (holds them open).
async fn silent_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// Reads the request head, then closes the connection without a response.
async fn closing_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                drop(s);
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let dead = dead_addr().await;
    let (silent, _s) = silent_upstream().await;
    let (closing, _c) = closing_upstream().await;
    let yaml = format!(
        r#"upstreams:
  dead: {{ url: "http://{dead}", connectTimeoutMs: 1000 }}
  silent: {{ url: "http://{silent}", requestTimeoutMs: 300 }}
  closing: {{ url: "http://{closing}" }}
routes:
  - {{ name: dead, match: {{ pathPrefix: /dead }}, auth: none, upstream: dead }}
  - {{ name: silent, match: {{ pathPrefix: /silent }}, auth: none, upstream: silent }}
  - {{ name: closing, match: {{ pathPrefix: /closing }}, auth: none, upstream: closing }}
"#
    );
    let gate = Gate::start_ready(&yaml).await;
    let errors = |text: &str, up: &str, kind: &str| {
        metric_value(
            text,
            "idp_gate_upstream_errors_total",
            &[("upstream", up), ("kind", kind)],
        )
    };
    let before = gate.metrics_text().await;

    let r = gate.get("/dead/x", None).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_gateway");

    let started = std::time::Instant::now();
    let r = gate.get("/silent/x", None).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert_eq!(r.json()["error"], "gateway_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "timeout after {took:?}"
    );

    let r = gate.get("/closing/x", None).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.json()["request_id"].is_string());

    let after = gate.metrics_text().await;
    for (up, kind) in [
        ("dead", "connect"),
        ("silent", "timeout"),
        ("closing", "reset"),
    ] {
        assert_eq!(
            errors(&after, up, kind),
            errors(&before, up, kind) + 1.0,
            "upstream_errors_total{{upstream={up},kind={kind}}}"
        );
    }
    assert_eq!(
        metric_value(
            &after,
            "idp_gate_requests_total",
            &[("route", "silent"), ("status", "504")]
        ),
        1.0
    );
    // The gateway keeps serving.
    assert_eq!(gate.get("/dead/y", None).await.status, 502);
}

// ---------------------------------------------------------------- streaming

#[tokio::test]
async fn a_100_mib_body_streams_through_without_buffering() {
    let _load = heavy().await;
    // RSS is the whole process's: measured where no other test runs.
    if !alone("forwarding::a_100_mib_body_streams_through_without_buffering").await {
        return;
    }
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 1600; // 100 MiB
    let w = World::default().await;
    // Warm up pools and allocators before the baseline.
    assert_eq!(w.gate.get("/public/warm", None).await.status, 200);
    let baseline = rss_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(w.gate.url("/public/upload"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(streaming_body(CHUNKS, CHUNK))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(120), w.gate.send(req))
        .await
        .expect("upload finished");
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_bytes"], (CHUNK * CHUNKS) as u64);
    assert_eq!(r.json()["method"], "POST");
    let growth = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    assert!(
        growth < 50 * 1024 * 1024,
        "RSS grew by {} MiB while streaming 100 MiB",
        growth / (1024 * 1024)
    );
}

// ---------------------------------------------------------------- hostile requests

#[tokio::test]
async fn oversized_headers_are_refused_and_serving_goes_on() {
    let w = World::default().await;
    let mut req = b"GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100 * 1024));
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let reply = raw(w.gate.proxy, &req).await;
    let status = reply.lines().next().unwrap_or_default().to_string();
    assert!(
        status.starts_with("HTTP/1.1 431") || status.starts_with("HTTP/1.1 400"),
        "oversized head answered {status:?}"
    );
    // Many headers instead of one big one.
    let mut req = b"GET /public/x HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..2000 {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    let reply = raw(w.gate.proxy, &req).await;
    let status = reply.lines().next().unwrap_or_default().to_string();
    assert!(
        status.starts_with("HTTP/1.1 431") || status.starts_with("HTTP/1.1 400"),
        "too many headers answered {status:?}"
    );
    // The gateway is still there.
    let r = w.gate.get("/public/after", None).await;
    assert_eq!(r.status, 200);
    w.gate
        .expect_ok("/api/after", &w.token("org_abc", &[]))
        .await;
}

#[tokio::test]
async fn non_utf8_header_values_are_handled() {
    let w = World::default().await;
    let reply = raw(
        w.gate.proxy,
        b"GET /public/x HTTP/1.1\r\nHost: a\r\nX-Junk: \xff\xfe ok\r\nX-Request-Id: \xff\r\nX-Forwarded-Org: \xc3\x28\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
    let echoed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed["headers"]["x-junk"], "\u{fffd}\u{fffd} ok");
    assert!(
        echoed["headers"].get("x-forwarded-org").is_none(),
        "{echoed}"
    );
    assert_eq!(
        echoed["headers"]["x-request-id"].as_str().unwrap().len(),
        36
    );

    // A non-UTF-8 Authorization is no token.
    let reply = raw(
        w.gate.proxy,
        b"GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \xff\xfe\xfd\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains("missing_token"), "{reply}");

    // Nor does a non-UTF-8 Host break routing.
    let reply = raw(
        w.gate.proxy,
        b"GET /public/x HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );

    // And the gateway still serves.
    assert_eq!(w.gate.get("/public/after", None).await.status, 200);
    w.gate
        .expect_ok("/api/after", &w.token("org_abc", &[]))
        .await;
}

// ---------------------------------------------------------------- admin and metrics

#[tokio::test]
async fn admin_endpoints_are_not_on_the_proxy_port() {
    let w = World::default().await;
    assert_ne!(w.gate.proxy.port(), w.gate.admin.port());
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = w.gate.get(path, None).await;
        assert_eq!(r.status, 404, "{path} on the proxy: {}", r.text());
        assert!(!r.text().contains("idp_gate_"), "metrics on the proxy port");
        assert_eq!(r.json()["error"], "not_found");
    }
    let r = w.gate.admin_get("/healthz").await;
    assert_eq!(r.status, 200);
    let r = w.gate.admin_get("/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
    let r = w.gate.admin_get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    // The admin listener does not proxy.
    assert_eq!(w.gate.admin_get("/api/x").await.status, 404);
    assert_eq!(w.gate.admin_get("/public/x").await.status, 404);
}

const CONTRACT_METRICS: [&str; 12] = [
    "idp_gate_requests_total",
    "idp_gate_request_duration_seconds",
    "idp_gate_auth_failures_total",
    "idp_gate_upstream_requests_total",
    "idp_gate_upstream_errors_total",
    "idp_gate_jwks_fetches_total",
    "idp_gate_jwks_keys",
    "idp_gate_config_reloads_total",
    "idp_gate_inflight_requests",
    "idp_gate_token_cache_hits_total",
    "idp_gate_token_cache_misses_total",
    "idp_gate_upgrades_total",
];

fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let spawn = |bin: &str| {
        Command::new(bin)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // Required, not optional: a missing promtool fails the test.
    let mut child = spawn("promtool")
        .or_else(|_| spawn("/usr/bin/promtool"))
        .expect("promtool must be installed (it is part of the contract's checks)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- metrics ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_name_every_contract_metric_and_pass_promtool() {
    let w = World::default().await;
    let token = w.token("org_abc", &[]);
    w.gate.expect_ok("/api/x", &token).await;
    w.gate.expect_ok("/api/x", &token).await; // a cache hit
    assert_eq!(w.gate.get("/api/x", None).await.status, 401);
    assert_eq!(w.gate.get("/nowhere", None).await.status, 404);
    assert_eq!(w.gate.get("/public/x", None).await.status, 200);

    let text = w.gate.metrics_text().await;
    for name in CONTRACT_METRICS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} is missing:\n{text}"
        );
    }
    assert!(
        !text.contains("requests_by_organization_total"),
        "opt-in metric present"
    );
    let v = |name: &str, labels: &[(&str, &str)]| metric_value(&text, name, labels);
    assert_eq!(
        v(
            "idp_gate_requests_total",
            &[("route", "api"), ("method", "GET"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        v(
            "idp_gate_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "idp_gate_auth_failures_total",
            &[("reason", "missing_token")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "idp_gate_upstream_requests_total",
            &[("upstream", "echo"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(v("idp_gate_token_cache_hits_total", &[]), 1.0);
    assert_eq!(v("idp_gate_token_cache_misses_total", &[]), 1.0);
    assert_eq!(v("idp_gate_inflight_requests", &[]), 0.0);
    assert_eq!(v("idp_gate_jwks_keys", &[("issuer", &w.issuer())]), 1.0);
    assert!(v("idp_gate_jwks_fetches_total", &[("result", "success")]) >= 1.0);
    assert_eq!(
        v(
            "idp_gate_request_duration_seconds_count",
            &[("route", "api")]
        ),
        3.0
    );
    promtool_check(&text);
}

#[tokio::test]
async fn organization_label_metric_is_opt_in() {
    let rest = format!("{DEFAULT_ROUTES}metrics:\n  organizationLabel: true\n");
    let w = World::start(Algorithm::RS256, "", &rest).await;
    // Before any request the family is announced; promtool must accept that too.
    let text = w.gate.metrics_text().await;
    promtool_check(&text);
    w.gate.expect_ok("/api/x", &w.token("org_abc", &[])).await;
    w.gate.expect_ok("/api/x", &w.token("org_abc", &[])).await;
    w.gate.expect_ok("/api/x", &w.token("org_xyz", &[])).await;
    let text = w.gate.metrics_text().await;
    let v = |org: &str| {
        metric_value(
            &text,
            "idp_gate_requests_by_organization_total",
            &[("organization", org)],
        )
    };
    assert_eq!(v("org_abc"), 2.0);
    assert_eq!(v("org_xyz"), 1.0);
    for name in CONTRACT_METRICS {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    promtool_check(&text);
}
