//! Accepting connections: optional TLS, HTTP/1.1 and HTTP/2, connection
//! limits (overall and per client), timeouts that release silent and idle
//! connections, and draining on shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::proxy::upgrade::ConnectionHold;
use crate::tls::TlsSwap;

mod activity;
mod deadline;
mod protocol;

use activity::{Activity, Served, WriteWatch};
use deadline::HeadDeadline;
use protocol::{Builders, Protocol};

/// How a listener is served.
pub struct ServeOptions {
    /// Terminate TLS with the acceptor in here at the time of each
    /// connection (a reload can replace it).
    pub tls: Option<TlsSwap>,
    /// Timeouts and connection caps.
    pub limits: Limits,
    /// Time that open connections get to finish after `shutdown`.
    pub grace: Duration,
    /// Counts connections refused by a cap, by `reason`.
    pub refused: Option<prometheus::IntCounterVec>,
    /// Told of each request hyper answered itself before any handler saw
    /// it (400 for a malformed head, 431 for an oversized one).
    pub on_rejected: Option<Rejected>,
    /// Counts responses abandoned because the client stopped reading them.
    pub unread: Option<prometheus::IntCounter>,
    /// Turns true when the process is about to stop: connections are still
    /// accepted and served, but each is asked to close after its request
    /// (`Connection: close`, HTTP/2 GOAWAY), so clients move elsewhere
    /// before the listener goes away.
    pub leaving: Option<watch::Receiver<bool>>,
}

/// See [`ServeOptions::on_rejected`]: the client and the status sent.
pub type Rejected = Arc<dyn Fn(SocketAddr, u16) + Send + Sync>;

impl ServeOptions {
    /// Default limits, no TLS, no counter.
    pub fn plain(grace: Duration) -> ServeOptions {
        ServeOptions {
            tls: None,
            limits: Limits::default(),
            grace,
            refused: None,
            on_rejected: None,
            unread: None,
            leaving: None,
        }
    }
}

/// Connection lifecycle, as seen by every open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Still accepting and serving, one request per connection.
    Leaving,
    /// Finish what is in flight, take nothing new.
    Draining,
    /// The grace period is over: close now.
    Closing,
}

/// Serves `listener` with `handler` until `shutdown` resolves, then lets
/// open connections finish for up to `options.grace`.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    options: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = options.limits.clone();
    let builders = Arc::new(Builders::new(&limits));
    let max = limits.max_connections.min(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let clients = Arc::new(ClientCounts::new(limits.max_connections_per_client));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let mut leaving = options.leaving.clone();
    let mut left = false;
    let refuse = |reason: &'static str| {
        if let Some(c) = &options.refused {
            c.with_label_values(&[reason]).inc();
        }
    };
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            told = async {
                match leaving.as_mut() {
                    Some(l) => l.wait_for(|l| *l).await.is_ok(),
                    None => std::future::pending().await,
                }
            }, if !left => {
                left = true;
                if told {
                    let _ = phase_tx.send(Phase::Leaving);
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Refused at once, never queued: a queue of connections nobody
        // serves is what lets a flood look like a hang.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse("max_connections");
            tracing::debug!(%peer, "connection refused: maxConnections reached");
            continue;
        };
        let Some(client) = ClientCounts::enter(&clients, peer.ip()) else {
            refuse("max_connections_per_client");
            tracing::debug!(%peer, "connection refused: maxConnectionsPerClient reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The slots go when the connection's task ends and any tunnel it
        // became has closed.
        let hold = ConnectionHold::new((client, permit));
        let conn = Connection {
            peer,
            builders: builders.clone(),
            limits: limits.clone(),
            phase: phase_rx.clone(),
            on_rejected: options.on_rejected.clone(),
            unread: options.unread.clone(),
            hold: hold.clone(),
        };
        let handler = handler.clone();
        let tls = options.tls.as_ref().map(|t| t.load_full());
        let work = conn.run(stream, tls, handler);
        let fut = async move {
            work.await;
            drop(hold);
        };
        tokio::spawn(fut);
    }
    drop(listener);
    let _ = phase_tx.send(Phase::Draining);
    let all_closed = slots.acquire_many(max as u32);
    if tokio::time::timeout(options.grace, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
        let _ = phase_tx.send(Phase::Closing);
    }
}

/// One accepted connection.
struct Connection {
    peer: SocketAddr,
    builders: Arc<Builders>,
    limits: Limits,
    phase: watch::Receiver<Phase>,
    on_rejected: Option<Rejected>,
    unread: Option<prometheus::IntCounter>,
    hold: ConnectionHold,
}

impl Connection {
    /// The connection's work, boxed per kind: a TLS session's state is
    /// large, and a plain connection must not carry room for it while it
    /// sits idle (memory per idle connection is the figure that counts at
    /// ten thousand of them).
    fn run<H, F, B>(
        self,
        stream: TcpStream,
        tls: Option<Arc<TlsAcceptor>>,
        handler: H,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let head = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.limits.header_read_timeout;
        let activity = Arc::new(Activity::new());
        match tls {
            None => Box::pin(async move {
                let mut phase = self.phase.clone();
                let sniffed = tokio::select! {
                    sniffed = tokio::time::timeout_at(deadline, protocol::sniff(&stream)) => sniffed,
                    // Draining: a connection that has sent nothing yet has
                    // nothing to finish. (While leaving, it is still served.)
                    _ = phase.wait_for(|p| matches!(p, Phase::Draining | Phase::Closing)) => return,
                };
                let protocol = match sniffed {
                    Ok(Ok(protocol)) => protocol,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "connection failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "no request head within headerReadTimeoutMs");
                        return;
                    }
                };
                let io = WriteWatch::new(stream, activity.clone());
                let io = HeadDeadline::new(io, deadline, head.clone());
                self.drive(io, protocol, head, activity, handler).await
            }),
            // The head deadline covers the handshake too: a client that
            // opens TLS and stalls is released on the same clock.
            Some(acceptor) => Box::pin(async move {
                let io = WriteWatch::new(stream, activity.clone());
                let io = HeadDeadline::new(io, deadline, head.clone());
                match acceptor.accept(io).await {
                    Ok(tls) => {
                        let protocol = protocol::negotiated(tls.get_ref().1.alpn_protocol());
                        self.drive(tls, protocol, head, activity, handler).await
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                }
            }),
        }
    }

    async fn drive<I, H, F, B>(
        mut self,
        io: I,
        protocol: Protocol,
        head: Arc<AtomicBool>,
        activity: Arc<Activity>,
        handler: H,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let peer = self.peer;
        let head_seen = head.clone();
        // Told when a request arrives on an HTTP/2 connection while
        // leaving: GOAWAY waits for it, since sent before the client's
        // first stream it would refuse that stream.
        let leaving_request = Arc::new(tokio::sync::Notify::new());
        let service = {
            let activity = activity.clone();
            let hold = self.hold.clone();
            let phase = self.phase.clone();
            let leaving_request = leaving_request.clone();
            service_fn(move |mut req: Request<Incoming>| {
                head.store(true, Ordering::Relaxed);
                if req.headers().contains_key(http::header::UPGRADE) {
                    req.extensions_mut().insert(hold.clone());
                }
                let busy = activity.enter();
                let activity = activity.clone();
                let handler = handler.clone();
                let phase = phase.clone();
                if protocol == Protocol::Http2 && *phase.borrow() == Phase::Leaving {
                    leaving_request.notify_one();
                }
                // Boxed: hyper keeps a slot the size of this future on every
                // connection, idle or not; boxing moves it to the request.
                Box::pin(async move {
                    let resp = handler(req, peer).await;
                    drop(busy);
                    let resp = match protocol {
                        Protocol::Http1 => {
                            let mut resp = resp.map(Served::Plain);
                            // Leaving: the client should take its next
                            // request elsewhere (an upgrade keeps its own
                            // `Connection`).
                            if *phase.borrow() != Phase::Serving
                                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
                            {
                                resp.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            resp
                        }
                        Protocol::Http2 => resp.map(|b| Served::Watched(activity.watch(b))),
                    };
                    Ok::<_, Infallible>(resp)
                })
            })
        };
        let mut conn = self.builders.serve(protocol, TokioIo::new(io), service);
        let mut closing = false;
        // Seen here, so that only later changes wake the loop below.
        self.phase.borrow_and_update();
        let idle = self.limits.idle_timeout;
        let unread = self.limits.response_write_timeout;
        let period = (idle.min(unread) / 4).max(Duration::from_millis(25));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                result = std::future::poll_fn(|cx| conn.as_mut().poll_serve(cx)) => {
                    if let (Err(e), Some(report)) = (result, &self.on_rejected) {
                        if let Some(status) = rejected_status(&*e) {
                            report(peer, status);
                        }
                    }
                    return;
                }
                _ = tick.tick() => {
                    if activity.write_blocked_for() >= unread {
                        // Nothing more can reach this client: close rather
                        // than wait on it, freeing what its responses hold.
                        tracing::debug!(%peer, "closing a connection whose client stopped reading");
                        self.count_unread(1);
                        return;
                    }
                    let abandoned = activity.abandon_unread(unread);
                    if abandoned > 0 {
                        tracing::debug!(%peer, streams = abandoned, "abandoned responses the client stopped reading");
                        self.count_unread(abandoned);
                    }
                    if !closing && activity.idle_for() >= idle {
                        tracing::debug!(%peer, "closing an idle connection");
                        conn.as_mut().shut_down();
                        closing = true;
                    }
                }
                _ = leaving_request.notified(), if !closing => {
                    conn.as_mut().shut_down();
                    closing = true;
                }
                changed = self.phase.changed() => {
                    let phase = match changed {
                        Ok(()) => *self.phase.borrow_and_update(),
                        Err(_) => Phase::Closing,
                    };
                    match phase {
                        Phase::Serving => {}
                        // A connection that has not sent its first request
                        // yet is left to send it: closing it now could fail
                        // a request already on its way. Over HTTP/1.1 the
                        // response says `Connection: close`; over HTTP/2
                        // GOAWAY follows the request.
                        Phase::Leaving if !head_seen.load(Ordering::Relaxed) => {}
                        // Finish what is in flight and close: HTTP/1.1
                        // answers it with `Connection: close`, HTTP/2 sends
                        // GOAWAY.
                        Phase::Leaving | Phase::Draining => {
                            if !closing {
                                conn.as_mut().shut_down();
                                closing = true;
                            }
                        }
                        Phase::Closing => return,
                    }
                }
            }
        }
    }
}

impl Connection {
    fn count_unread(&self, n: usize) {
        if let Some(c) = &self.unread {
            c.inc_by(n as u64);
        }
    }
}

/// The status hyper answered with, when it refused a request head itself.
fn rejected_status(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        Some(431)
    } else if e.is_parse() {
        Some(400)
    } else {
        None
    }
}

/// Open connections per client address.
struct ClientCounts {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientCounts {
    fn new(max: usize) -> ClientCounts {
        ClientCounts {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `ip`, or `None` when it has `max` connections open.
    fn enter(counts: &Arc<ClientCounts>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut open = counts.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= counts.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            counts: counts.clone(),
            key,
        })
    }
}

/// The unit a client is counted by: its IPv4 address, or its IPv6 /64
/// (one host is routinely given a whole /64, so single addresses are free).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// One open connection of a client.
struct ClientSlot {
    counts: Arc<ClientCounts>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_and_ipv6_prefix() {
        let counts = Arc::new(ClientCounts::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let one = ClientCounts::enter(&counts, a).unwrap();
        let _two = ClientCounts::enter(&counts, a).unwrap();
        assert!(ClientCounts::enter(&counts, a).is_none());
        assert!(ClientCounts::enter(&counts, "10.0.0.2".parse().unwrap()).is_some());
        drop(one);
        assert!(ClientCounts::enter(&counts, a).is_some());

        let v6 = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:2"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), a);
    }
}
