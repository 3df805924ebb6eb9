//! Which HTTP version a connection speaks, and the hyper connection that
//! serves it: over TLS, what ALPN settled; in plain text, whether the first
//! bytes, peeked at and left in the socket, are HTTP/2's preface.
//!
//! hyper-util's auto-detecting connection would read those bytes into a
//! buffer of its own and hand them back to hyper's HTTP/1.1 parser
//! separately, which makes the parser double its read buffer to 16 KiB on
//! every connection for as long as it lives; and its HTTP/1.1 settings
//! lack the exact head-size limit.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;

use crate::config::Limits;

/// At most this many concurrent HTTP/2 streams per client connection, so
/// one connection cannot fan out into unbounded upstream requests.
pub(super) const MAX_H2_STREAMS: u32 = 100;

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(super) type BoxError = Box<dyn StdError + Send + Sync>;

/// How to serve a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Tells a plain connection's protocol from its first bytes, leaving them
/// unread. Waits for the first bytes: the caller bounds the wait.
pub(super) async fn sniff(stream: &TcpStream) -> io::Result<Protocol> {
    let mut first = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(5);
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 || first[..n] != H2_PREFACE[..n] {
            // Not HTTP/2 (or closed at once: HTTP/1.1 handles the end).
            return Ok(Protocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        // A preface cut short. A peek returns the same bytes until more
        // arrive, so wait, backing off: a client that stalls here costs a
        // handful of wake-ups before the caller's deadline.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The protocol ALPN settled on a TLS connection (HTTP/2 over TLS is only
/// ever negotiated, RFC 9113 §3.2).
pub(super) fn negotiated(alpn: Option<&[u8]>) -> Protocol {
    if alpn == Some(b"h2") {
        Protocol::Http2
    } else {
        Protocol::Http1
    }
}

/// The connection settings for each protocol, built once per listener.
pub(super) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub(super) fn new(limits: &Limits) -> Builders {
        let ping =
            (limits.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let ping_timeout = ping.min(Duration::from_secs(20));
        let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);

        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // hyper restarts this for every request head, so it also bounds
            // how long an HTTP/1.1 connection may sit between requests.
            .header_read_timeout(limits.header_read_timeout)
            // The buffer limit alone is soft: a head that arrives in one
            // large read may pass it. This one is exact.
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(ping))
            .keep_alive_timeout(ping_timeout)
            .max_concurrent_streams(MAX_H2_STREAMS)
            .max_header_list_size(max_header_list);

        Builders { http1, http2 }
    }

    /// The connection serving `io` with `service` in `protocol`.
    pub(super) fn serve<'a, I, S, B>(
        &'a self,
        protocol: Protocol,
        io: I,
        service: S,
    ) -> Pin<Box<dyn Serving + 'a>>
    where
        I: Read + Write + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match protocol {
            Protocol::Http1 => Box::pin(self.http1.serve_connection(io, service).with_upgrades()),
            Protocol::Http2 => Box::pin(self.http2.serve_connection(io, service)),
        }
    }
}

/// A connection being served, whatever its protocol.
pub(super) trait Serving: Send {
    /// Runs the connection; ready when it has ended.
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    /// Finishes what is in flight and takes nothing new.
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S, B> Serving for http1::UpgradeableConnection<I, S>
where
    I: Read + Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Future::poll(self, cx).map_err(Into::into)
    }

    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Serving for http2::Connection<I, S, E>
where
    I: Read + Write + Unpin + Send,
    S: Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    E: Http2ServerConnExec<S::Future, B> + Send,
{
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Future::poll(self, cx).map_err(Into::into)
    }

    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
