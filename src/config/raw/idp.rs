//! Identity providers as written: `idp`, each entry of `idps`, their JWKS
//! cache and their token sources.

use serde::Deserialize;

use super::{bool_or_string, u64_or_string};
use crate::secret::Secret;

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
