//! Configuration: the YAML file, expanded, parsed and validated into a
//! compiled [`Config`]. No I/O beyond reading the file itself (and checking
//! that referenced files exist), so start-up, reload and `check-config` all
//! run the very same code.

mod expand;
pub mod raw;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use url::Url;

use crate::routing::Route;
pub use crate::routing::policy::ClaimRef;
pub use crate::routing::policy::TokenSource;
use crate::secret::Secret;

pub use expand::expand_str;

/// One problem found in a config file, with the YAML path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted YAML path, e.g. `routes[1].upstream`; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of a config file, found in one pass.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The problems, in file order where possible.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}: ",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy listener; `None`: the configuration only decides (the tower
    /// layer), and routes need no upstream.
    pub listen: Option<SocketAddr>,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Serving on, not ready, before the drain starts.
    pub shutdown_delay: Duration,
    /// TLS termination on the proxy listener.
    pub tls: Option<TlsFiles>,
    /// Identity providers (`idp` alone is one named `default`).
    pub providers: Vec<ProviderConfig>,
    /// Upstreams; routes refer to them by index.
    pub upstreams: Vec<UpstreamConfig>,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Trusted organizations: claim value → platform name.
    pub organizations: Option<HashMap<String, String>>,
    /// Organization binding.
    pub binding: OrganizationBinding,
    /// Forwarded identity.
    pub forwarding: Forwarding,
    /// Per-organization request metric.
    pub organization_label: bool,
    /// Connection and request limits.
    pub limits: Limits,
    /// Identity, claims and tenant headers: only the gateway sets them, so
    /// they are removed from every incoming request.
    pub protected_headers: Arc<[HeaderName]>,
}

/// Connection and request limits of the proxy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From accept (TLS handshake included) to the end of the request head.
    pub header_read_timeout: Duration,
    /// Closes connections with nothing in flight; HTTP/2 pings silent peers.
    pub idle_timeout: Duration,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once per client IP.
    pub max_connections_per_client: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Largest request body; `None`: unlimited.
    pub max_request_body_bytes: Option<u64>,
    /// A request body silent this long is ended (408).
    pub request_body_timeout: Duration,
    /// A response the client does not read for this long is abandoned.
    pub response_write_timeout: Duration,
    /// A tunnel silent both ways this long is closed.
    pub tunnel_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: 256,
            max_header_bytes: 64 * 1024,
            max_request_body_bytes: None,
            request_body_timeout: Duration::from_secs(30),
            response_write_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// TLS certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A configured JWKS URL.
    Url(Url),
    /// OIDC discovery at this URL; the document's `issuer` must equal the provider's.
    Discovery(Url),
}

/// One identity provider, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// Name (`default` for `idp:`).
    pub name: String,
    /// Exact `iss`.
    pub issuer: String,
    /// Key source.
    pub jwks: JwksSource,
    /// Claim forwarded as the user.
    pub username_claim: String,
    /// Claim holding the organization.
    pub organization_claim: String,
    /// Accepted audiences (any of).
    pub audiences: Vec<String>,
    /// HMAC secret, if HS* algorithms are allowed.
    pub client_secret: Option<Secret>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Leeway for time claims.
    pub clock_skew: Duration,
    /// Background refresh period.
    pub refresh: Duration,
    /// Minimum interval between unknown-kid refetches.
    pub min_refetch_interval: Duration,
    /// How long last-good keys outlive a failing endpoint.
    pub max_stale: Duration,
    /// Persisted last-good JWKS.
    pub cache_file: Option<PathBuf>,
    /// Token sources in order.
    pub token_sources: Vec<TokenSource>,
    /// Extra CA bundle for HTTPS fetches.
    pub ca_file: Option<PathBuf>,
    /// `http://` key sources allowed beyond loopback.
    pub allow_insecure_http: bool,
    /// Tokens with `email_verified: false` accepted as `email` identities.
    pub allow_unverified_email: bool,
}

impl ProviderConfig {
    /// Whether keys may be fetched from `url`: over HTTPS, from a loopback
    /// address, or anywhere when `allowInsecureHttp` says so.
    pub fn may_fetch_keys_from(&self, url: &Url) -> bool {
        self.allow_insecure_http || is_secure_or_loopback(url)
    }
}

/// `https://`, or `http://` to a loopback host (where nobody sits on the path).
pub fn is_secure_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.to_ascii_lowercase().ends_with(".localhost")
            }
            None => false,
        },
        _ => false,
    }
}

/// One upstream, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Name for metrics and logs.
    pub name: String,
    /// Base URL.
    pub url: Url,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time until response headers.
    pub request_timeout: Duration,
    /// Extra CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Requests in flight at once; past it 503.
    pub max_connections: usize,
    /// The protocol spoken to the upstream.
    pub protocol: UpstreamProtocol,
    /// Pooled connections unused this long are closed.
    pub idle_timeout: Duration,
    /// The `Host` sent upstream instead of the client's.
    pub host: Option<http::HeaderValue>,
}

/// The protocol spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, over TLS for an `https` url.
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN.
    H2,
    /// HTTP/2 in cleartext, with prior knowledge.
    H2c,
}

impl UpstreamProtocol {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
            UpstreamProtocol::H2c => "h2c",
        }
    }

    /// Whether requests go upstream as HTTP/2.
    pub fn is_http2(self) -> bool {
        match self {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => true,
        }
    }

    /// The request version the upstream is sent.
    pub fn version(self) -> http::Version {
        if self.is_http2() {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        }
    }
}

/// Organization binding, validated.
#[derive(Debug, Clone, Default)]
pub struct OrganizationBinding {
    /// Always overwritten with the verified organization's name.
    pub header: Option<HeaderName>,
    /// When present in a request, must name the verified organization.
    pub query_param: Option<String>,
}

/// Forwarded identity, validated.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// User header.
    pub user: HeaderName,
    /// Organization header.
    pub organization: HeaderName,
    /// Subject header.
    pub subject: HeaderName,
    /// Claim → header.
    pub claims: Vec<(ClaimRef, HeaderName)>,
    /// Pass `Authorization` upstream.
    pub forward_authorization: bool,
}

impl Forwarding {
    /// Every header the gateway sets from verified claims: always stripped
    /// from incoming requests so a caller can never forge one.
    pub fn identity_header_names(&self) -> impl Iterator<Item = &HeaderName> + Clone {
        [&self.user, &self.organization, &self.subject]
            .into_iter()
            .chain(self.claims.iter().map(|(_, h)| h))
    }
}

impl Config {
    /// Reads, expands and validates a config file from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem::new("", format!("cannot read the file: {e}"))],
        })?;
        Config::from_yaml(&text, path, &|name| std::env::var(name).ok())
    }

    /// Validates YAML text; `file` names it in errors and anchors relative paths.
    pub fn from_yaml(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::from_yaml(text, env).map_err(|problems| ConfigError {
            file: file.to_path_buf(),
            problems,
        })
    }
}
