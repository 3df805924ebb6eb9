//! The request body on its way upstream: counted, limited, and ended when
//! the client stops sending it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use hyper::body::{Body, Frame, SizeHint};
use prometheus::IntCounter;
use tokio::time::{Instant, Sleep};

use crate::headers;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body grew past `limits.maxRequestBodyBytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than limits.maxRequestBodyBytes")]
pub struct BodyTooLarge;

/// A request body sent nothing for `limits.requestBodyTimeoutMs`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data within limits.requestBodyTimeoutMs")]
pub struct BodyTimeout;

/// What a [`CountedBody`] enforces.
#[derive(Clone)]
pub struct BodyRules {
    /// Headers no client may send, as trailers either: the identity and
    /// tenant headers (hop-by-hop, proxy and credential headers go too).
    pub protected: Arc<[HeaderName]>,
    /// Bytes at most; `None`: unlimited.
    pub max_bytes: Option<u64>,
    /// The longest wait for the next frame.
    pub idle_timeout: Duration,
    /// Counted each time the idle timeout ends a body.
    pub timeouts: IntCounter,
}

/// A request body that counts what the client sent and, with a limit,
/// ends in [`BodyTooLarge`] once it passes it. The body still streams: it
/// is never buffered to be measured.
///
/// A body that stops arriving ends in [`BodyTimeout`]: without it, a client
/// dripping a byte now and then would hold an upstream connection (and its
/// `maxConnections` slot) for as long as it liked, since the upstream
/// request timeout only covers the wait for response headers.
pub struct CountedBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
    limits: BodyRules,
    /// Armed while the body is waiting for the client, pushed back by each
    /// frame. Made at the first wait: most bodies arrive whole and never
    /// need it.
    idle: Option<Pin<Box<Sleep>>>,
}

impl<B> CountedBody<B> {
    /// Counts `inner`'s data into `count` and enforces `limits`.
    pub fn new(inner: B, count: Arc<AtomicU64>, limits: BodyRules) -> Self {
        CountedBody {
            inner,
            count,
            limits,
            idle: None,
        }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    let total = this.count.fetch_add(n, Ordering::Relaxed) + n;
                    if this.limits.max_bytes.is_some_and(|l| total > l) {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                if let Some(idle) = &mut this.idle {
                    idle.as_mut()
                        .reset(Instant::now() + this.limits.idle_timeout);
                }
                if frame.is_trailers() {
                    // An upstream may merge trailers into the headers it
                    // acts on: they pass the same filter the headers did.
                    return Poll::Ready(Some(Ok(match frame.into_trailers() {
                        Ok(mut trailers) => {
                            headers::filter_trailers(&mut trailers, &this.limits.protected);
                            Frame::trailers(trailers)
                        }
                        Err(frame) => frame,
                    })));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.limits.idle_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    this.limits.timeouts.inc();
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
