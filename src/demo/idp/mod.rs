//! A development OpenID provider shaped like Auth0: discovery, JWKS and a
//! token endpoint with the `client_credentials` and `password` grants,
//! issuing RS256/ES256/EdDSA tokens with Auth0's claim layout (`org_id`,
//! `scope`, `permissions`, `gty`, ...).
//!
//! Users and client secrets live in memory; this is for demos and tests.
//!
//! [`serve`] routes each request; `request` reads a token request, `grant`
//! decides what it gets, `discovery` writes the provider's metadata and
//! `error` the OAuth refusals.

mod discovery;
mod error;
mod grant;
mod request;

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::ALLOW;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use super::keys::KeyRing;
use super::{json_response, run_server};

/// Largest token request body accepted; larger ones get 413.
pub const MAX_TOKEN_BODY: usize = 64 * 1024;

/// How long caches may keep discovery and JWKS responses. Short, so that a
/// key rotation in a demo shows up quickly.
const PUBLIC_CACHE_CONTROL: &str = "public, max-age=15";

/// Configuration of the development provider.
#[derive(Debug, Clone)]
pub struct DevIdpSettings {
    /// Issuer URL, e.g. `http://127.0.0.1:4000/`. Auth0 issuers end with a
    /// slash, and the endpoints are served under the issuer's path.
    pub issuer: String,
    /// The API identifier that access tokens are issued for.
    pub api_audience: String,
    /// Machine clients (`client_credentials`); they may also use `password`.
    pub clients: Vec<DevClient>,
    /// Users for the `password` grant.
    pub users: Vec<DevUser>,
    /// Lifetime of issued tokens (`exp - iat`, `expires_in`).
    pub token_ttl: Duration,
}

/// A registered client application.
#[derive(Clone, Default)]
pub struct DevClient {
    /// Public client identifier.
    pub client_id: String,
    /// Shared secret. An empty secret never authenticates.
    pub client_secret: String,
    /// `org_id` for `client_credentials` tokens when the request names none.
    pub organization: Option<String>,
    /// Scopes the client may be granted; all of them when none are asked for.
    pub scopes: Vec<String>,
}

/// A user who can sign in with the `password` grant.
#[derive(Clone, Default)]
pub struct DevUser {
    /// Login name; the email also works as login (case-insensitively).
    pub username: String,
    /// Password. An empty password never authenticates.
    pub password: String,
    /// `email` claim.
    pub email: String,
    /// `sub` claim, e.g. `auth0|abc123`.
    pub sub: String,
    /// Organisation ids the user belongs to; the first is the default.
    pub organizations: Vec<String>,
    /// API scopes the user may be granted.
    pub scopes: Vec<String>,
    /// `permissions` claim of the user's access tokens.
    pub permissions: Vec<String>,
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("organization", &self.organization)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl fmt::Debug for DevUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevUser")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("email", &self.email)
            .field("sub", &self.sub)
            .field("organizations", &self.organizations)
            .field("scopes", &self.scopes)
            .field("permissions", &self.permissions)
            .finish()
    }
}

struct Idp {
    settings: Arc<DevIdpSettings>,
    keys: Arc<KeyRing>,
    discovery_path: String,
    jwks_path: String,
    token_path: String,
}

impl Idp {
    /// An absolute URL under the issuer.
    fn url(&self, relative: &str) -> String {
        let issuer = &self.settings.issuer;
        if issuer.ends_with('/') {
            format!("{issuer}{relative}")
        } else {
            format!("{issuer}/{relative}")
        }
    }
}

/// Serves the provider on `listener` (HTTP/1.1) until `shutdown` resolves:
///
/// * `GET {issuer}.well-known/openid-configuration`
/// * `GET {issuer}.well-known/jwks.json` (every key in `keys`)
/// * `POST {issuer}oauth/token`
///
/// Fails at once with `InvalidInput` if `settings.issuer` is not a URL.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<DevIdpSettings>,
    keys: Arc<KeyRing>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let issuer = url::Url::parse(&settings.issuer).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("dev idp issuer {:?} is not a URL: {err}", settings.issuer),
        )
    })?;
    let mut base = issuer.path().to_owned();
    if !base.ends_with('/') {
        base.push('/');
    }
    let idp = Arc::new(Idp {
        discovery_path: format!("{base}.well-known/openid-configuration"),
        jwks_path: format!("{base}.well-known/jwks.json"),
        token_path: format!("{base}oauth/token"),
        settings,
        keys,
    });
    let handler = move |req| handle(Arc::clone(&idp), req);
    run_server(listener, handler, shutdown).await
}

async fn handle(idp: Arc<Idp>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    if path == idp.discovery_path {
        if !readable {
            return method_not_allowed("GET, HEAD");
        }
        return cacheable(json_response(StatusCode::OK, &discovery::document(&idp)));
    }
    if path == idp.jwks_path {
        if !readable {
            return method_not_allowed("GET, HEAD");
        }
        return cacheable(json_response(StatusCode::OK, &idp.keys.jwks()));
    }
    if path == idp.token_path {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let mut resp = match grant::token(&idp, req).await {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(err) => {
                tracing::debug!(error = err.error, status = %err.status, "dev idp refused token request");
                err.into_response()
            }
        };
        resp.headers_mut()
            .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        return resp;
    }
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "error_description": "no such endpoint"}),
    )
}

fn cacheable(mut resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static(PUBLIC_CACHE_CONTROL),
    );
    resp
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method_not_allowed", "error_description": format!("use {allow}")}),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}
