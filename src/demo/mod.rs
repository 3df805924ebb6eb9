//! Development stand-ins for the pieces around idp-gate: an Auth0-shaped
//! OpenID provider ([`idp`]), an echo upstream ([`echo`]), signing keys
//! ([`keys`]) and a token minter ([`mint`]); [`run`] wires them to the
//! gateway for `idp-gate demo`. Nothing here is on the request path.
//!
//! None of this is meant for production: the provider keeps users and client
//! secrets in memory and hands out tokens to anyone who knows them.

pub mod echo;
pub mod idp;
pub mod keys;
pub mod mint;
pub mod run;

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// How long in-flight requests may run on after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `handler` with the gateway's own accept loop until `shutdown`
/// resolves, then lets open requests finish for a short grace period.
pub(crate) async fn run_server<H, Fut>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    crate::server::serve(
        listener,
        crate::server::ServeOptions::plain(SHUTDOWN_GRACE),
        move |req, _peer| handler(req),
        shutdown,
    )
    .await;
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

pub(crate) use crate::clock::unix_secs as unix_seconds;
