//! Small HTTPS GET client for discovery documents and JWKS.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::Url;

use crate::tls::{TlsError, https_connector};

/// A JWKS or discovery document is small; anything larger is refused.
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch failed. Never carries the body.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connect, TLS or protocol failure.
    #[error("request to {url} failed: {message}")]
    Transport {
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
    /// Not 200.
    #[error("{url} answered {status}")]
    Status {
        /// Where.
        url: String,
        /// What.
        status: StatusCode,
    },
    /// The whole exchange took too long.
    #[error("{url} did not answer within {TIMEOUT:?}")]
    Timeout {
        /// Where.
        url: String,
    },
}

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub body: Bytes,
    /// `Cache-Control: max-age`, if the server sent one.
    pub max_age: Option<Duration>,
}

/// Pooled GET client (HTTP and HTTPS).
#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    /// A client trusting system roots plus `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let https = https_connector(ca_file, Duration::from_secs(5), false)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Fetcher { client })
    }

    /// GET `url`, expecting 200 and at most 1 MiB.
    pub async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let transport = |message: String| FetchError::Transport {
            url: url.to_string(),
            message,
        };
        let req = Request::get(url.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("idp-gate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| transport(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport(crate::error::chain(&e)))?;
            if resp.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status: resp.status(),
                });
            }
            let max_age = resp
                .headers()
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_max_age);
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            Ok(Fetched { body, max_age })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_string(),
            })?
    }
}

/// `max-age=N` from a Cache-Control value; `no-cache`/`no-store` count as 0.
pub fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        lower
            .strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age("public, max-age=60, must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_max_age("Max-Age=5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
