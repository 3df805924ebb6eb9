//! One pooled client per upstream, with its timeouts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use crate::config::UpstreamConfig;
use crate::error::UpstreamFailure;
use crate::tls::{TlsError, https_connector};

/// The body type sent upstream: the client's body, streamed as it comes.
pub type UpstreamBody = Incoming;

/// A response body streamed back from an upstream.
pub type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// A ready upstream.
pub struct Upstream {
    /// Settings.
    pub config: UpstreamConfig,
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    /// `scheme://authority` and the base path without a trailing slash.
    origin: String,
    base_path: String,
    /// One permit per request in flight, held until its response body is
    /// done, so `maxConnections` bounds what one upstream is asked to carry.
    slots: Arc<Semaphore>,
}

impl Upstream {
    /// Builds the client (TLS roots are read here, once).
    pub fn new(config: UpstreamConfig) -> Result<Upstream, TlsError> {
        let https = https_connector(config.ca_file.as_deref(), config.connect_timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(https);
        let url = &config.url;
        let origin = format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        );
        let base_path = url.path().trim_end_matches('/').to_string();
        let slots = Arc::new(Semaphore::new(config.max_connections));
        Ok(Upstream {
            config,
            client,
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
        s.parse()
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
        match tokio::time::timeout(self.config.request_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Ok(resp)) => Ok(resp.map(|body| {
                body.map_frame(move |frame| {
                    let _held = &permit;
                    frame
                })
                .boxed()
            })),
            Ok(Err(e)) if e.is_connect() => {
                tracing::debug!(upstream = %self.config.name, error = %e, "upstream connect failed");
                Err(if is_timeout(&e) {
                    UpstreamFailure::Timeout
                } else {
                    UpstreamFailure::Connect
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(upstream = %self.config.name, error = %e, "upstream exchange failed");
                Err(UpstreamFailure::Reset)
            }
        }
    }
}

/// A connect timeout surfaces as a connect error whose cause is a timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if s.to_string().contains("timed out") {
            return true;
        }
        source = s.source();
    }
    false
}
