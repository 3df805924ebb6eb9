//! How the gateway talks to its upstreams: HTTP/2 in cleartext (h2c) and
//! over TLS (h2) with gRPC-style bodies and trailers passing through, and
//! the connection pool closing idle connections on time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- a gRPC-style upstream

/// Echoes the request body and answers with gRPC's trailers, plus what it
/// saw of the request in `x-seen-*` headers and the client's trailer back
/// as a trailer.
async fn grpc_echo(
    req: Request<Incoming>,
    alpn: Option<Vec<u8>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = req.into_parts();
    let collected = body.collect().await.expect("request body");
    let client_trailer = collected
        .trailers()
        .and_then(|t| t.get("x-client-trailer"))
        .cloned();
    let got_trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();

    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("echoed"));
    if let Some(v) = client_trailer {
        trailers.insert("x-client-trailer", v);
    }
    // Every trailer the upstream got, under `x-got-<name>`.
    for (name, value) in &got_trailers {
        let got = format!("x-got-{name}");
        trailers.insert(
            http::HeaderName::from_bytes(got.as_bytes()).unwrap(),
            value.clone(),
        );
    }
    let body = Full::new(data)
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let seen = |v: Option<&HeaderValue>| {
        v.cloned()
            .unwrap_or_else(|| HeaderValue::from_static("none"))
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "x-seen-version",
        format!("{:?}", parts.version).parse().unwrap(),
    );
    h.insert("x-seen-te", seen(parts.headers.get(header::TE)));
    h.insert("x-seen-host", seen(parts.headers.get(header::HOST)));
    h.insert(
        "x-seen-forwarded-host",
        seen(parts.headers.get("x-forwarded-host")),
    );
    h.insert("x-seen-org", seen(parts.headers.get("x-forwarded-org")));
    h.insert(
        "x-seen-alpn",
        seen(alpn.and_then(|a| HeaderValue::from_bytes(&a).ok()).as_ref()),
    );
    Ok(resp)
}

/// Serves [`grpc_echo`] over HTTP/2 only, in cleartext or over `tls`.
async fn h2_upstream(tls: Option<tokio_rustls::TlsAcceptor>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let svc = service_fn(|req| grpc_echo(req, None));
                        let _ = h2.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                        let svc = service_fn(move |req| grpc_echo(req, alpn.clone()));
                        let _ = h2.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A gRPC-shaped request: a length-prefixed message, `TE: trailers`, and a
/// trailer of its own.
fn grpc_request(
    url: String,
    token: Option<&str>,
    message: &'static [u8],
) -> Request<BoxBody<Bytes, Infallible>> {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-client-trailer", HeaderValue::from_static("from-client"));
    let body = Full::new(Bytes::from_static(message))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let mut req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    req.body(body).unwrap()
}

const MESSAGE: &[u8] = b"\x00\x00\x00\x00\x05hello";

#[tokio::test]
async fn grpc_over_h2c_passes_body_and_trailers_both_ways() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let (grpc, _task) = h2_upstream(None).await;
    let rest = format!(
        r#"  grpc:
    url: "http://{grpc}"
    protocol: h2c
routes:
  - name: grpc
    match: {{ pathPrefix: /echo.Echo/ }}
    upstream: grpc
"#
    );
    let gate = Gate::start_ready(&config(&jwks, &echo, "", &rest)).await;
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));

    // The client speaks HTTP/2 with prior knowledge to the gateway.
    let (mut sender, _conn) = h2c::<BoxBody<Bytes, Infallible>>(gate.proxy).await;
    let url = format!("http://{}/echo.Echo/Say", gate.proxy);
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(grpc_request(url.clone(), Some(&token), MESSAGE)),
    )
    .await
    .expect("in time")
    .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("response body");
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(collected.to_bytes().as_ref(), MESSAGE);
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "echoed");
    assert_eq!(
        trailers["x-client-trailer"], "from-client",
        "request trailers"
    );

    let seen = |name: &str| parts.headers[name].to_str().unwrap().to_string();
    assert_eq!(seen("x-seen-version"), "HTTP/2.0");
    assert_eq!(seen("x-seen-te"), "trailers");
    assert_eq!(seen("x-seen-org"), "org_abc");
    // `:authority` names the upstream; the client's host travels apart.
    assert_eq!(seen("x-seen-host"), "none");
    assert_eq!(seen("x-seen-forwarded-host"), gate.proxy.to_string());
    assert_eq!(parts.headers[header::CONTENT_TYPE], "application/grpc");

    // Without a token: the usual 401, over HTTP/2 too.
    let resp = sender
        .send_request(grpc_request(url, None, MESSAGE))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    gate.assert_metric(
        "idp_gate_upstream_requests_total",
        &[("upstream", "grpc"), ("status", "200")],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn request_trailers_are_filtered_like_headers() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let (grpc, _task) = h2_upstream(None).await;
    let rest = format!(
        r#"  grpc:
    url: "http://{grpc}"
    protocol: h2c
routes:
  - name: grpc
    match: {{ pathPrefix: /echo.Echo/ }}
    upstream: grpc
organizationBinding:
  header: X-WSO2-Organization
forwarding:
  claimsHeaders:
    email: X-Claim-Email
"#
    );
    let gate = Gate::start_ready(&config(&jwks, &echo, "", &rest)).await;
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));

    let (mut sender, _conn) = h2c::<BoxBody<Bytes, Infallible>>(gate.proxy).await;
    let forged = [
        ("x-client-trailer", "kept"),
        ("x-forwarded-user", "admin@example.com"),
        ("x-forwarded-org", "org_other"),
        ("x_forwarded_org", "org_other"),
        ("x-forwarded-sub", "someone"),
        ("x-wso2-organization", "org2"),
        ("x-claim-email", "admin@example.com"),
        ("authorization", "Bearer forged"),
        ("cookie", "session=forged"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-http-method-override", "DELETE"),
        ("x-request-id", "forged-id"),
        ("host", "elsewhere.example.com"),
        ("content-length", "1"),
    ];
    let mut trailers = HeaderMap::new();
    for (k, v) in forged {
        trailers.insert(k, HeaderValue::from_static(v));
    }
    let body = Full::new(Bytes::from_static(MESSAGE))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let req = Request::post(format!("http://{}/echo.Echo/Say", gate.proxy))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("in time")
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.expect("response body");
    let got: Vec<String> = collected
        .trailers()
        .expect("response trailers")
        .keys()
        .filter_map(|k| k.as_str().strip_prefix("x-got-").map(str::to_string))
        .collect();
    assert_eq!(
        got,
        ["x-client-trailer"],
        "trailers that reached the upstream"
    );
}

/// A self-signed certificate in a fresh directory: (the directory, the
/// certificate file, a TLS server offering only `alpn`).
fn tls_material(
    tag: &str,
    alpn: &[u8],
) -> (TempDir, std::path::PathBuf, tokio_rustls::TlsAcceptor) {
    let dir = TempDir::new(tag);
    let cert = SelfSigned::new();
    let (cert_file, _) = cert.write(&dir);
    (dir, cert_file, cert.acceptor(alpn))
}

#[tokio::test]
async fn h2_over_tls_upstream_is_reached_by_alpn_with_its_ca_file() {
    let (_dir, cert_file, acceptor) = tls_material("h2", b"h2");
    let (grpc, _task) = h2_upstream(Some(acceptor)).await;
    let yaml = format!(
        r#"upstreams:
  grpc:
    url: "https://127.0.0.1:{port}"
    protocol: h2
    caFile: "{ca}"
routes:
  - {{ name: grpc, match: {{ pathPrefix: /echo.Echo/ }}, auth: none, upstream: grpc }}
"#,
        port = grpc.port(),
        ca = cert_file.display(),
    );
    let gate = Gate::start_ready(&yaml).await;

    // An HTTP/1.1 client: the gateway speaks HTTP/2 upstream all the same.
    let req = Request::post(gate.url("/echo.Echo/Say"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(full(MESSAGE))
        .unwrap();
    let r = gate.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body.as_ref(), MESSAGE);
    assert_eq!(r.header("x-seen-version").as_deref(), Some("HTTP/2.0"));
    assert_eq!(r.header("x-seen-alpn").as_deref(), Some("h2"));
    assert_eq!(r.header("x-seen-te").as_deref(), Some("trailers"));
}

/// The first `upstream request failed` line in `logs`.
fn failure_line(logs: &Mutex<Vec<u8>>) -> String {
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    logs.lines()
        .find(|l| l.contains("upstream request failed"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no failure logged:\n{logs}"))
}

/// Log lines written while the returned guard lives, on this thread (the
/// gateway's tasks run here under `#[tokio::test]`).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(logs.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn an_h2_upstream_without_its_ca_is_a_502_that_says_why() {
    let (logs, _guard) = capture_logs();
    let (_dir, _cert_file, acceptor) = tls_material("h2-untrusted", b"h2");
    let (grpc, _task) = h2_upstream(Some(acceptor)).await;
    let yaml = format!(
        r#"upstreams:
  grpc: {{ url: "https://127.0.0.1:{port}", protocol: h2 }}
routes:
  - {{ name: grpc, match: {{ pathPrefix: / }}, auth: none, upstream: grpc }}
"#,
        port = grpc.port(),
    );
    let gate = Gate::start_ready(&yaml).await;
    let r = gate.get("/echo.Echo/Say", None).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    gate.assert_metric(
        "idp_gate_upstream_errors_total",
        &[("upstream", "grpc"), ("kind", "connect")],
        1.0,
    )
    .await;
    // The cause survives to the log line, not just "connect".
    let line = failure_line(&logs);
    assert!(line.contains("upstream=grpc"), "{line}");
    assert!(
        line.contains("invalid peer certificate: UnknownIssuer"),
        "{line}"
    );
}

// ---------------------------------------------------------------- the pool

/// An HTTP/1.1 upstream that counts its open connections (it never closes
/// an idle one itself).
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, task)
}

#[tokio::test]
async fn idle_pooled_connections_are_closed_after_the_idle_timeout() {
    let (quick, quick_open, _q) = counting_upstream().await;
    let (lasting, lasting_open, _l) = counting_upstream().await;
    let yaml = format!(
        r#"upstreams:
  quick: {{ url: "http://{quick}", idleTimeoutMs: 300 }}
  lasting: {{ url: "http://{lasting}" }}
routes:
  - {{ name: quick, match: {{ pathPrefix: /quick }}, auth: none, upstream: quick }}
  - {{ name: lasting, match: {{ pathPrefix: /lasting }}, auth: none, upstream: lasting }}
"#
    );
    let gate = Gate::start_ready(&yaml).await;
    assert_eq!(gate.get("/lasting/x", None).await.status, 200);
    assert_eq!(gate.get("/quick/x", None).await.status, 200);
    let idle_since = Instant::now();
    // Pooled: both connections stay open after their responses.
    assert_eq!(quick_open.load(Ordering::SeqCst), 1);
    assert_eq!(lasting_open.load(Ordering::SeqCst), 1);

    assert!(
        poll_until(Duration::from_secs(5), || quick_open.load(Ordering::SeqCst)
            == 0)
        .await,
        "the idle connection was never closed"
    );
    let closed_after = idle_since.elapsed();
    assert!(
        closed_after >= Duration::from_millis(250),
        "closed after {closed_after:?}, before its idle timeout"
    );
    // The default (60 s) keeps the other one.
    assert_eq!(lasting_open.load(Ordering::SeqCst), 1);

    // A new request opens a new connection.
    assert_eq!(gate.get("/quick/y", None).await.status, 200);
    assert_eq!(quick_open.load(Ordering::SeqCst), 1);
}

/// A raw HTTP/1.1 upstream that counts the connections it accepted and
/// answers by path: `/empty` 204, `/close` 200 and then closes the
/// connection without saying so (as an upstream whose keep-alive timer
/// fired would), `/big` a 1 MiB body, anything else 200 `ok`.
async fn scripted_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let reply: Vec<u8> = if path.ends_with("/empty") {
                        b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
                    } else if path.ends_with("/big") {
                        let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
                        r.resize(r.len() + 1024 * 1024, b'x');
                        r
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
                    };
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                    if path.ends_with("/close") {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn http1_upstream_connections_are_reused_and_stale_ones_replaced() {
    let (upstream, accepted) = scripted_upstream().await;
    let yaml = format!(
        r#"upstreams:
  u: {{ url: "http://{upstream}" }}
routes:
  - {{ name: u, match: {{ pathPrefix: / }}, auth: none, upstream: u }}
"#
    );
    let gate = Gate::start_ready(&yaml).await;
    // One request at a time: one connection carries them all, empty
    // bodies included.
    for path in ["/a", "/empty", "/b", "/empty", "/c"] {
        let r = gate.get(path, None).await;
        assert!(r.status == 200 || r.status == 204, "{path}: {}", r.status);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections opened");

    // The upstream closes the pooled connection after answering: the
    // next request goes out on a new one and succeeds.
    assert_eq!(gate.get("/close", None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/after-close", "/again"] {
        assert_eq!(gate.get(path, None).await.status, 200, "{path}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "connections opened");

    // A client that leaves half-way through a body: that connection cannot
    // be reused, and the next request gets a good one.
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut first).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/d", "/e", "/f"] {
        assert_eq!(gate.get(path, None).await.status, 200, "{path}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "connections opened");
}

#[tokio::test]
async fn http1_over_tls_upstream_is_reached_with_its_ca_file_and_refused_without() {
    let (logs, _guard) = capture_logs();
    let (_dir, cert_file, acceptor) = tls_material("h1-tls", b"http/1.1");
    let upstream = HttpsHello::start(acceptor).await;
    let port = upstream.addr.port();
    let yaml = format!(
        r#"upstreams:
  trusted: {{ url: "https://127.0.0.1:{port}", caFile: "{ca}" }}
  untrusted: {{ url: "https://127.0.0.1:{port}" }}
routes:
  - {{ name: trusted, match: {{ pathPrefix: /trusted }}, auth: none, upstream: trusted }}
  - {{ name: untrusted, match: {{ pathPrefix: /untrusted }}, auth: none, upstream: untrusted }}
"#,
        ca = cert_file.display(),
    );
    let gate = Gate::start_ready(&yaml).await;
    for path in ["/trusted/a", "/trusted/b", "/trusted/c"] {
        let r = gate.get(path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.text(), "tls-ok");
        assert_eq!(r.header("x-seen-version").as_deref(), Some("HTTP/1.1"));
    }
    // One TLS connection carried all three.
    assert_eq!(upstream.accepted(), 1);

    let r = gate.get("/untrusted/x", None).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    gate.assert_metric(
        "idp_gate_upstream_errors_total",
        &[("upstream", "untrusted"), ("kind", "connect")],
        1.0,
    )
    .await;
    let line = failure_line(&logs);
    assert!(line.contains("upstream=untrusted"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
}
