//! The configuration file as written: serde structs that mirror the YAML
//! one to one. Nothing here is checked beyond its shape; `validate` turns a
//! [`RawConfig`] into the compiled [`crate::config::Config`].
//!
//! Every struct denies unknown fields, so a misspelt key is an error rather
//! than a silently disabled check.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::secret::Secret;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Proxy listener address, `host:port`. Default `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Seconds that in-flight requests get to finish after SIGTERM/SIGINT. Default 20.
    #[serde(default = "default_grace", deserialize_with = "u64_or_string")]
    pub shutdown_grace_seconds: u64,
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

/// A per-organization rate limit, counted by each replica on its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRateLimit {
    /// Requests each organization may make: `N/s`, `N/m` or `N/h`, N ≥ 1.
    /// Tokens without an organization share one allowance per route.
    pub per_organization: String,
    /// Requests an organization may make at once after a quiet spell (the
    /// bucket's size). Default: N.
    #[serde(default, deserialize_with = "optional_u64_or_string")]
    pub burst: Option<u64>,
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
fn default_upstream_max_connections() -> u64 {
    1024
}
fn default_upstream_protocol() -> String {
    "http1".into()
}
fn default_upstream_idle_timeout() -> u64 {
    60_000
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

/// One identity provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIdp {
    /// Provider name, used by `routes[].providers` (required in `idps`).
    #[serde(default)]
    pub name: Option<String>,
    /// Expected `iss`, compared exactly (Auth0's has a trailing slash).
    #[serde(default)]
    pub issuer: String,
    /// JWKS URL. Empty: found by OIDC discovery from the issuer.
    #[serde(default)]
    pub jwks_endpoint: String,
    /// Claim forwarded as the user identity. Default `sub`.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Claim holding the organization. Default `org_id` (Auth0 Organizations).
    #[serde(default = "default_organization_claim")]
    pub organization_claim: String,
    /// Accepted `aud` values; a token must carry at least one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Shared secret for HS256/384/512-signed tokens; empty disables HMAC.
    #[serde(default)]
    pub client_secret: Secret,
    /// Allowed signature algorithms. Default `[RS256]`; `none` is never allowed.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`. Default 30.
    #[serde(default = "default_skew", deserialize_with = "u64_or_string")]
    pub clock_skew_seconds: u64,
    /// JWKS cache behaviour.
    #[serde(default)]
    pub jwks: RawJwks,
    /// Where a token may be read from. A request carrying more than one
    /// credential, in one source or across sources, is refused (400); see
    /// SECURITY.md, "Token sources".
    #[serde(default = "default_token_sources")]
    pub token_sources: Vec<RawTokenSource>,
    /// Extra PEM CA bundle trusted when fetching discovery and JWKS over
    /// HTTPS. Watched: new contents are trusted after a reload (the keys
    /// are fetched again with it), without a signal or a restart.
    #[serde(default)]
    pub ca_file: String,
    /// Allow `http://` for `issuer`, `jwksEndpoint` and a discovered
    /// `jwks_uri` on non-loopback hosts. Off: keys fetched in clear text can
    /// be replaced by anyone on the path. Warned about at every start.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub allow_insecure_http: bool,
    /// Accept a token whose `email_verified` is false when `usernameClaim`
    /// is `email`. Off: such a token is refused (403 `unverified_email`),
    /// since anyone can claim an address they have not verified.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub allow_unverified_email: bool,
}

/// JWKS cache behaviour.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJwks {
    /// Background refresh period; a shorter `Cache-Control: max-age` wins. Default 600.
    #[serde(default = "default_refresh", deserialize_with = "u64_or_string")]
    pub refresh_seconds: u64,
    /// An unknown `kid` triggers at most one refetch per this interval. Default 30.
    #[serde(default = "default_min_refetch", deserialize_with = "u64_or_string")]
    pub min_refetch_interval_seconds: u64,
    /// Keep the last good keys this long while the endpoint fails. Default 86400.
    #[serde(default = "default_max_stale", deserialize_with = "u64_or_string")]
    pub max_stale_seconds: u64,
    /// Optional file holding the last good JWKS, used at cold start if the
    /// provider is down. Each provider needs its own.
    #[serde(default)]
    pub cache_file: String,
}

impl Default for RawJwks {
    fn default() -> Self {
        RawJwks {
            refresh_seconds: default_refresh(),
            min_refetch_interval_seconds: default_min_refetch(),
            max_stale_seconds: default_max_stale(),
            cache_file: String::new(),
        }
    }
}

/// One place a token may be found.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTokenSource {
    /// A request header. `Authorization` expects `Bearer <jwt>` (scheme case-insensitive).
    #[serde(default)]
    pub header: Option<String>,
    /// For `header`: the scheme before the token (default `Bearer` for
    /// `Authorization`, none for other headers).
    #[serde(default)]
    pub scheme: Option<String>,
    /// A query parameter.
    #[serde(default)]
    pub query: Option<String>,
    /// A cookie.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// An upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawUpstream {
    /// Base URL, `http://` or `https://`; a path in it is prepended to the request path.
    pub url: String,
    /// TCP (and TLS) connect timeout. Default 2000.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub connect_timeout_ms: u64,
    /// Time allowed until the upstream's response headers arrive. Default 30000.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub request_timeout_ms: u64,
    /// Extra PEM CA bundle for an `https` upstream (system roots are always
    /// trusted). Watched: new contents are trusted by new connections after
    /// a reload, without a signal or a restart.
    #[serde(default)]
    pub ca_file: String,
    /// Requests in flight to this upstream at once (for HTTP/1.1, its open
    /// connections); past it 503. Default 1024.
    #[serde(
        default = "default_upstream_max_connections",
        deserialize_with = "u64_or_string"
    )]
    pub max_connections: u64,
    /// How the gateway speaks to the upstream: `http1` (default), `h2`
    /// (HTTP/2 over TLS, negotiated by ALPN; needs an `https://` url) or
    /// `h2c` (HTTP/2 in cleartext with prior knowledge; needs an `http://`
    /// url). gRPC upstreams want `h2` or `h2c`.
    #[serde(default = "default_upstream_protocol")]
    pub protocol: String,
    /// How long a pooled connection may sit unused before it is closed.
    /// Default 60000.
    #[serde(
        default = "default_upstream_idle_timeout",
        deserialize_with = "u64_or_string"
    )]
    pub idle_timeout_ms: u64,
    /// The `Host` sent to this upstream, for upstreams that route by
    /// virtual host (`host` or `host:port`). Empty (the default): the
    /// client's own; the client's is in `X-Forwarded-Host` either way.
    #[serde(default)]
    pub host: String,
}

/// A route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRoute {
    /// Name used in metrics and logs; unique.
    pub name: String,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// `jwt` (default) or `none` for a public route.
    #[serde(default)]
    pub auth: Option<String>,
    /// Who may use the route.
    #[serde(default)]
    pub allow: Option<RawAllow>,
    /// Restrict the route to these providers (names from `idps`).
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// Default upstream.
    pub upstream: String,
    /// Organization claim value → upstream, overriding `upstream`.
    #[serde(default)]
    pub organization_upstreams: BTreeMap<String, String>,
    /// Remove the matched `pathPrefix` before forwarding.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub strip_prefix: bool,
    /// Per-organization rate limit, checked once the caller is authorized
    /// (refused callers use up nothing); past it 429. Overrides the
    /// top-level `rateLimit`. Not for public routes: they have no
    /// organization to count by.
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
}

/// Request matcher.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMatch {
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix, matched on segment boundaries.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Methods; omitted: any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Host (port ignored, case-insensitive); omitted: any.
    #[serde(default)]
    pub host: Option<String>,
    /// Take paths with `;` path parameters (matrix parameters). Off by
    /// default: `;` is refused with 400, since Tomcat-style servers drop
    /// `;params` and would read the path differently than it was matched.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub allow_path_parameters: bool,
}

/// Authorization rules of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAllow {
    /// Allowed organizations; omitted: any; `"*"`: explicitly any.
    #[serde(default)]
    pub organizations: Option<Vec<String>>,
    /// Required scopes, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claim (whole name, or a JSON Pointer starting with `/`) → the values
    /// it may have (one, or a list: any of them). Every claim listed must
    /// match; an array claim matches when any element does.
    #[serde(default)]
    pub claims: BTreeMap<String, OneOrMany>,
}

/// A value or a list of values.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A list.
    Many(Vec<serde_yaml::Value>),
    /// One value.
    One(serde_yaml::Value),
}

/// A trusted organization.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOrganization {
    /// The platform's name for the organization (APK's `org1`).
    pub name: String,
}

/// Organization binding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOrganizationBinding {
    /// Header always set to the verified organization's name. Like the
    /// identity and claims headers, it must be a header of its own (see
    /// [`RawForwarding::claims_headers`]).
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter that, when present, must name the verified organization.
    #[serde(default)]
    pub query_param: Option<String>,
}

/// What is forwarded upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawForwarding {
    /// Headers set from verified claims; always removed from the incoming request.
    #[serde(default)]
    pub identity_headers: RawIdentityHeaders,
    /// Claim → header. A name starting with `/` is a JSON Pointer.
    ///
    /// Identity, claims and binding headers are each a header of their
    /// own, compared case-insensitively and with `_` read as `-` (as CGI
    /// and WSGI servers read it), and none may be a header that frames,
    /// routes or authenticates the request (`Authorization`, `Host`,
    /// `Content-Length`, `Cookie`, hop-by-hop headers) or that the gateway
    /// sets or proxies trust to describe the connection (`X-Request-Id`,
    /// `Forwarded`, `X-Real-IP`, `X-Forwarded-For`, `-Host`, `-Proto`,
    /// `-Port`, `-Prefix`, …). Other `X-Forwarded-*` names, such as
    /// `X-Forwarded-Groups`, are fine.
    #[serde(default)]
    pub claims_headers: BTreeMap<String, String>,
    /// Pass the original `Authorization` header upstream. Default true.
    #[serde(default = "default_true", deserialize_with = "bool_or_string")]
    pub forward_authorization: bool,
}

impl Default for RawForwarding {
    fn default() -> Self {
        RawForwarding {
            identity_headers: RawIdentityHeaders::default(),
            claims_headers: BTreeMap::new(),
            forward_authorization: true,
        }
    }
}

/// Identity header names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIdentityHeaders {
    /// Default `X-Forwarded-User`.
    #[serde(default = "default_user_header")]
    pub user: String,
    /// Default `X-Forwarded-Org`.
    #[serde(default = "default_org_header")]
    pub organization: String,
    /// Default `X-Forwarded-Sub`.
    #[serde(default = "default_sub_header")]
    pub subject: String,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        RawIdentityHeaders {
            user: default_user_header(),
            organization: default_org_header(),
            subject: default_sub_header(),
        }
    }
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
fn default_username_claim() -> String {
    "sub".into()
}
fn default_organization_claim() -> String {
    "org_id".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_skew() -> u64 {
    30
}
fn default_refresh() -> u64 {
    600
}
fn default_min_refetch() -> u64 {
    30
}
fn default_max_stale() -> u64 {
    86_400
}
fn default_token_sources() -> Vec<RawTokenSource> {
    vec![RawTokenSource {
        header: Some("Authorization".into()),
        scheme: None,
        query: None,
        cookie: None,
    }]
}
fn default_connect_timeout() -> u64 {
    2_000
}
fn default_request_timeout() -> u64 {
    30_000
}
fn default_true() -> bool {
    true
}
fn default_user_header() -> String {
    "X-Forwarded-User".into()
}
fn default_org_header() -> String {
    "X-Forwarded-Org".into()
}
fn default_sub_header() -> String {
    "X-Forwarded-Sub".into()
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
