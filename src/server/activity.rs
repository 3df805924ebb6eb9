//! What a connection is doing, for the timers that close it: requests in
//! flight and since when there have been none (the idle timeout), writes
//! the client is not taking and responses it is not reading (the response
//! write timeout).
//!
//! A client that stops reading holds its response, and with it the
//! upstream connection and the upstream's `maxConnections` slot that the
//! response streams from. Over HTTP/1.1 that shows as a write to the socket
//! that does not complete. Over HTTP/2 a client can also read the socket
//! and keep a stream's flow-control window at zero: hyper then stops
//! polling that stream's body and nothing else notices, so each HTTP/2
//! response body is watched on its own and dropped when abandoned.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// No time recorded (times are stored plus one, so 0 is free).
const NEVER: u64 = 0;

/// The watched-stream list is cleaned of ended streams when it reaches
/// this length: twice the streams a connection may have open.
const PRUNE_AT: usize = 2 * super::protocol::MAX_H2_STREAMS as usize;

/// One connection's activity.
pub(super) struct Activity {
    started: Instant,
    inflight: AtomicUsize,
    /// Milliseconds after `started` at which the last request finished.
    idle_since: AtomicU64,
    /// Since when (ms after `started`, plus one) a write has been waiting
    /// for the client to take bytes; [`NEVER`] when none is.
    write_blocked: AtomicU64,
    /// HTTP/2 response bodies in flight.
    streams: Mutex<Vec<Weak<dyn Stream>>>,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            started: Instant::now(),
            inflight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            write_blocked: AtomicU64::new(NEVER),
            streams: Mutex::new(Vec::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn since(&self, mark: u64) -> Duration {
        Duration::from_millis((self.now_ms() + 1).saturating_sub(mark))
    }

    pub(super) fn enter(self: &Arc<Self>) -> Busy {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    pub(super) fn idle_for(&self) -> Duration {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    /// How long a write has been waiting for the client.
    pub(super) fn write_blocked_for(&self) -> Duration {
        match self.write_blocked.load(Ordering::Relaxed) {
            NEVER => Duration::ZERO,
            mark => self.since(mark),
        }
    }

    fn write_pending(&self) {
        let now = self.now_ms() + 1;
        let _ =
            self.write_blocked
                .compare_exchange(NEVER, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn wrote(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != NEVER {
            self.write_blocked.store(NEVER, Ordering::Relaxed);
        }
    }

    /// `body`, watched for a client that stops reading it.
    pub(super) fn watch<B>(self: &Arc<Self>, body: B) -> Watched<B>
    where
        B: Body + Send + 'static,
    {
        // Waiting from the start: with a zero window hyper never polls the
        // body at all. An empty body is never polled either, and never
        // waits on the client.
        let waiting = if body.is_end_stream() {
            NEVER
        } else {
            self.now_ms() + 1
        };
        let slot = Arc::new(Slot {
            waiting: AtomicU64::new(waiting),
            body: Mutex::new(Some(body)),
        });
        let weak: Weak<dyn Stream> = Arc::downgrade(&slot) as Weak<dyn Stream>;
        let mut streams = lock(&self.streams);
        // A weak reference keeps its allocation: the ended ones go here as
        // well as at each tick, so a busy connection's list stays near its
        // open streams (at most `MAX_H2_STREAMS`).
        if streams.len() >= PRUNE_AT {
            streams.retain(|s| s.strong_count() > 0);
        }
        streams.push(weak);
        Watched {
            slot,
            activity: self.clone(),
        }
    }

    /// Drops the body of every response the client has not read for
    /// `limit`; returns how many.
    pub(super) fn abandon_unread(&self, limit: Duration) -> usize {
        let stale: Vec<Arc<dyn Stream>> = {
            let mut streams = lock(&self.streams);
            streams.retain(|s| s.strong_count() > 0);
            streams
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|s| match s.waiting() {
                    NEVER => false,
                    mark => self.since(mark) >= limit,
                })
                .collect()
        };
        // Dropped outside the list's lock: a body's drop may do real work.
        stale.iter().filter(|s| s.abandon()).count()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request in flight on a connection. A guard, since hyper drops the
/// handler's future when the client goes away.
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now_ms(), Ordering::Release);
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's I/O, noting writes that wait for the client.
pub(super) struct WriteWatch<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> WriteWatch<I> {
    pub(super) fn new(inner: I, activity: Arc<Activity>) -> WriteWatch<I> {
        WriteWatch { inner, activity }
    }

    fn note<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &polled {
            Poll::Pending => self.activity.write_pending(),
            Poll::Ready(_) => self.activity.wrote(),
        }
        polled
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteWatch<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteWatch<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.note(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A watched response body, as the watcher sees it.
trait Stream: Send + Sync {
    /// Since when the body has waited for the client to take more, plus
    /// one; [`NEVER`] while the client is taking it.
    fn waiting(&self) -> u64;
    /// Drops the body; false if it was gone already.
    fn abandon(&self) -> bool;
}

struct Slot<B> {
    waiting: AtomicU64,
    body: Mutex<Option<B>>,
}

impl<B: Send> Stream for Slot<B> {
    fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    fn abandon(&self) -> bool {
        let body = lock(&self.body).take();
        body.is_some()
    }
}

/// The client stopped reading a response for `limits.responseWriteTimeoutMs`.
#[derive(Debug, thiserror::Error)]
#[error("the client did not read the response within limits.responseWriteTimeoutMs")]
pub(super) struct Abandoned;

/// A response body that the connection's watcher may drop while hyper
/// holds it.
pub(super) struct Watched<B> {
    slot: Arc<Slot<B>>,
    activity: Arc<Activity>,
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let slot = &self.slot;
        slot.waiting.store(NEVER, Ordering::Relaxed);
        let mut body = lock(&slot.body);
        let Some(inner) = body.as_mut() else {
            // hyper resets the stream.
            return Poll::Ready(Some(Err(Box::new(Abandoned))));
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && !inner.is_end_stream() {
            // Handed over: until hyper asks for more, the client has it.
            slot.waiting
                .store(self.activity.now_ms() + 1, Ordering::Relaxed);
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        // An abandoned body has not ended: polled, it fails, so the
        // client sees a reset stream rather than a short, clean one.
        lock(&self.slot.body).as_ref().is_some_and(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.slot.body)
            .as_ref()
            .map_or_else(SizeHint::default, B::size_hint)
    }
}

/// A response body as the server hands it to hyper: watched on HTTP/2,
/// as it is on HTTP/1.1 (whose stalls show in the socket's writes).
pub(super) enum Served<B> {
    Plain(B),
    Watched(Watched<B>),
}

impl<B> Body for Served<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Served::Plain(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Served::Watched(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Served::Plain(b) => b.is_end_stream(),
            Served::Watched(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Served::Plain(b) => b.size_hint(),
            Served::Watched(b) => b.size_hint(),
        }
    }
}
