//! Development stand-ins for the pieces around idp-gate: an Auth0-shaped
//! OpenID provider ([`idp`]), an echo upstream ([`echo`]), signing keys
//! ([`keys`]) and a token minter ([`mint`]).
//!
//! None of this is meant for production: the provider keeps users and client
//! secrets in memory and hands out tokens to anyone who knows them.

pub mod echo;
pub mod idp;
pub mod keys;
pub mod mint;
pub mod run;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// Slow-loris guard: a client gets this long to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run on after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` so that running out of file descriptors
/// does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Which HTTP versions a demo server speaks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocol {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/1.1 or cleartext HTTP/2 (prior knowledge), chosen per connection.
    Auto,
}

/// Accepts connections until `shutdown` resolves, then lets open requests
/// finish for a short grace period.
pub(crate) async fn run_server<H, Fut>(
    listener: TcpListener,
    protocol: Protocol,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let io = TokioIo::new(stream);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        match protocol {
            Protocol::Http1 => {
                let conn = graceful.watch(http1.serve_connection(io, service));
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "connection ended with error");
                    }
                });
            }
            Protocol::Auto => {
                let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "connection ended with error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("demo server: connections still open after the grace period");
    }
    Ok(())
}

/// A JSON response. `Cache-Control` defaults to `no-store` because most
/// demo responses carry tokens or per-request data.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    // Serialising a `Value` cannot fail: its map keys are always strings.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Seconds since the Unix epoch; a clock set before 1970 reads as 0 rather
/// than failing, since the demo tools only need a plausible `iat`.
pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
