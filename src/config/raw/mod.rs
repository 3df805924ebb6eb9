//! The configuration file as written: serde structs that mirror the YAML
//! one to one. Nothing here is checked beyond its shape; `validate` turns a
//! [`RawConfig`] into the compiled [`crate::config::Config`].
//!
//! Every struct denies unknown fields, so a misspelt key is an error rather
//! than a silently disabled check.

mod idp;
mod routes;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub use idp::{RawIdp, RawJwks, RawTokenSource};
pub use routes::{
    OneOrMany, RawAllow, RawForwarding, RawIdentityHeaders, RawMatch, RawOrganizationBinding,
    RawRateLimit, RawRoute, RawUpstream,
};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Proxy listener address, `host:port`. Default `0.0.0.0:8080`. Empty:
    /// no proxy listener (a configuration for the tower layer, whose
    /// routes then need no upstream).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Seconds that in-flight requests get to finish after SIGTERM/SIGINT. Default 20.
    #[serde(default = "default_grace", deserialize_with = "u64_or_string")]
    pub shutdown_grace_seconds: u64,
    /// Seconds to keep accepting and serving after SIGTERM/SIGINT, not
    /// ready and asking every client to move on (`Connection: close`,
    /// HTTP/2 GOAWAY), before the drain starts: the time a load balancer or
    /// Kubernetes takes to stop sending new connections. A second signal
    /// skips it. Default 0.
    #[serde(default, deserialize_with = "u64_or_string")]
    pub shutdown_delay_seconds: u64,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    #[serde(default)]
    pub admin: RawAdmin,
    /// TLS termination on the proxy listener.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// The identity provider, with the keys APK's Helm values use.
    #[serde(default)]
    pub idp: Option<RawIdp>,
    /// Several identity providers; each entry is shaped like `idp` and has a `name`.
    #[serde(default)]
    pub idps: Vec<RawIdp>,
    /// Named upstreams that routes forward to.
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    /// Routes, first match wins, in file order.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Trusted organizations: organization claim value → the platform's name for it.
    /// When present, a token whose organization is not listed is refused.
    #[serde(default)]
    pub organizations: Option<BTreeMap<String, RawOrganization>>,
    /// Binds the caller's request to its verified organization.
    #[serde(default)]
    pub organization_binding: Option<RawOrganizationBinding>,
    /// What is forwarded upstream about the verified caller.
    #[serde(default)]
    pub forwarding: RawForwarding,
    /// Metrics options.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Connection and request limits of the proxy listener.
    #[serde(default)]
    pub limits: RawLimits,
    /// The rate limit of every protected route without a `rateLimit` of
    /// its own. Omitted: such routes are not limited.
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
}

/// Connection and request limits; every one has a safe default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLimits {
    /// From accept (TLS handshake included) to the end of a request head;
    /// also how long an HTTP/1.1 connection may wait for its next request.
    /// Default 10000.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight is closed after this; HTTP/2
    /// peers are also pinged and dropped when they do not answer. Default 60000.
    #[serde(default = "default_idle_timeout", deserialize_with = "u64_or_string")]
    pub idle_timeout_ms: u64,
    /// Connections served at once; past it new ones are closed at once. Default 10000.
    #[serde(
        default = "default_max_connections",
        deserialize_with = "u64_or_string"
    )]
    pub max_connections: u64,
    /// Connections at once from one client IP address. Default 256.
    #[serde(default = "default_max_per_client", deserialize_with = "u64_or_string")]
    pub max_connections_per_client: u64,
    /// Largest request head; past it 431. Default 65536.
    #[serde(
        default = "default_max_header_bytes",
        deserialize_with = "u64_or_string"
    )]
    pub max_header_bytes: u64,
    /// Largest request body; past it 413. 0 (the default): unlimited, and
    /// bodies stream either way.
    #[serde(default, deserialize_with = "u64_or_string")]
    pub max_request_body_bytes: u64,
    /// A request body that sends nothing for this long is ended: the
    /// upstream request is cancelled and the client gets 408 if no response
    /// has started. Default 30000.
    #[serde(
        default = "default_request_body_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub request_body_timeout_ms: u64,
    /// A response the client takes nothing of for this long (a full socket,
    /// or an HTTP/2 flow-control window kept at zero) is abandoned and its
    /// upstream connection freed. Default 60000.
    #[serde(
        default = "default_response_write_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub response_write_timeout_ms: u64,
    /// An upgraded connection (WebSocket) with no byte either way for this
    /// long is closed. Default 3600000 (1 h).
    #[serde(
        default = "default_tunnel_idle_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub tunnel_idle_timeout_ms: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            header_read_timeout_ms: default_header_read_timeout(),
            idle_timeout_ms: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_per_client(),
            max_header_bytes: default_max_header_bytes(),
            max_request_body_bytes: 0,
            request_body_timeout_ms: default_request_body_timeout(),
            response_write_timeout_ms: default_response_write_timeout(),
            tunnel_idle_timeout_ms: default_tunnel_idle_timeout(),
        }
    }
}

fn default_request_body_timeout() -> u64 {
    30_000
}
fn default_response_write_timeout() -> u64 {
    60_000
}
fn default_tunnel_idle_timeout() -> u64 {
    3_600_000
}

fn default_header_read_timeout() -> u64 {
    10_000
}
fn default_idle_timeout() -> u64 {
    60_000
}
fn default_max_connections() -> u64 {
    10_000
}
fn default_max_per_client() -> u64 {
    256
}
fn default_max_header_bytes() -> u64 {
    65_536
}

/// The admin listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAdmin {
    /// Admin listener address. Default `127.0.0.1:9901`; never the proxy port.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: default_admin_listen(),
        }
    }
}

/// TLS termination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

/// A trusted organization.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOrganization {
    /// The platform's name for the organization (APK's `org1`).
    pub name: String,
}

/// Metrics options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMetrics {
    /// Per-organization request counter (opt-in: cardinality).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub organization_label: bool,
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_admin_listen() -> String {
    "127.0.0.1:9901".into()
}
fn default_grace() -> u64 {
    20
}

/// Numbers may arrive as strings after `${VAR}` expansion.
fn u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {s:?}"))),
    }
}

/// An optional number, which may arrive as a string after `${VAR}` expansion.
fn optional_u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64_or_string(d).map(Some)
}

/// Booleans may arrive as strings after `${VAR}` expansion.
fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Str(s) => match s.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
    }
}
