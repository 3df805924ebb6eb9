//! HTTP/1.1 connections to one upstream, kept for reuse.
//!
//! A connection is taken for one request and given back once it has both
//! written the request body and read the response body to their ends, as
//! hyper-util's pool does: an upstream may answer before it has read the
//! body (Tomcat and Node do), and a connection handed on while a slow
//! client is still sending would make the next request wait for that
//! client. The most recently used connection is taken first (it is the
//! least likely to have been closed by the upstream), and the wait for it
//! to be ready is bounded; connections idle past the upstream's idle
//! timeout are closed by a reaper that stops with the pool.
//!
//! hyper-util's general-purpose client does the same for any protocol, at
//! the cost of a pool keyed by origin and a large boxed future on every
//! request; HTTP/2 upstreams, multiplexed, still use it.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use super::body::CountedBody;

/// The body type sent upstream: the client's body, streamed as it comes.
pub type UpstreamBody = CountedBody<Incoming>;

/// How long a pooled connection whose exchange has ended may take to be
/// ready for the next one before a new connection is opened instead.
const READY_WAIT: Duration = Duration::from_millis(250);

/// Why a request got no response.
#[derive(Debug)]
pub enum PoolError {
    /// No connection could be made.
    Connect(Box<dyn StdError + Send + Sync>),
    /// The exchange failed on an open connection.
    Exchange(hyper::Error),
}

struct Idle {
    sender: SendRequest<Sending>,
    since: Instant,
}

/// The pooled HTTP/1.1 connections to one upstream.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// Where connections go: the upstream's scheme and authority.
    origin: Uri,
    /// The `Host` sent when the client gave none (an HTTP/2 client's
    /// authority is in its request target, not in a header).
    host: http::HeaderValue,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// A pool for `origin` (`scheme://authority`), keeping at most
    /// `max_idle` connections for at most `idle_timeout` each.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        scheme: Scheme,
        authority: Authority,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Result<Arc<Pool>, http::Error> {
        let host = match (authority.port_u16(), scheme.as_str()) {
            (Some(80), "http") | (Some(443), "https") | (None, _) => authority.host().to_string(),
            _ => authority.as_str().to_string(),
        };
        let pool = Arc::new(Pool {
            connector,
            origin: Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query("/")
                .build()?,
            host: http::HeaderValue::from_str(&host)?,
            idle_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        });
        // Only when there is a runtime to run it: a pool built outside one
        // (config checks) never holds a connection.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(reap(Arc::downgrade(&pool), idle_timeout));
        }
        Ok(pool)
    }

    /// Sends `req` (its target in origin form) on a pooled connection or a
    /// new one. A request that a reused connection could not take, because
    /// the upstream had closed it, is sent again on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, PoolError> {
        req.headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.host.clone());
        let (req, sent) = Sending::wrap(req);
        let mut req = req;
        if let Some(mut sender) = self.checkout().await {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.lend(sender, resp, sent)),
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send again.
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::Exchange(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(PoolError::Exchange)?;
        Ok(self.lend(sender, resp, sent))
    }

    /// The most recently used idle connection that is ready for a request.
    async fn checkout(&self) -> Option<SendRequest<Sending>> {
        loop {
            let idle = lock(&self.idle).pop()?;
            if idle.since.elapsed() >= self.idle_timeout {
                // Older ones are older still.
                lock(&self.idle).clear();
                return None;
            }
            let mut sender = idle.sender;
            // Given back when both bodies ended, it is ready as soon as its
            // connection task has seen those ends; a closed one errs, and
            // one that is not ready in time is dropped, never waited on.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Sending>, PoolError> {
        let io = self
            .connector
            .clone()
            .call(self.origin.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| PoolError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// The response, with a body that gives the connection back at its end.
    fn lend(
        self: &Arc<Self>,
        sender: SendRequest<Sending>,
        resp: Response<Incoming>,
        sent: Option<Arc<AtomicBool>>,
    ) -> Response<PooledBody> {
        // A switched connection is the tunnel's now.
        let sender = (resp.status() != http::StatusCode::SWITCHING_PROTOCOLS).then_some(sender);
        resp.map(|body| PooledBody {
            body,
            lent: sender.map(|sender| Lent {
                sender,
                pool: Arc::downgrade(self),
                sent,
            }),
        })
    }

    fn give_back(&self, sender: SendRequest<Sending>) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle && !sender.is_closed() {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes connections idle past the timeout, until the pool is dropped.
async fn reap(pool: Weak<Pool>, idle_timeout: Duration) {
    let mut tick = tokio::time::interval((idle_timeout / 2).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        // The list is oldest first: drop from the front.
        let mut idle = lock(&pool.idle);
        let stale = idle.partition_point(|i| i.since.elapsed() >= idle_timeout);
        idle.drain(..stale);
    }
}

/// A connection lent to one exchange, and how to tell that the request
/// body has been written.
struct Lent {
    sender: SendRequest<Sending>,
    pool: Weak<Pool>,
    /// Set once hyper has taken the request body's last frame; `None` for
    /// a body that was empty from the start.
    sent: Option<Arc<AtomicBool>>,
}

impl Lent {
    /// The response has been read: the connection goes back now if the
    /// request has been written too, else once hyper says the connection
    /// is ready (the request body ended), which may be never.
    fn response_read(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if self.sent.as_ref().is_none_or(|s| s.load(Ordering::Acquire)) {
            pool.give_back(self.sender);
            return;
        }
        let mut sender = self.sender;
        let pool = self.pool;
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                if let Some(pool) = pool.upgrade() {
                    pool.give_back(sender);
                }
            }
        });
    }
}

/// An upstream response body that gives its connection back to the pool
/// once read to the end. Dropped before its end, the connection is closed
/// with it (hyper cannot reuse a connection with a response half read).
pub struct PooledBody {
    body: Incoming,
    lent: Option<Lent>,
}

impl PooledBody {
    fn ended(&mut self) {
        if let Some(lent) = self.lent.take() {
            lent.response_read();
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (204, 304, a HEAD's) may never be polled at all.
        if self.body.is_end_stream() {
            self.ended();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.ended(),
            Poll::Ready(Some(Err(_))) => self.lent = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request body as the pool sends it: it says when hyper has taken its
/// last frame, which is when the connection may serve another request.
pub struct Sending {
    body: UpstreamBody,
    sent: Option<Arc<AtomicBool>>,
}

impl Sending {
    /// `req` with its body wrapped, and the flag its end sets (`None` for
    /// an empty body, which hyper never polls: no flag to allocate).
    fn wrap(req: Request<UpstreamBody>) -> (Request<Sending>, Option<Arc<AtomicBool>>) {
        let sent = (!req.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let flag = sent.clone();
        (req.map(|body| Sending { body, sent }), flag)
    }

    fn mark_sent(&self) {
        if let Some(sent) = &self.sent {
            sent.store(true, Ordering::Release);
        }
    }
}

impl Body for Sending {
    type Data = Bytes;
    type Error = <UpstreamBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.mark_sent(),
            // hyper stops polling a body that says it has ended.
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.mark_sent(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
