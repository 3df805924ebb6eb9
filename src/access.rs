//! The access log: one line per request, written when the response body
//! is done, so it can say how many bytes went each way, or when the client
//! goes away first (status 499, as nginx writes it).

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use hyper::body::{Body, Frame, SizeHint};

use crate::auth::Identity;
use crate::metrics::{Metrics, method_label};
use crate::request_id::RequestId;

/// The status logged for a request whose client left before the response.
pub const CLIENT_CLOSED: u16 = 499;

/// The fields of one access line, written exactly once, on drop.
pub struct AccessLine {
    metrics: Arc<Metrics>,
    start: Instant,
    /// The client's address.
    pub client: IpAddr,
    /// `X-Request-Id`.
    pub request_id: RequestId,
    /// Method.
    pub method: Method,
    /// The path as received (no query: it may carry a token).
    pub path: String,
    /// Route name, once matched.
    pub route: Option<Arc<str>>,
    /// Response status; `None` until the response exists.
    pub status: Option<u16>,
    /// The verified identity (its organization, subject and `jti` hash
    /// are logged).
    pub identity: Option<Arc<Identity>>,
    /// Upstream name.
    pub upstream: Option<String>,
    /// Refusal reason from the closed set.
    pub reason: Option<&'static str>,
    /// Other failure, for the operator.
    pub error: Option<String>,
    /// Request body bytes read from the client.
    pub bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
}

impl AccessLine {
    /// A line for a request that has just arrived.
    pub fn new(
        metrics: Arc<Metrics>,
        client: IpAddr,
        request_id: RequestId,
        method: Method,
        path: String,
    ) -> Self {
        AccessLine {
            metrics,
            start: Instant::now(),
            client,
            request_id,
            method,
            path,
            route: None,
            status: None,
            identity: None,
            upstream: None,
            reason: None,
            error: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
        }
    }

    /// When the request arrived.
    pub fn start(&self) -> Instant {
        self.start
    }
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        let status = match self.status {
            Some(s) => s,
            None => {
                // The handler was dropped: the client went away first. The
                // other statuses were counted when the response was made.
                let route = self.route.as_deref().unwrap_or("unmatched");
                self.metrics
                    .requests
                    .with_label_values(&[route, method_label(&self.method), "499"])
                    .inc();
                CLIENT_CLOSED
            }
        };
        tracing::info!(
            target: "access",
            request_id = %self.request_id,
            client = %self.client,
            method = %self.method,
            path = %self.path,
            route = self.route.as_deref().unwrap_or("unmatched"),
            status,
            // Rounded to microseconds: more digits are noise, not precision.
            latency_ms = self.start.elapsed().as_micros() as f64 / 1000.0,
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
            org = self.identity.as_ref().and_then(|i| i.organization.as_deref()),
            sub = self.identity.as_ref().and_then(|i| i.subject.as_deref()),
            jti = self.identity.as_ref().and_then(|i| i.jti_hash.as_deref()),
            upstream = self.upstream.as_deref(),
            reason = self.reason,
            error = self.error.as_deref(),
        );
    }
}

/// A response body that counts what it sends and writes its access line
/// when it ends or is dropped (the client went away mid-body).
pub struct LoggedBody<B> {
    inner: B,
    line: Option<AccessLine>,
}

impl<B> LoggedBody<B> {
    /// Wraps `inner`; `line` is written when the body is done.
    pub fn new(inner: B, line: AccessLine) -> Self {
        LoggedBody {
            inner,
            line: Some(line),
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(line)) = (frame.data_ref(), self.line.as_mut()) {
                    line.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                self.line.take();
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
