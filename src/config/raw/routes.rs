//! Upstreams, routes and what is forwarded to them, as written:
//! `upstreams`, `routes` (with their matchers, `allow` rules and rate
//! limits), `organizationBinding` and `forwarding`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{bool_or_string, optional_u64_or_string, u64_or_string};

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

fn default_upstream_max_connections() -> u64 {
    1024
}
fn default_upstream_protocol() -> String {
    "http1".into()
}
fn default_upstream_idle_timeout() -> u64 {
    60_000
}
fn default_connect_timeout() -> u64 {
    2_000
}
fn default_request_timeout() -> u64 {
    30_000
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
    /// Default upstream. Required when the proxy listens (`listen` is not
    /// empty); a configuration that only decides (the tower layer) needs
    /// none.
    #[serde(default)]
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
