//! Upstreams for the gateway to reach: the real echo server, a WebSocket
//! echo, a slow one, and an address where nothing listens.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use http::HeaderMap;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};

use super::Served;

/// The real echo upstream (`demo::echo`), on its own port.
pub struct Echo {
    pub addr: SocketAddr,
    served: Served,
}

impl Echo {
    pub async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Served::spawn("the echo server", |stop| {
            idp_gate::demo::echo::serve(listener, stop)
        });
        Echo { addr, served }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes idle connections, and asserts that the
    /// server ended cleanly.
    pub async fn stop(self) {
        self.served.stop().await;
    }
}

/// A WebSocket upstream that echoes every text and binary message, and
/// keeps the handshake headers it was sent.
pub struct WsEcho {
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Option<HeaderMap>>>,
    task: JoinHandle<()>,
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsEcho {
    pub async fn start() -> WsEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(None));
        let (h, s) = (handshakes.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, s) = (h.clone(), s.clone());
                tokio::spawn(async move {
                    // The signature is tungstenite's `Callback`.
                    #[allow(clippy::result_large_err)]
                    let record = |req: &WsRequest, resp: WsResponse| {
                        *s.lock().unwrap() = Some(req.headers().clone());
                        Ok(resp)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    let (mut tx, mut rx) = ws.split();
                    while let Some(Ok(msg)) = rx.next().await {
                        if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsEcho {
            addr,
            handshakes,
            seen,
            task,
        }
    }

    /// How many WebSocket handshakes it has completed.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// A header of the last handshake it was sent.
    pub fn seen(&self, name: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap();
        seen.as_ref()?
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// An upstream that reads a request head, then answers `200 slow` after a
/// delay and closes the connection.
pub struct SlowUpstream {
    pub addr: SocketAddr,
    arrivals: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    task: JoinHandle<()>,
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowUpstream {
    pub async fn start(delay: Duration) -> SlowUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 1 << 20 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let target = String::from_utf8_lossy(&head)
                        .split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(target);
                    tokio::time::sleep(delay).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        SlowUpstream {
            addr,
            arrivals: tokio::sync::Mutex::new(rx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (10 s at most) until a request for `target` has arrived. Only
    /// those count: a stray connection from another test must not look
    /// like the gateway's request.
    pub async fn arrived(&self, target: &str) {
        let mut arrivals = self.arrivals.lock().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(seen) = arrivals.recv().await {
                if seen == target {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no request for {target} reached the slow upstream"));
    }
}

/// An address where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}
