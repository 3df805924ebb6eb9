//! A development OpenID provider shaped like Auth0: discovery, JWKS and a
//! token endpoint with the `client_credentials` and `password` grants,
//! issuing RS256/ES256/EdDSA tokens with Auth0's claim layout (`org_id`,
//! `scope`, `permissions`, `gty`, ...).
//!
//! Users and client secrets live in memory; this is for demos and tests.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::keys::KeyRing;
use super::{json_response, run_server, unix_seconds};

/// Largest token request body accepted; larger ones get 413.
pub const MAX_TOKEN_BODY: usize = 64 * 1024;

/// How long caches may keep discovery and JWKS responses. Short, so that a
/// key rotation in a demo shows up quickly.
const PUBLIC_CACHE_CONTROL: &str = "public, max-age=15";

/// Scopes that shape the OpenID response rather than the API grant.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Auth0's grant type for the password grant with a `realm`; the realm is
/// ignored here.
const PASSWORD_REALM_GRANT: &str = "http://auth0.com/oauth/grant-type/password-realm";

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
        return cacheable(json_response(StatusCode::OK, &discovery(&idp)));
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
        let mut resp = match token(&idp, req).await {
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

fn discovery(idp: &Idp) -> Value {
    let settings = &idp.settings;
    let algs: BTreeSet<String> = idp
        .keys
        .keys()
        .iter()
        .map(|k| format!("{:?}", k.alg()))
        .collect();
    let scopes: BTreeSet<&str> = OIDC_SCOPES
        .into_iter()
        .chain(
            settings
                .clients
                .iter()
                .flat_map(|c| c.scopes.iter().map(String::as_str)),
        )
        .chain(
            settings
                .users
                .iter()
                .flat_map(|u| u.scopes.iter().map(String::as_str)),
        )
        .collect();
    json!({
        "issuer": settings.issuer,
        "jwks_uri": idp.url(".well-known/jwks.json"),
        "token_endpoint": idp.url("oauth/token"),
        "grant_types_supported": ["client_credentials", "password", PASSWORD_REALM_GRANT],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": scopes,
        "claims_supported": [
            "aud", "email", "email_verified", "exp", "iat", "iss", "name", "org_id", "sub",
        ],
    })
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    fn access_denied(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", description)
    }

    fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be signed",
        )
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = json_response(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"dev-idp\""),
            );
        }
        resp
    }
}

type Params = HashMap<String, String>;

async fn token(idp: &Idp, req: Request<Incoming>) -> Result<Value, OAuthError> {
    let (parts, body) = req.into_parts();
    let body = read_capped(body, &parts.headers).await?;
    let params = parse_params(&parts.headers, &body)?;
    let (client_id, client_secret) = client_credentials_of(&parts.headers, &params)?;
    let client = authenticate_client(&idp.settings, &client_id, &client_secret)?;
    let grant = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("missing grant_type"))?;
    let issued = match grant.as_str() {
        "client_credentials" => client_credentials_grant(idp, client, &params),
        "password" | PASSWORD_REALM_GRANT => password_grant(idp, client, &params),
        _ => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported grant types: client_credentials, password",
        )),
    }?;
    tracing::info!(client_id = %client.client_id, grant_type = %grant, "dev idp issued a token");
    Ok(issued)
}

async fn read_capped(body: Incoming, headers: &HeaderMap) -> Result<Bytes, OAuthError> {
    let too_large = || {
        OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("request body is larger than {MAX_TOKEN_BODY} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_TOKEN_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_TOKEN_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(OAuthError::invalid_request(
            "request body could not be read",
        )),
    }
}

/// Parses a form or JSON body into single-valued parameters. Empty values
/// count as absent and repeats are refused (RFC 6749 §3.1).
fn parse_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let media_type = headers.get(http::header::CONTENT_TYPE).map(|v| {
        let v = v.to_str().unwrap_or_default();
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media_type.as_deref() {
        // curl -d without -H sends the form type anyway; no header at all is
        // most likely an empty body, which fails on grant_type below.
        None | Some("application/x-www-form-urlencoded") => parse_form(body),
        Some("application/json") => parse_json(body),
        Some(_) => Err(OAuthError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "use application/x-www-form-urlencoded or application/json",
        )),
    }
}

fn parse_form(body: &[u8]) -> Result<Params, OAuthError> {
    let mut params = Params::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if value.is_empty() {
            continue;
        }
        if params.contains_key(name.as_ref()) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} is repeated"
            )));
        }
        params.insert(name.into_owned(), value.into_owned());
    }
    Ok(params)
}

fn parse_json(body: &[u8]) -> Result<Params, OAuthError> {
    let object: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| OAuthError::invalid_request("body is not a JSON object"))?;
    let mut params = Params::new();
    for (name, value) in object {
        let value = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name} must be a string"
                )));
            }
        };
        if !value.is_empty() {
            params.insert(name, value);
        }
    }
    Ok(params)
}

/// The client id and secret from HTTP Basic or from the body; using both
/// ways at once is refused (RFC 6749 §2.3).
fn client_credentials_of(
    headers: &HeaderMap,
    params: &Params,
) -> Result<(String, String), OAuthError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let (id, secret) = parse_basic(value)?;
        if params.contains_key("client_secret") {
            return Err(OAuthError::invalid_request(
                "use only one client authentication method",
            ));
        }
        if params
            .get("client_id")
            .is_some_and(|body_id| *body_id != id)
        {
            return Err(OAuthError::invalid_request(
                "client_id does not match the Authorization header",
            ));
        }
        return Ok((id, secret));
    }
    match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        _ => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
    }
}

fn parse_basic(value: &HeaderValue) -> Result<(String, String), OAuthError> {
    let malformed = || OAuthError::invalid_client("malformed Basic credentials");
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported client authentication scheme",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim().as_bytes())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok((percent_decode(id), percent_decode(secret)))
}

/// RFC 6749 §2.3.1 has clients form-encode id and secret before Basic.
/// Only `%XX` is decoded, not `+` as form decoding would: few clients
/// encode at all, and a literal `+` in a secret is likelier than an encoded
/// space. Bad escapes stay as they are and bad UTF-8 becomes U+FFFD.
fn percent_decode(input: &str) -> String {
    percent_encoding::percent_decode_str(input)
        .decode_utf8_lossy()
        .into_owned()
}

/// Compares secrets in constant time. Hashing first makes the comparison
/// independent of the lengths too, which `verify_slices_are_equal` is not.
fn secret_matches(given: &str, expected: &str) -> bool {
    let given = digest(&SHA256, given.as_bytes());
    let wanted = digest(&SHA256, expected.as_bytes());
    verify_slices_are_equal(given.as_ref(), wanted.as_ref()).is_ok() && !expected.is_empty()
}

/// Stands in for the secret of an unknown client or user so that a miss
/// costs the same as a wrong secret.
const NO_SUCH_SECRET: &str = "\u{0}no such client or user";

fn authenticate_client<'a>(
    settings: &'a DevIdpSettings,
    client_id: &str,
    secret: &str,
) -> Result<&'a DevClient, OAuthError> {
    let client = settings.clients.iter().find(|c| c.client_id == client_id);
    let expected = client.map_or(NO_SUCH_SECRET, |c| c.client_secret.as_str());
    let matches = secret_matches(secret, expected);
    match client {
        Some(client) if matches => Ok(client),
        _ => Err(OAuthError::invalid_client("client authentication failed")),
    }
}

fn check_audience(idp: &Idp, params: &Params) -> Result<(), OAuthError> {
    match params.get("audience") {
        Some(aud) if *aud != idp.settings.api_audience => Err(OAuthError::access_denied(format!(
            "Service not found: {aud}"
        ))),
        _ => Ok(()),
    }
}

/// Splits a `scope` parameter, dropping repeats but keeping the order.
fn split_scopes(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split_whitespace() {
        if !out.iter().any(|seen| seen == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// `iat`, `exp` and the common Auth0 claims of an access token.
fn access_claims(
    idp: &Idp,
    client: &DevClient,
    sub: &str,
    aud: Value,
    gty: &str,
) -> Map<String, Value> {
    let iat = unix_seconds(SystemTime::now());
    let exp = iat.saturating_add(idp.settings.token_ttl.as_secs());
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(idp.settings.issuer));
    claims.insert("sub".into(), json!(sub));
    claims.insert("aud".into(), aud);
    claims.insert("azp".into(), json!(client.client_id));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert("gty".into(), json!(gty));
    claims
}

fn sign(idp: &Idp, claims: Map<String, Value>) -> Result<String, OAuthError> {
    idp.keys
        .active()
        .sign(&Value::Object(claims))
        .map_err(|err| {
            tracing::error!(error = %err, "dev idp could not sign a token");
            OAuthError::server_error()
        })
}

fn token_response(idp: &Idp, access_token: String, id_token: Option<String>, scope: &str) -> Value {
    let mut body = Map::new();
    body.insert("access_token".into(), json!(access_token));
    if let Some(id_token) = id_token {
        body.insert("id_token".into(), json!(id_token));
    }
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("expires_in".into(), json!(idp.settings.token_ttl.as_secs()));
    if !scope.is_empty() {
        body.insert("scope".into(), json!(scope));
    }
    Value::Object(body)
}

fn client_credentials_grant(
    idp: &Idp,
    client: &DevClient,
    params: &Params,
) -> Result<Value, OAuthError> {
    check_audience(idp, params)?;
    let granted = match params.get("scope") {
        None => client.scopes.clone(),
        Some(scope) => {
            let requested = split_scopes(scope);
            let missing: Vec<&str> = requested
                .iter()
                .filter(|s| !client.scopes.contains(s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(OAuthError::access_denied(format!(
                    "Client has not been granted scopes: {}",
                    missing.join(" ")
                )));
            }
            requested
        }
    };
    let scope = granted.join(" ");
    let org = params.get("organization").or(client.organization.as_ref());

    let sub = format!("{}@clients", client.client_id);
    let mut claims = access_claims(
        idp,
        client,
        &sub,
        json!(idp.settings.api_audience),
        "client-credentials",
    );
    if let Some(org) = org {
        claims.insert("org_id".into(), json!(org));
    }
    if !scope.is_empty() {
        claims.insert("scope".into(), json!(scope));
    }
    claims.insert("permissions".into(), json!(granted));
    let access_token = sign(idp, claims)?;
    Ok(token_response(idp, access_token, None, &scope))
}

fn password_grant(idp: &Idp, client: &DevClient, params: &Params) -> Result<Value, OAuthError> {
    let username = params
        .get("username")
        .ok_or_else(|| OAuthError::invalid_request("missing username"))?;
    let password = params
        .get("password")
        .ok_or_else(|| OAuthError::invalid_request("missing password"))?;
    check_audience(idp, params)?;

    let user = idp.settings.users.iter().find(|u| {
        u.username == *username || (!u.email.is_empty() && u.email.eq_ignore_ascii_case(username))
    });
    let expected = user.map_or(NO_SUCH_SECRET, |u| u.password.as_str());
    let matches = secret_matches(password, expected);
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(OAuthError::invalid_grant("Wrong email or password.")),
    };

    // Membership is checked only after the password, so that it reveals
    // nothing to someone who does not know it.
    let org = match params.get("organization") {
        Some(org) if user.organizations.contains(org) => Some(org.clone()),
        Some(_) => {
            return Err(OAuthError::access_denied(
                "user is not a member of the organization",
            ));
        }
        None => user.organizations.first().cloned(),
    };

    let (oidc, api): (Vec<String>, Vec<String>) = match params.get("scope") {
        Some(scope) => {
            let requested = split_scopes(scope);
            let oidc = requested
                .iter()
                .filter(|s| OIDC_SCOPES.contains(&s.as_str()))
                .cloned()
                .collect();
            // Like Auth0, scopes the user may not have are dropped, not refused.
            let api = requested
                .into_iter()
                .filter(|s| user.scopes.contains(s))
                .collect();
            (oidc, api)
        }
        None => (Vec::new(), user.scopes.clone()),
    };
    let wants_id_token = oidc.iter().any(|s| s == "openid");
    let scope = oidc
        .iter()
        .chain(api.iter())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");

    let aud = json!([idp.settings.api_audience, idp.url("userinfo")]);
    let mut claims = access_claims(idp, client, &user.sub, aud, "password");
    if let Some(org) = &org {
        claims.insert("org_id".into(), json!(org));
    }
    if !scope.is_empty() {
        claims.insert("scope".into(), json!(scope));
    }
    claims.insert("permissions".into(), json!(user.permissions));
    claims.insert("email".into(), json!(user.email));
    let iat = claims.get("iat").cloned().unwrap_or(Value::Null);
    let exp = claims.get("exp").cloned().unwrap_or(Value::Null);
    let access_token = sign(idp, claims)?;

    let id_token = if wants_id_token {
        let mut id_claims = Map::new();
        id_claims.insert("iss".into(), json!(idp.settings.issuer));
        id_claims.insert("sub".into(), json!(user.sub));
        id_claims.insert("aud".into(), json!(client.client_id));
        id_claims.insert("iat".into(), iat);
        id_claims.insert("exp".into(), exp);
        id_claims.insert("email".into(), json!(user.email));
        id_claims.insert("email_verified".into(), json!(true));
        // Auth0 database users get their email as name by default.
        id_claims.insert("name".into(), json!(user.email));
        if let Some(org) = &org {
            id_claims.insert("org_id".into(), json!(org));
        }
        Some(sign(idp, id_claims)?)
    } else {
        None
    };
    Ok(token_response(idp, access_token, id_token, &scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<Params, OAuthError> {
        parse_form(body.as_bytes())
    }

    #[test]
    fn form_parsing_decodes_and_refuses_repeats() {
        let p = form("grant_type=password&username=a%40b.c&scope=openid+read%3Aitems&x=").unwrap();
        assert_eq!(p["username"], "a@b.c");
        assert_eq!(p["scope"], "openid read:items");
        assert!(!p.contains_key("x"), "empty values count as absent");
        assert_eq!(form("a=1&a=2").unwrap_err().error, "invalid_request");
        assert!(form("%ff%fe=%zz&&=&==").is_ok());
    }

    #[test]
    fn json_parsing_accepts_scalars_only() {
        let p = parse_json(br#"{"grant_type":"password","n":5,"b":true,"z":null,"e":""}"#).unwrap();
        assert_eq!(p["n"], "5");
        assert_eq!(p["b"], "true");
        assert!(!p.contains_key("z") && !p.contains_key("e"));
        assert!(parse_json(br#"{"scope":["a"]}"#).is_err());
        assert!(parse_json(b"[1]").is_err());
        assert!(parse_json(b"\xff").is_err());
    }

    #[test]
    fn content_type_selects_parser() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(parse_params(&headers, br#"{"a":"b"}"#).unwrap()["a"], "b");
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        assert_eq!(
            parse_params(&headers, b"a=b").unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn basic_credentials_are_percent_decoded() {
        let value =
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("my%20app:s3cr%3At+x")))
                .unwrap();
        assert_eq!(
            parse_basic(&value).unwrap(),
            ("my app".to_owned(), "s3cr:t+x".to_owned())
        );
        for bad in ["Basic", "Basic !!!", "Bearer abc", "Basic Zm9v"] {
            let err = parse_basic(&HeaderValue::from_static(bad)).unwrap_err();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED, "{bad}");
        }
    }

    #[test]
    fn percent_decode_leaves_bad_escapes_alone() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%4g%41"), "%4gA");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn secrets_compare_exactly_and_empty_never_matches() {
        assert!(secret_matches("abc", "abc"));
        assert!(!secret_matches("abc", "abd"));
        assert!(!secret_matches("abc", "abcd"));
        assert!(!secret_matches("", ""));
    }

    #[test]
    fn scopes_are_split_and_deduplicated() {
        assert_eq!(split_scopes("  a b\ta  c "), ["a", "b", "c"]);
    }
}
