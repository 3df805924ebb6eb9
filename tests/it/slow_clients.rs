//! Clients that send or read slowly, or stop: a dripped request body does
//! not hold up other requests to the same upstream, a body that stops
//! arriving is ended (408), and a response the client stops reading (a
//! full socket, or an HTTP/2 window kept at zero) is abandoned and its
//! upstream slot freed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream saw of request bodies.
#[derive(Default)]
struct Bodies {
    /// Read to their end.
    whole: AtomicUsize,
    /// Broken off before their end.
    broken: AtomicUsize,
}

type UpBody = BoxBody<Bytes, Infallible>;

/// An upstream that answers at once, before it has read the request body,
/// then reads the body to its end, as Tomcat and Node do. `/fire` answers
/// with an endless body instead.
async fn answers_first() -> (SocketAddr, Arc<Bodies>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Bodies::default());
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let fire = req.uri().path().starts_with("/fire");
                    tokio::spawn(async move {
                        match req.into_body().collect().await {
                            Ok(_) => seen.whole.fetch_add(1, Ordering::SeqCst),
                            Err(_) => seen.broken.fetch_add(1, Ordering::SeqCst),
                        };
                    });
                    let body: UpBody = if fire {
                        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                        let frames = futures_util::stream::repeat_with(move || {
                            Ok::<_, Infallible>(Frame::data(chunk.clone()))
                        });
                        StreamBody::new(frames).boxed()
                    } else {
                        Full::new(Bytes::from_static(b"early")).boxed()
                    };
                    Ok::<_, Infallible>(Response::new(body))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, bodies)
}

/// A gateway with public routes to `answers_first` and to the echo
/// upstream, and `limits` (YAML under `limits:`, indented by 2).
async fn gate_with(limits: &str, upstream_extra: &str) -> (Gate, Arc<Bodies>, JwksServer, Echo) {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring).await;
    let echo = Echo::start().await;
    let (first, bodies) = answers_first().await;
    let rest = format!(
        r#"  first:
    url: "http://{first}"
    requestTimeoutMs: 3000
{upstream_extra}
routes:
  - name: first
    match: {{ pathPrefix: /first }}
    auth: none
    upstream: first
  - name: fire
    match: {{ pathPrefix: /fire }}
    auth: none
    upstream: first
  - name: echo
    match: {{ pathPrefix: /echo }}
    auth: none
    upstream: echo
limits:
  maxConnectionsPerClient: 1000
{limits}
"#
    );
    let gate = Gate::start_ready(&config(&jwks, &echo, "", &rest)).await;
    (gate, bodies, jwks, echo)
}

/// Opens a raw connection to the gateway and sends a request head for a
/// body of `length` bytes, then `sent` of them.
async fn start_upload(gate: &Gate, path: &str, length: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: gate\r\ncontent-length: {length}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b'a'; sent]).await.unwrap();
    s
}

/// Reads from `s` until the end of a response head; returns what it read.
async fn read_head(s: &mut TcpStream, within: Duration) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("a response head in time");
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_dripped_request_body_does_not_hold_up_the_next_request() {
    let _load = timed().await;
    let (gate, bodies, _jwks, _echo) = gate_with("", "").await;
    // One byte every 300 ms of a 100 kB body: the upstream answers first.
    let mut drip = start_upload(&gate, "/first/upload", 100_000, 1).await;
    assert!(
        read_head(&mut drip, Duration::from_secs(5))
            .await
            .starts_with("HTTP/1.1 200")
    );
    let (mut r, mut w) = drip.into_split();
    let dripping = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if w.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    });

    // Others reach the same upstream at once, again and again.
    for _ in 0..3 {
        let started = Instant::now();
        let resp = gate.get("/first/next", None).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        assert_eq!(resp.text(), "early");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited {:?} behind a slow client",
            started.elapsed()
        );
    }
    assert_eq!(bodies.whole.load(Ordering::SeqCst), 3);
    dripping.abort();
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_is_ended_with_408_and_counted() {
    let (gate, bodies, _jwks, _echo) = gate_with("  requestBodyTimeoutMs: 500", "").await;
    let timeouts = || async {
        gate.metric(
            "idp_gate_client_timeouts_total",
            &[("kind", "request_body")],
        )
        .await
    };
    assert_eq!(timeouts().await, 0.0);

    // Before any response: the echo upstream reads the whole body first.
    let started = Instant::now();
    let mut s = start_upload(&gate, "/echo/upload", 100, 10).await;
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("application/json"),
        "{head}"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    let whole = format!("{head}{}", String::from_utf8_lossy(&rest));
    assert!(whole.contains("\"error\":\"request_timeout\""), "{whole}");
    assert_eq!(timeouts().await, 1.0);
    gate.assert_metric(
        "idp_gate_requests_total",
        &[("route", "echo"), ("status", "408")],
        1.0,
    )
    .await;

    // After the response has started: the upstream's request is cancelled.
    let mut s = start_upload(&gate, "/first/upload", 100, 10).await;
    assert!(
        read_head(&mut s, Duration::from_secs(5))
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        poll_until(Duration::from_secs(5), || bodies
            .broken
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the upstream still waits for the body"
    );
    assert_eq!(timeouts().await, 2.0);
    // A body that keeps coming, slower than the timeout in total, is fine.
    let mut s = start_upload(&gate, "/echo/slow", 6, 0).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(b"z").await.unwrap();
    }
    assert!(
        read_head(&mut s, Duration::from_secs(5))
            .await
            .starts_with("HTTP/1.1 200")
    );
}

/// Whether the upstream behind `/first` answers a request with 200 again
/// within `within` (its one slot freed).
async fn answers_ok_within(gate: &Gate, within: Duration) -> bool {
    let started = Instant::now();
    loop {
        if gate.get("/first/x", None).await.status == StatusCode::OK {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks for the endless `/fire` body and reads none of it.
async fn unread_fire(gate: &Gate) -> TcpStream {
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(b"GET /fire HTTP/1.1\r\nhost: gate\r\n\r\n")
        .await
        .unwrap();
    // The head only: the body is left in the socket.
    let mut first = [0u8; 12];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    s
}

#[tokio::test]
async fn a_response_the_client_stops_reading_is_abandoned_and_its_upstream_slot_freed() {
    let (gate, _bodies, _jwks, _echo) =
        gate_with("  responseWriteTimeoutMs: 1500", "    maxConnections: 1").await;
    let _reader = unread_fire(&gate).await;
    // The one slot is the stalled response's.
    let resp = gate.get("/first/x", None).await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );

    let freed = answers_ok_within(&gate, Duration::from_secs(10)).await;
    assert!(freed, "the unread response kept the upstream's slot");
    gate.assert_metric(
        "idp_gate_client_timeouts_total",
        &[("kind", "response_write")],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn an_http2_client_that_keeps_a_zero_window_has_its_response_abandoned() {
    let (gate, _bodies, _jwks, _echo) =
        gate_with("  responseWriteTimeoutMs: 1500", "    maxConnections: 1").await;
    // A client that reads its socket but never opens a stream's window.
    let tcp = TcpStream::connect(gate.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .adaptive_window(false)
        .handshake::<_, ReqBody>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(gate.url("/fire")).body(empty()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = gate.get("/first/x", None).await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    let freed = answers_ok_within(&gate, Duration::from_secs(10)).await;
    assert!(freed, "the zero-window stream kept the upstream's slot");
    assert!(
        gate.metric(
            "idp_gate_client_timeouts_total",
            &[("kind", "response_write")]
        )
        .await
            >= 1.0
    );
    // The connection itself still serves: a body-less answer needs no window.
    let req = Request::head(gate.url("/echo/x")).body(empty()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
