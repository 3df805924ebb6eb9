//! Upgraded connections (WebSocket and any other `Upgrade`): once the
//! upstream has answered 101, the client's and the upstream's connections
//! are spliced byte for byte until either side closes, the tunnel falls
//! silent for `limits.tunnelIdleTimeoutMs`, or the gateway closes every
//! tunnel at shutdown.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::request_id::RequestId;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the client's connection holds while it lives: its place under
/// `maxConnections` and `maxConnectionsPerClient`. The server puts it in
/// the extensions of a request that asks for an upgrade; the tunnel keeps
/// it, since hyper gives the connection's I/O away on a 101 and ends its
/// own task, which would otherwise free the slots while the tunnel lives
/// on.
#[derive(Clone)]
pub struct ConnectionHold {
    _slots: Arc<dyn Any + Send + Sync>,
}

impl ConnectionHold {
    /// Holds `slots` until the connection and any tunnel it became close.
    pub fn new(slots: impl Any + Send + Sync) -> ConnectionHold {
        ConnectionHold {
            _slots: Arc::new(slots),
        }
    }
}

/// The open tunnels, and the one signal that ends them all.
///
/// Upgraded connections leave the HTTP server's hands (hyper gives their
/// I/O away), so the server's drain does not see them: without this they
/// would outlive the gateway's shutdown.
pub struct Tunnels {
    closed: watch::Sender<bool>,
    open: IntGauge,
    idle_closed: IntCounter,
}

impl Tunnels {
    /// No tunnels yet; `open` counts them, `idle_closed` the ones closed
    /// for silence.
    pub fn new(open: IntGauge, idle_closed: IntCounter) -> Tunnels {
        Tunnels {
            closed: watch::channel(false).0,
            open,
            idle_closed,
        }
    }

    /// Splices `client` and `upstream` once both upgrades complete (the
    /// client's only after the 101 has been written to it). `hold` lives as
    /// long as the tunnel: the upstream's connection slot and the client's
    /// connection slots. A tunnel with no byte either way for `idle` is
    /// closed.
    pub fn open(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        hold: impl Send + 'static,
        idle: Duration,
        request_id: RequestId,
    ) {
        let mut closed = self.closed.subscribe();
        let open = OpenTunnel::enter(&self.open);
        let idle_closed = self.idle_closed.clone();
        tokio::spawn(async move {
            let _hold = (hold, open);
            let activity = Arc::new(LastByte::new());
            let splice = async {
                let (client, upstream) = tokio::try_join!(client, upstream)?;
                let mut client = Touched::new(TokioIo::new(client), activity.clone());
                let mut upstream = Touched::new(TokioIo::new(upstream), activity.clone());
                Ok::<_, BoxError>(tokio::io::copy_bidirectional(&mut client, &mut upstream).await?)
            };
            tokio::select! {
                done = splice => match done {
                    Ok((up, down)) => tracing::debug!(request_id = %request_id, bytes_up = up, bytes_down = down, "tunnel closed"),
                    Err(e) => tracing::debug!(request_id = %request_id, error = %e, "tunnel broke"),
                },
                _ = activity.silent_for(idle) => {
                    idle_closed.inc();
                    tracing::debug!(request_id = %request_id, "tunnel closed: idle past limits.tunnelIdleTimeoutMs");
                }
                _ = closed.wait_for(|c| *c) => {
                    tracing::debug!(request_id = %request_id, "tunnel closed by shutdown");
                }
            }
        });
    }

    /// Ends every open tunnel, and any opened from now on.
    pub fn close_all(&self) {
        self.closed.send_replace(true);
    }

    /// How many tunnels are open (or waiting for their upgrades).
    pub fn open_count(&self) -> usize {
        self.closed.receiver_count()
    }
}

/// One tunnel in the `open_tunnels` gauge while alive.
struct OpenTunnel(IntGauge);

impl OpenTunnel {
    fn enter(gauge: &IntGauge) -> OpenTunnel {
        gauge.inc();
        OpenTunnel(gauge.clone())
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// When a tunnel last carried a byte, either way.
struct LastByte {
    start: Instant,
    /// Milliseconds after `start`.
    at: AtomicU64,
}

impl LastByte {
    fn new() -> LastByte {
        LastByte {
            start: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.at.store(now, Ordering::Relaxed);
    }

    /// Ready once no byte has passed for `idle`.
    async fn silent_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.at.load(Ordering::Relaxed));
            if last.elapsed() >= idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    }
}

/// A tunnel's end, noting each read that carried bytes: every byte that
/// crosses a tunnel is read from one of its two ends.
struct Touched<I> {
    inner: I,
    last: Arc<LastByte>,
}

impl<I> Touched<I> {
    fn new(inner: I, last: Arc<LastByte>) -> Touched<I> {
        Touched { inner, last }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Touched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Touched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
