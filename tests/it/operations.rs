//! What an operator relies on, through the real binary: limits that cut
//! slow and oversized clients off, an access line for every request
//! (refused by hyper, cancelled by the client, or served, with its byte
//! counts), and logging that never stalls requests.

use std::time::{Duration, Instant};

use crate::support::*;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn public_routes(upstream: &str) -> String {
    format!(
        "upstreams:\n  u:\n    url: \"{upstream}\"\nroutes:\n  - {{ name: pub, match: {{ pathPrefix: / }}, auth: none, upstream: u }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dripping_its_head_is_cut_off_at_the_header_timeout() {
    let _load = timed().await;
    let echo = Echo::start().await;
    let rest = format!(
        "{}limits: {{ headerReadTimeoutMs: 1000 }}\n",
        public_routes(&echo.url())
    );
    let gate = GateProcess::config(&rest).ready().await;
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let started = Instant::now();
    let head = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = None;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        // Anything read back means the gateway gave up on us.
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "got a response: {r:?}");
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the whole dripped head was accepted");
    assert!(cut >= Duration::from_millis(900), "cut too early: {cut:?}");
    assert!(cut < Duration::from_millis(2500), "cut too late: {cut:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_an_access_line_with_its_byte_counts() {
    let echo = Echo::start().await;
    let slow = SlowUpstream::start(Duration::from_secs(5)).await;
    let rest = format!(
        "upstreams:\n  echo: {{ url: \"{}\" }}\n  slow: {{ url: \"{}\" }}\nroutes:\n  - {{ name: slow, match: {{ pathPrefix: /slow }}, auth: none, upstream: slow }}\n  - {{ name: pub, match: {{ pathPrefix: / }}, auth: none, upstream: echo }}\nlimits: {{ maxHeaderBytes: 8192 }}\n",
        echo.url(),
        slow.url()
    );
    let mut gate = GateProcess::config(&rest).ready().await;

    // Served: bytes out are the body the client received.
    let r = gate
        .send(
            Request::post(gate.url("/served"))
                .body(full(vec![b'x'; 1000]))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    let line = gate
        .access_line("the served request", |l| l["path"] == "/served")
        .await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "pub");
    assert_eq!(line["bytes_out"], r.body.len() as u64, "{line}");
    assert_eq!(line["bytes_in"], 1000, "{line}");
    assert_eq!(line["client"], "127.0.0.1");

    // Refused by hyper before routing: oversized and malformed heads.
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    gate.access_line("the 431", |l| l["status"] == 431).await;
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let _ = s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    gate.access_line("the 400", |l| {
        l["status"] == 400 && l["route"] == "unmatched"
    })
    .await;

    // Cancelled by the client while the upstream thinks: 499.
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    s.write_all(b"GET /slow/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    let line = gate
        .access_line("the cancelled request", |l| l["path"] == "/slow/x")
        .await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["route"], "slow");
    let m = gate.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "idp_gate_requests_total",
            &[("route", "slow"), ("status", "499")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "idp_gate_requests_total",
            &[("route", "unmatched"), ("status", "431")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stderr_never_stalls_requests() {
    let _load = heavy().await;
    let echo = Echo::start().await;
    // stderr is a pipe nobody reads once the gateway listens: it fills
    // after a few hundred lines.
    let gate = GateProcess::config(&public_routes(&echo.url()))
        .env("IDP_GATE_LOG_BUFFER_LINES", "64")
        .stall_stderr()
        .ready()
        .await;
    let started = Instant::now();
    for i in 0..3000 {
        let r = tokio::time::timeout(Duration::from_secs(5), gate.get(&format!("/n/{i}"), None))
            .await
            .expect("a request stalled behind the log");
        assert_eq!(r.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let dropped = gate.metric("idp_gate_log_lines_dropped_total", &[]).await;
    assert!(
        dropped > 0.0,
        "no line was dropped, so the pipe never filled"
    );
}

#[tokio::test]
async fn request_bodies_past_the_limit_are_refused_with_413() {
    let rest = format!("{DEFAULT_ROUTES}limits: {{ maxRequestBodyBytes: 1000 }}\n");
    let w = World::start(jsonwebtoken::Algorithm::RS256, "", &rest).await;
    let post = |body: ReqBody| {
        Request::post(w.gate.url("/public/upload"))
            .body(body)
            .unwrap()
    };
    // Declared too large: refused before anything is sent upstream.
    let r = w.gate.send(post(full(vec![b'x'; 1001]))).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    // Streamed without a length: refused once it passes the limit.
    let r = w.gate.send(post(streaming_body(4, 500))).await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Within the limit, both ways.
    let r = w.gate.send(post(full(vec![b'x'; 1000]))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = w.gate.send(post(streaming_body(2, 500))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A client's body is not the upstream's failure.
    w.gate
        .assert_metric(
            "idp_gate_upstream_errors_total",
            &[("kind", "body_too_large")],
            0.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_slow_request_and_closes_an_open_websocket() {
    let _load = timed().await;
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let ws_upstream = WsEcho::start().await;
    let slow = SlowUpstream::start(Duration::from_millis(1500)).await;
    let grace = 5;
    let rest = format!(
        "upstreams:\n  ws: {{ url: \"http://{}\" }}\n  slow: {{ url: \"{}\" }}\nroutes:\n  - {{ name: ws, match: {{ pathPrefix: /ws }}, auth: none, upstream: ws }}\n  - {{ name: slow, match: {{ pathPrefix: /slow }}, auth: none, upstream: slow }}\n",
        ws_upstream.addr,
        slow.url()
    );
    let rest = format!("shutdownGraceSeconds: {grace}\n{rest}");
    let mut gate = GateProcess::config(&rest).ready().await;

    let stream = TcpStream::connect(gate.proxy).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{}/ws", gate.proxy), stream)
        .await
        .expect("WebSocket through the gateway");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    let url = gate.url("/slow");
    let inflight = tokio::spawn(async move { fetch(&url, &[]).await });
    slow.arrived("/slow").await;
    let started = Instant::now();
    gate.proc.signal("-TERM");

    // The socket is closed rather than left hanging.
    let closed = tokio::time::timeout(Duration::from_secs(grace), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the WebSocket stayed open while draining");
    // The slow request still finishes.
    let r = inflight.await.unwrap().expect("the slow request");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow");
    let status = gate.proc.exit_within(Duration::from_secs(grace + 5)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(grace),
        "exit took {:?}, grace {grace} s",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_sent_nothing_do_not_hold_up_shutdown() {
    let _load = timed().await;
    let echo = Echo::start().await;
    let rest = format!(
        "shutdownGraceSeconds: 20\nlimits: {{ headerReadTimeoutMs: 30000 }}\n{}",
        public_routes(&echo.url())
    );
    let mut gate = GateProcess::config(&rest).ready().await;
    // Open and silent, as a client that connected and never wrote; and one
    // that sent part of an HTTP/2 preface.
    let mut silent = TcpStream::connect(gate.proxy).await.unwrap();
    let mut partial = TcpStream::connect(gate.proxy).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = gate.proc.terminate(Duration::from_secs(25)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} with two silent connections open"
    );
    let mut buf = [0u8; 16];
    for s in [&mut silent, &mut partial] {
        let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "still open: {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_loses_nothing_during_the_shutdown_delay() {
    let _load = timed().await;
    let echo = Echo::start().await;
    let slow = SlowUpstream::start(Duration::from_millis(2500)).await;
    let (delay, grace) = (2, 5);
    let rest = format!(
        "shutdownDelaySeconds: {delay}\nshutdownGraceSeconds: {grace}\n\
         upstreams:\n  echo: {{ url: \"{}\" }}\n  slow: {{ url: \"{}\" }}\n\
         routes:\n  - {{ name: slow, match: {{ pathPrefix: /slow }}, auth: none, upstream: slow }}\n  \
         - {{ name: pub, match: {{ pathPrefix: / }}, auth: none, upstream: echo }}\n",
        echo.url(),
        slow.url()
    );
    let mut gate = GateProcess::config(&rest).ready().await;
    // A keep-alive connection, and an HTTP/2 one, open before the signal.
    assert_eq!(gate.get("/before", None).await.status, 200);
    let (mut h2, h2_conn) = h2c::<ReqBody>(gate.proxy).await;
    let req = Request::get(gate.url("/before")).body(empty()).unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);

    let url = gate.url("/slow");
    let inflight = tokio::spawn(async move { fetch(&url, &[]).await });
    slow.arrived("/slow").await;
    let started = Instant::now();
    gate.proc.signal("-TERM");

    // Not ready at once.
    let mut ready = gate.readyz().await;
    while ready.status == 200 && started.elapsed() < Duration::from_secs(1) {
        ready = gate.readyz().await;
    }
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("shutting down"), "{}", ready.text());

    // During the delay: new connections are accepted and served, each told
    // to close, and so is the kept-alive one.
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let r = fetch(&gate.url("/during"), &[]).await.unwrap_or_else(|e| {
            panic!(
                "a request failed {:?} into the delay: {e}",
                started.elapsed()
            )
        });
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        served += 1;
    }
    assert!(served >= 5, "only {served} requests during the delay");
    let r = gate.get("/kept-alive", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The HTTP/2 connection was sent GOAWAY and has closed; a new one is
    // still served.
    tokio::time::timeout(Duration::from_millis(500), h2_conn)
        .await
        .expect("GOAWAY closes the HTTP/2 connection during the delay")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(delay));
    assert_eq!(
        h2_get(gate.proxy, &gate.url("/during"), &[]).await.status,
        200
    );

    // The slow request, in flight all along, finishes; then the process
    // exits, after the delay and within the grace.
    let r = inflight.await.unwrap().expect("the slow request");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow");
    let status = gate
        .proc
        .exit_within(Duration::from_secs(delay + grace + 5))
        .await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(delay),
        "exited after {:?}, before the delay",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_skips_the_shutdown_delay() {
    let _load = timed().await;
    let echo = Echo::start().await;
    let rest = format!(
        "shutdownDelaySeconds: 30\nshutdownGraceSeconds: 5\n{}",
        public_routes(&echo.url())
    );
    let mut gate = GateProcess::config(&rest).ready().await;
    let started = Instant::now();
    gate.proc.signal("-TERM");
    // Still serving while the delay runs.
    let r = fetch(&gate.url("/x"), &[])
        .await
        .expect("served during the delay");
    assert_eq!(r.status, 200);
    gate.proc.signal("-TERM");
    let status = gate.proc.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second signal did not skip the delay: {:?}",
        started.elapsed()
    );
}
