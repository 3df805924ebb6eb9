//! One pooled client per upstream, with its timeouts.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::{BodyTimeout, BodyTooLarge};
use super::pool::{Pool, PoolError};

use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::error::{Chain, UpstreamFailure};
use crate::tls::{TlsError, https_connector};

pub use super::pool::UpstreamBody;

/// A response body streamed back from an upstream.
pub type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// How requests reach the upstream.
enum Via {
    /// HTTP/1.1: one request per connection at a time, pooled here.
    Http1(Arc<Pool>),
    /// HTTP/2: multiplexed connections, kept by hyper-util's client.
    Http2(Box<Client<HttpsConnector<HttpConnector>, UpstreamBody>>),
}

/// A ready upstream.
pub struct Upstream {
    /// Settings.
    pub config: UpstreamConfig,
    via: Via,
    /// `scheme://authority` (empty for HTTP/1.1, whose requests carry the
    /// path only) and the base path without a trailing slash.
    origin: String,
    base_path: String,
    /// One permit per request in flight, held until its response body is
    /// done, so `maxConnections` bounds what one upstream is asked to carry.
    slots: Arc<Semaphore>,
}

impl Upstream {
    /// Builds the client (TLS roots are read here, once).
    pub fn new(config: UpstreamConfig) -> Result<Upstream, TlsError> {
        let ca_file = config.ca_file.as_deref();
        let h2_only = config.protocol == UpstreamProtocol::H2;
        let connector = https_connector(ca_file, config.connect_timeout, h2_only)?;
        let url = &config.url;
        let origin = format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        );
        let via = if config.protocol.is_http2() {
            // Without a pool timer idle connections are only noticed at
            // checkout, so an upstream that went quiet keeps its sockets
            // forever.
            Via::Http2(Box::new(
                Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(config.idle_timeout)
                    .pool_max_idle_per_host(MAX_IDLE)
                    .http2_only(true)
                    .build(connector),
            ))
        } else {
            let target: Uri = origin.parse().map_err(|_| bad_origin(&origin))?;
            let parts = target.into_parts();
            let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
                return Err(bad_origin(&origin));
            };
            let pool = Pool::new(connector, scheme, authority, config.idle_timeout, MAX_IDLE)
                .map_err(|_| bad_origin(&origin))?;
            Via::Http1(pool)
        };
        let origin = match via {
            Via::Http1(_) => String::new(),
            Via::Http2(_) => origin,
        };
        let base_path = url.path().trim_end_matches('/').to_string();
        let slots = Arc::new(Semaphore::new(config.max_connections));
        Ok(Upstream {
            config,
            via,
            origin,
            base_path,
            slots,
        })
    }

    /// The upstream URI for a request path and query, kept byte for byte.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::uri::InvalidUri> {
        let mut s =
            String::with_capacity(self.origin.len() + self.base_path.len() + path.len() + 64);
        s.push_str(&self.origin);
        s.push_str(&self.base_path);
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        // Taken as it is: parsing a `&str` would copy it.
        Uri::from_maybe_shared(Bytes::from(s))
    }

    /// Sends the request; the timeout covers the time to response headers.
    /// Refused at once when `maxConnections` requests are already in flight.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, UpstreamFailure> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| UpstreamFailure::Saturated)?;
        let sent = match &self.via {
            Via::Http1(pool) => {
                match tokio::time::timeout(self.config.request_timeout, pool.send(req)).await {
                    Err(_) => return Err(UpstreamFailure::Timeout),
                    Ok(Ok(resp)) => Ok(resp.map(|b| held(b, permit))),
                    Ok(Err(PoolError::Connect(e))) => Err((connect_failure(&*e), e)),
                    Ok(Err(PoolError::Exchange(e))) => {
                        Err((exchange_failure(&e), Box::new(e) as BoxError))
                    }
                }
            }
            Via::Http2(client) => {
                match tokio::time::timeout(self.config.request_timeout, client.request(req)).await {
                    Err(_) => return Err(UpstreamFailure::Timeout),
                    Ok(Ok(resp)) => Ok(resp.map(|b| held(b, permit))),
                    Ok(Err(e)) => Err((classify(&e), Box::new(e) as BoxError)),
                }
            }
        };
        match sent {
            Ok(resp) => Ok(resp),
            Err((failure, e)) => {
                tracing::warn!(
                    upstream = %self.config.name,
                    kind = failure.kind(),
                    error = %Chain(&*e),
                    "upstream request failed"
                );
                Err(failure)
            }
        }
    }

    /// The request version this upstream is sent.
    pub fn version(&self) -> http::Version {
        self.config.protocol.version()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// At most this many idle connections are kept per upstream.
const MAX_IDLE: usize = 256;

fn bad_origin(origin: &str) -> TlsError {
    TlsError::Url(format!("the upstream URL {origin} names no host"))
}

/// The response body, holding the upstream's `maxConnections` slot until
/// it is done.
fn held<B>(body: B, permit: OwnedSemaphorePermit) -> ResponseBody
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    body.map_frame(move |frame| {
        let _held = &permit;
        frame
    })
    .boxed()
}

/// A failure to connect: a timeout, or not.
fn connect_failure(e: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    if timed_out(e) {
        UpstreamFailure::Timeout
    } else {
        UpstreamFailure::Connect
    }
}

/// A failure on an open connection: the client's body over its limit, a
/// timeout, or a broken exchange.
fn exchange_failure(e: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    if let Some(client) = clients_doing(e) {
        client
    } else if timed_out(e) {
        UpstreamFailure::Timeout
    } else {
        UpstreamFailure::Reset
    }
}

/// Sorts a client error by its type: a timeout anywhere in the chain (a
/// connect timeout is an `io::Error` of kind `TimedOut` under the connect
/// error; hyper's own timers report `is_timeout`), else a failure to
/// connect, else a broken exchange.
fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamFailure {
    if let Some(client) = clients_doing(e) {
        client
    } else if timed_out(e) {
        UpstreamFailure::Timeout
    } else if e.is_connect() {
        UpstreamFailure::Connect
    } else {
        UpstreamFailure::Reset
    }
}

/// A failure caused by the client's body, not by the upstream.
fn clients_doing(e: &(dyn std::error::Error + 'static)) -> Option<UpstreamFailure> {
    causes(e).find_map(|c| {
        if c.is::<BodyTooLarge>() {
            Some(UpstreamFailure::BodyTooLarge)
        } else if c.is::<BodyTimeout>() {
            Some(UpstreamFailure::BodyTimeout)
        } else {
            None
        }
    })
}

fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || c.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
    })
}

/// `e` and its sources, outermost first.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |c| c.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn timeouts_are_found_by_kind_and_chains_show_every_cause() {
        let io = |kind| std::io::Error::new(kind, "deadline");
        assert!(timed_out(&Outer(io(std::io::ErrorKind::TimedOut))));
        assert!(!timed_out(&Outer(io(
            std::io::ErrorKind::ConnectionRefused
        ))));
        // The words alone do not make a timeout.
        assert!(!timed_out(&Outer(std::io::Error::other("timed out"))));
        assert_eq!(
            Chain(&Outer(io(std::io::ErrorKind::TimedOut))).to_string(),
            "outer: deadline"
        );
    }
}
