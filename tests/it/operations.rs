//! What an operator relies on, through the real binary: limits that cut
//! slow and oversized clients off, an access line for every request
//! (refused by hyper, cancelled by the client, or served, with its byte
//! counts), and logging that never stalls requests.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use http::Request;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_idp-gate");

/// `idp-gate run` on a temp config, its stderr in a file (or a pipe).
struct Binary {
    child: tokio::process::Child,
    proxy: SocketAddr,
    admin: SocketAddr,
    dir: std::path::PathBuf,
}

impl Binary {
    async fn start(rest: &str, env: &[(&str, &str)], stderr: Option<Stdio>) -> Binary {
        let (proxy, admin) = (free_addr(), free_addr());
        let dir = std::env::temp_dir().join(format!("idp-gate-ops-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gate.yaml");
        std::fs::write(
            &path,
            format!(
                "listen: \"{proxy}\"\nadmin: {{ listen: \"{admin}\" }}\n{}{rest}",
                if rest.contains("shutdownGraceSeconds") {
                    ""
                } else {
                    "shutdownGraceSeconds: 1\n"
                }
            ),
        )
        .unwrap();
        let stderr =
            stderr.unwrap_or_else(|| std::fs::File::create(dir.join("err.log")).unwrap().into());
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let b = Binary {
            child,
            proxy,
            admin,
            dir,
        };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let req = Request::get(format!("http://{admin}/readyz"))
                .body(empty())
                .unwrap();
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), c.request(req)).await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "not ready");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        b
    }

    fn access_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("err.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .collect()
    }

    /// Waits for an access line matching `pred`.
    async fn wait_line(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.access_lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no access line for {what}: {:#?}",
                self.access_lines()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn metrics(&self) -> String {
        let r = send(
            &client(),
            Request::get(format!("http://{}/metrics", self.admin))
                .body(empty())
                .unwrap(),
        )
        .await;
        r.text()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn public_routes(upstream: &str) -> String {
    format!(
        "upstreams:\n  u:\n    url: \"{upstream}\"\nroutes:\n  - {{ name: pub, match: {{ pathPrefix: / }}, auth: none, upstream: u }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dripping_its_head_is_cut_off_at_the_header_timeout() {
    let echo = Echo::start().await;
    let rest = format!(
        "{}limits: {{ headerReadTimeoutMs: 1000 }}\n",
        public_routes(&echo.url())
    );
    let gate = Binary::start(&rest, &[], None).await;
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
    let slow = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        a
    };
    let rest = format!(
        "upstreams:\n  echo: {{ url: \"{}\" }}\n  slow: {{ url: \"http://{slow}\" }}\nroutes:\n  - {{ name: slow, match: {{ pathPrefix: /slow }}, auth: none, upstream: slow }}\n  - {{ name: pub, match: {{ pathPrefix: / }}, auth: none, upstream: echo }}\nlimits: {{ maxHeaderBytes: 8192 }}\n",
        echo.url()
    );
    let gate = Binary::start(&rest, &[], None).await;

    // Served: bytes out are the body the client received.
    let r = send(
        &client(),
        Request::post(format!("http://{}/served", gate.proxy))
            .body(full(vec![b'x'; 1000]))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let line = gate
        .wait_line("the served request", |l| l["path"] == "/served")
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
    gate.wait_line("the 431", |l| l["status"] == 431).await;
    let mut s = TcpStream::connect(gate.proxy).await.unwrap();
    let _ = s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    gate.wait_line("the 400", |l| {
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
        .wait_line("the cancelled request", |l| l["path"] == "/slow/x")
        .await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["route"], "slow");
    let m = gate.metrics().await;
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
    let echo = Echo::start().await;
    // stderr is a pipe nobody reads: it fills after a few hundred lines.
    let gate = Binary::start(
        &public_routes(&echo.url()),
        &[("IDP_GATE_LOG_BUFFER_LINES", "64")],
        Some(Stdio::piped()),
    )
    .await;
    let c = client();
    let started = Instant::now();
    for i in 0..3000 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            send(
                &c,
                Request::get(format!("http://{}/n/{i}", gate.proxy))
                    .body(empty())
                    .unwrap(),
            ),
        )
        .await
        .expect("a request stalled behind the log");
        assert_eq!(r.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let dropped = metric_value(
        &gate.metrics().await,
        "idp_gate_log_lines_dropped_total",
        &[],
    );
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
    assert_eq!(
        w.gate
            .metric(
                "idp_gate_upstream_errors_total",
                &[("kind", "body_too_large")]
            )
            .await,
        0.0,
        "a client's body is not the upstream's failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_slow_request_and_closes_an_open_websocket() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    // A WebSocket echo upstream.
    let ws_upstream = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(s).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    while let Some(Ok(m)) = rx.next().await {
                        if m.is_text() && tx.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        a
    };
    // An upstream that answers after 1.5 s.
    let slow = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow")
                        .await;
                });
            }
        });
        a
    };
    let grace = 5;
    let rest = format!(
        "upstreams:\n  ws: {{ url: \"http://{ws_upstream}\" }}\n  slow: {{ url: \"http://{slow}\" }}\nroutes:\n  - {{ name: ws, match: {{ pathPrefix: /ws }}, auth: none, upstream: ws }}\n  - {{ name: slow, match: {{ pathPrefix: /slow }}, auth: none, upstream: slow }}\n"
    );
    let rest = format!("shutdownGraceSeconds: {grace}\n{rest}");
    let mut gate = Binary::start(&rest, &[], None).await;

    let stream = TcpStream::connect(gate.proxy).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{}/ws", gate.proxy), stream)
        .await
        .expect("WebSocket through the gateway");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    let proxy = gate.proxy;
    let inflight = tokio::spawn(async move {
        send(
            &client(),
            Request::get(format!("http://{proxy}/slow"))
                .body(empty())
                .unwrap(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    signal(gate.child.id().unwrap(), "-TERM");

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
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow");
    let status = tokio::time::timeout(Duration::from_secs(grace + 5), gate.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(grace),
        "exit took {:?}, grace {grace} s",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_sent_nothing_do_not_hold_up_shutdown() {
    let echo = Echo::start().await;
    let rest = format!(
        "shutdownGraceSeconds: 20\nlimits: {{ headerReadTimeoutMs: 30000 }}\n{}",
        public_routes(&echo.url())
    );
    let mut gate = Binary::start(&rest, &[], None).await;
    // Open and silent, as a client that connected and never wrote; and one
    // that sent part of an HTTP/2 preface.
    let mut silent = TcpStream::connect(gate.proxy).await.unwrap();
    let mut partial = TcpStream::connect(gate.proxy).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    signal(gate.child.id().unwrap(), "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(25), gate.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?} with two silent connections open",
        started.elapsed()
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
