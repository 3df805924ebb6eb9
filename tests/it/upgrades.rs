//! WebSocket (and any `Upgrade`) through the gateway: a real WebSocket echo
//! upstream, a real WebSocket client, the route's checks before the 101,
//! `upgrades_total{route}`, and tunnels closed at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{Request, StatusCode, header};
use jsonwebtoken::Algorithm;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

struct WsWorld {
    ring: Arc<idp_gate::demo::keys::KeyRing>,
    jwks: JwksServer,
    _echo: Echo,
    ws: WsEcho,
    gate: Gate,
}

impl WsWorld {
    /// A protected route `/ws` to the WebSocket echo, and `/api` to the
    /// plain echo.
    async fn start() -> WsWorld {
        WsWorld::start_with("").await
    }

    /// As [`WsWorld::start`], with `top` (top-level YAML keys) added.
    async fn start_with(top: &str) -> WsWorld {
        let ring = ring(Algorithm::RS256);
        let jwks = JwksServer::with_ring(ring.clone()).await;
        let echo = Echo::start().await;
        let ws = WsEcho::start().await;
        let rest = format!(
            r#"  ws:
    url: "http://{}"
routes:
  - name: ws
    match: {{ pathPrefix: /ws }}
    upstream: ws
  - name: api
    match: {{ pathPrefix: /api }}
    upstream: echo
{top}
"#,
            ws.addr
        );
        let gate = Gate::start_ready(&config(&jwks, &echo, "", &rest)).await;
        WsWorld {
            ring,
            jwks,
            _echo: echo,
            ws,
            gate,
        }
    }

    fn token(&self, org: &str) -> String {
        sign(&self.ring.active(), &claims(&self.jwks.issuer(), org, &[]))
    }

    /// A WebSocket handshake through the gateway with `token`.
    async fn connect(&self, path: &str, token: &str) -> WebSocketStream<TcpStream> {
        self.try_connect(path, token)
            .await
            .expect("the handshake succeeds")
    }

    /// A WebSocket handshake that may fail.
    async fn try_connect(&self, path: &str, token: &str) -> Option<WebSocketStream<TcpStream>> {
        let mut req = format!("ws://{}{path}", self.gate.proxy)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let stream = TcpStream::connect(self.gate.proxy).await.ok()?;
        let (ws, resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(req, stream),
        )
        .await
        .expect("handshake in time")
        .ok()?;
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(resp.headers().contains_key("x-request-id"));
        Some(ws)
    }

    async fn upgrades(&self, route: &str) -> f64 {
        self.gate
            .metric("idp_gate_upgrades_total", &[("route", route)])
            .await
    }
}

async fn next(ws: &mut WebSocketStream<TcpStream>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("the stream is open")
        .expect("a message")
}

/// A hand-made upgrade request, for refusals (a WebSocket client only says
/// "handshake failed").
fn upgrade_request(gate: &Gate, path: &str, token: Option<&str>) -> Request<ReqBody> {
    let mut req = Request::get(gate.url(path))
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    req.body(empty()).unwrap()
}

#[tokio::test]
async fn websocket_messages_flow_both_ways_with_a_valid_token() {
    let w = WsWorld::start().await;
    assert_eq!(w.upgrades("ws").await, 0.0);
    let token = w.token("org_abc");
    let mut ws = w.connect("/ws/chat", &token).await;

    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next(&mut ws).await.to_text().unwrap(), text);
    }
    let blob: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await.into_data().as_ref(), &blob[..]);

    // The upgrade went on as exactly `Connection: upgrade` and the client's
    // `Upgrade`, with the usual identity headers.
    assert_eq!(w.ws.handshakes(), 1);
    assert_eq!(w.ws.seen("connection").as_deref(), Some("upgrade"));
    assert_eq!(w.ws.seen("upgrade").as_deref(), Some("websocket"));
    assert_eq!(w.ws.seen("x-forwarded-org").as_deref(), Some("org_abc"));
    assert_eq!(w.ws.seen("authorization"), Some(format!("Bearer {token}")));

    assert_eq!(w.upgrades("ws").await, 1.0);
    w.gate
        .assert_metric(
            "idp_gate_requests_total",
            &[("route", "ws"), ("status", "101")],
            1.0,
        )
        .await;

    // A second tunnel beside the first; closing one leaves the other.
    let mut second = w.connect("/ws/other", &token).await;
    ws.close(None).await.unwrap();
    second.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut second).await.to_text().unwrap(), "still here");
    assert_eq!(w.upgrades("ws").await, 2.0);

    // Plain requests go on as before.
    w.gate.expect_ok("/api/x", &token).await;
}

#[tokio::test]
async fn an_upgrade_without_a_valid_token_gets_the_usual_401() {
    let w = WsWorld::start().await;
    let gate = &w.gate;

    let r = gate
        .expect_refusal(
            upgrade_request(gate, "/ws/chat", None),
            401,
            "missing_token",
            None,
        )
        .await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(r.header("upgrade").is_none());

    // The payload swapped for another organization's: the signature fails.
    let token = w.token("org_abc");
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = b64_json(&claims(&w.jwks.issuer(), "org_other", &[]));
    parts[1] = &payload;
    let forged = parts.join(".");
    gate.expect_refusal(
        upgrade_request(gate, "/ws/chat", Some(&forged)),
        401,
        "bad_signature",
        Some(&forged),
    )
    .await;

    assert_eq!(
        w.ws.handshakes(),
        0,
        "a refused upgrade reached the upstream"
    );
    assert_eq!(w.upgrades("ws").await, 0.0);
    assert_eq!(gate.running().gateway.tunnels().open_count(), 0);
}

#[tokio::test]
async fn tunnels_end_when_the_gateway_drains() {
    let w = WsWorld::start().await;
    let token = w.token("org_abc");
    let mut ws = w.connect("/ws/chat", &token).await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next(&mut ws).await.to_text().unwrap(), "before");
    let tunnels = w.gate.running().gateway.tunnels();
    assert_eq!(tunnels.open_count(), 1);

    w.gate.running().gateway.drain();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the tunnel outlived the drain");
    assert!(
        poll_until(Duration::from_secs(5), || tunnels.open_count() == 0).await,
        "tunnels still open: {}",
        tunnels.open_count()
    );
}

#[tokio::test]
async fn tunnels_keep_their_clients_connection_slots() {
    let w = WsWorld::start_with("limits:\n  maxConnectionsPerClient: 20").await;
    let token = w.token("org_abc");
    let mut open = Vec::new();
    for _ in 0..30 {
        if let Some(ws) = w.try_connect("/ws/chat", &token).await {
            open.push(ws);
        }
    }
    assert_eq!(open.len(), 20, "tunnels past maxConnectionsPerClient");
    w.gate
        .assert_metric("idp_gate_open_tunnels", &[], 20.0)
        .await;
    w.gate
        .assert_metric(
            "idp_gate_connections_refused_total",
            &[("reason", "max_connections_per_client")],
            10.0,
        )
        .await;
    // Every tunnel still carries messages.
    for ws in open.iter_mut() {
        ws.send(Message::text("up")).await.unwrap();
        assert_eq!(next(ws).await.to_text().unwrap(), "up");
    }

    // Closed tunnels give their slots back.
    for mut ws in open.drain(..5) {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    let tunnels = w.gate.running().gateway.tunnels();
    assert!(
        poll_until(Duration::from_secs(5), || tunnels.open_count() == 15).await,
        "tunnels open: {}",
        tunnels.open_count()
    );
    let mut again = 0;
    for _ in 0..5 {
        if let Some(ws) = w.try_connect("/ws/chat", &token).await {
            open.push(ws);
            again += 1;
        }
    }
    assert_eq!(again, 5, "the closed tunnels' slots were not given back");
    assert!(w.try_connect("/ws/chat", &token).await.is_none());
}

#[tokio::test]
async fn idle_tunnels_are_closed_and_counted() {
    let _load = timed().await;
    let w = WsWorld::start_with("limits:\n  tunnelIdleTimeoutMs: 600").await;
    let token = w.token("org_abc");
    let idle_closed = || async {
        w.gate
            .metric("idp_gate_client_timeouts_total", &[("kind", "tunnel_idle")])
            .await
    };
    assert_eq!(idle_closed().await, 0.0);

    // A busy tunnel outlives the timeout several times over.
    let mut busy = w.connect("/ws/chat", &token).await;
    for i in 0..12 {
        let text = format!("ping {i}");
        busy.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next(&mut busy).await.to_text().unwrap(), text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(idle_closed().await, 0.0);

    // A silent one is closed, and the gauge comes down.
    let mut quiet = w.connect("/ws/chat", &token).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match quiet.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "an idle tunnel stayed open");
    assert!(idle_closed().await >= 1.0);
    drop(busy);
    let tunnels = w.gate.running().gateway.tunnels();
    assert!(poll_until(Duration::from_secs(5), || tunnels.open_count() == 0).await);
    w.gate
        .assert_metric("idp_gate_open_tunnels", &[], 0.0)
        .await;
}

/// An upstream that answers every request with a 101 to `protocol`, then
/// echoes bytes.
async fn switching_upstream(protocol: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_101_to_a_protocol_the_client_did_not_ask_for_is_not_relayed() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let other = switching_upstream("h2c").await;
    let same = switching_upstream("WebSocket").await;
    let rest = format!(
        r#"  other:
    url: "http://{other}"
  same:
    url: "http://{same}"
routes:
  - name: other
    match: {{ pathPrefix: /other }}
    auth: none
    upstream: other
  - name: same
    match: {{ pathPrefix: /same }}
    auth: none
    upstream: same
"#
    );
    let gate = Gate::start_ready(&config(&jwks, &echo, "", &rest)).await;

    let r = gate.send(upgrade_request(&gate, "/other", None)).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.header("upgrade").is_none());
    assert_eq!(gate.running().gateway.tunnels().open_count(), 0);

    // The protocol asked for, in any case, is relayed.
    let r = gate.send(upgrade_request(&gate, "/same", None)).await;
    assert_eq!(r.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(r.header("upgrade").as_deref(), Some("WebSocket"));
}
