//! Why a request is refused, and the one place that turns that into a
//! response. The mapping is exhaustive on purpose: a new failure cannot
//! reach a client without someone deciding its status.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// Why a token (or its absence) does not let a request through. The
/// `reason()` strings are the contract's closed set: they are the response
/// description, the log field and the `auth_failures_total{reason}` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No token in any configured source.
    #[error("missing_token")]
    MissingToken,
    /// Not a well-formed JWT (parts, base64, JSON, claim types, `crit`).
    #[error("malformed")]
    Malformed,
    /// No key verifies the signature.
    #[error("bad_signature")]
    BadSignature,
    /// The `kid` is not in the JWKS, even after a refetch.
    #[error("unknown_kid")]
    UnknownKid,
    /// `alg` is `none`, unknown, not allowed, or disagrees with the key.
    #[error("alg_not_allowed")]
    AlgNotAllowed,
    /// `exp` has passed (beyond the clock skew).
    #[error("expired")]
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the clock skew).
    #[error("not_yet_valid")]
    NotYetValid,
    /// `iss` names no configured provider (or one the route does not accept).
    #[error("wrong_issuer")]
    WrongIssuer,
    /// No `aud` matches.
    #[error("wrong_audience")]
    WrongAudience,
    /// A claim the token must carry (`exp`) is absent: the token is invalid.
    #[error("missing_claim")]
    MissingTokenClaim,
    /// The organization claim is absent where an organization is required.
    #[error("missing_claim")]
    MissingOrganization,
    /// `usernameClaim` is `email` and the token says `email_verified: false`.
    #[error("unverified_email")]
    UnverifiedEmail,
    /// The organization may not use this route, or is not a trusted one.
    #[error("organization_denied")]
    OrganizationDenied,
    /// The request names another organization than the token's.
    #[error("organization_mismatch")]
    OrganizationMismatch,
    /// A claim does not have a value the route's `allow.claims` accepts.
    #[error("claim_mismatch")]
    ClaimMismatch,
    /// Required scopes are missing.
    #[error("insufficient_scope")]
    InsufficientScope {
        /// Every scope the route requires, for `WWW-Authenticate`.
        required: Vec<String>,
    },
    /// Keys were never loaded (or are older than `maxStaleSeconds`): fail closed.
    #[error("jwks_unavailable")]
    JwksUnavailable,
}

impl AuthFailure {
    /// The closed-set reason string.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::UnknownKid => "unknown_kid",
            AuthFailure::AlgNotAllowed => "alg_not_allowed",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::MissingTokenClaim | AuthFailure::MissingOrganization => "missing_claim",
            AuthFailure::UnverifiedEmail => "unverified_email",
            AuthFailure::OrganizationDenied => "organization_denied",
            AuthFailure::OrganizationMismatch => "organization_mismatch",
            AuthFailure::InsufficientScope { .. } => "insufficient_scope",
            AuthFailure::ClaimMismatch => "claim_mismatch",
            AuthFailure::JwksUnavailable => "jwks_unavailable",
        }
    }

    /// Every reason, so metrics can publish zeros before the first failure.
    pub const ALL_REASONS: [&'static str; 16] = [
        "missing_token",
        "malformed",
        "bad_signature",
        "unknown_kid",
        "alg_not_allowed",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "unverified_email",
        "organization_denied",
        "organization_mismatch",
        "insufficient_scope",
        "claim_mismatch",
        "jwks_unavailable",
    ];
}

/// Which way an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Could not connect (refused, unreachable, TLS handshake, connect timeout).
    Connect,
    /// Connected, then the exchange broke (reset, protocol error).
    Reset,
    /// No response headers within `requestTimeoutMs`.
    Timeout,
    /// The upstream's `maxConnections` are all in use.
    Saturated,
    /// Not the upstream's doing: the client's body passed
    /// `limits.maxRequestBodyBytes` while it was being sent.
    BodyTooLarge,
    /// Not the upstream's doing either: the client stopped sending its body
    /// for `limits.requestBodyTimeoutMs`.
    BodyTimeout,
}

impl UpstreamFailure {
    /// The `upstream_errors_total{kind}` label.
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Saturated => "saturated",
            UpstreamFailure::BodyTooLarge => "body_too_large",
            UpstreamFailure::BodyTimeout => "body_timeout",
        }
    }
}

/// Everything the gateway answers by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Authentication or authorization failed.
    #[error("{0}")]
    Auth(AuthFailure),
    /// No route takes the request.
    #[error("no route matched")]
    NoRoute,
    /// The request cannot be handled as sent.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The upstream failed.
    #[error("upstream {0:?}")]
    Upstream(UpstreamFailure),
    /// Shutting down: not taking new requests.
    #[error("draining")]
    Draining,
    /// The organization's bucket on the route is empty. Not an auth
    /// failure: the caller was authorized, just too often.
    #[error("rate limited, retry after {retry_after} s")]
    RateLimited {
        /// Whole seconds until a request would pass (at least 1).
        retry_after: u64,
    },
}

impl From<AuthFailure> for GateError {
    fn from(f: AuthFailure) -> Self {
        GateError::Auth(f)
    }
}

/// An error with its causes, `outer: inner: root`, so a log line or an
/// exit message says why ("client error (Connect)" alone does not).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        let mut cause = Some(self.0);
        while let Some(c) = cause {
            write!(f, "{sep}{c}")?;
            sep = ": ";
            cause = c.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a string.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    Chain(e).to_string()
}

/// A response produced by the gateway itself.
pub type ErrorResponse = Response<Full<Bytes>>;

impl GateError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            GateError::Auth(f) => match f {
                AuthFailure::MissingToken
                | AuthFailure::Malformed
                | AuthFailure::BadSignature
                | AuthFailure::UnknownKid
                | AuthFailure::AlgNotAllowed
                | AuthFailure::Expired
                | AuthFailure::NotYetValid
                | AuthFailure::WrongIssuer
                | AuthFailure::WrongAudience
                | AuthFailure::MissingTokenClaim => StatusCode::UNAUTHORIZED,
                AuthFailure::MissingOrganization
                | AuthFailure::UnverifiedEmail
                | AuthFailure::OrganizationDenied
                | AuthFailure::OrganizationMismatch
                | AuthFailure::ClaimMismatch
                | AuthFailure::InsufficientScope { .. } => StatusCode::FORBIDDEN,
                AuthFailure::JwksUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
            GateError::NoRoute => StatusCode::NOT_FOUND,
            GateError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GateError::Upstream(UpstreamFailure::Connect | UpstreamFailure::Reset) => {
                StatusCode::BAD_GATEWAY
            }
            GateError::Upstream(UpstreamFailure::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            GateError::Upstream(UpstreamFailure::Saturated) => StatusCode::SERVICE_UNAVAILABLE,
            GateError::Upstream(UpstreamFailure::BodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            GateError::Upstream(UpstreamFailure::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
            GateError::Draining => StatusCode::SERVICE_UNAVAILABLE,
            GateError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The body's `error` and `error_description`.
    fn codes(&self) -> (&'static str, &'static str) {
        match self {
            GateError::Auth(AuthFailure::MissingToken) => ("unauthorized", "missing_token"),
            GateError::Auth(f @ AuthFailure::InsufficientScope { .. }) => {
                ("insufficient_scope", f.reason())
            }
            GateError::Auth(f) => match self.status() {
                StatusCode::UNAUTHORIZED => ("invalid_token", f.reason()),
                StatusCode::FORBIDDEN => ("forbidden", f.reason()),
                _ => ("temporarily_unavailable", f.reason()),
            },
            GateError::NoRoute => ("not_found", "no route matches this request"),
            GateError::BadRequest(why) => ("bad_request", why),
            GateError::Upstream(UpstreamFailure::Connect) => {
                ("bad_gateway", "the upstream could not be reached")
            }
            GateError::Upstream(UpstreamFailure::Reset) => {
                ("bad_gateway", "the upstream connection failed")
            }
            GateError::Upstream(UpstreamFailure::Timeout) => {
                ("gateway_timeout", "the upstream did not answer in time")
            }
            GateError::Upstream(UpstreamFailure::Saturated) => (
                "temporarily_unavailable",
                "the upstream has no free connection",
            ),
            GateError::Upstream(UpstreamFailure::BodyTooLarge) => (
                "payload_too_large",
                "the request body is larger than this gateway accepts",
            ),
            GateError::Upstream(UpstreamFailure::BodyTimeout) => {
                ("request_timeout", "the request body stopped arriving")
            }
            GateError::Draining => ("temporarily_unavailable", "draining"),
            GateError::RateLimited { .. } => (
                "rate_limited",
                "this organization is over the route's rate limit",
            ),
        }
    }

    /// The auth failure reason, if this is one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            GateError::Auth(f) => Some(f.reason()),
            _ => None,
        }
    }

    /// Builds the response: JSON body, `WWW-Authenticate` per RFC 6750,
    /// `Retry-After` on 503 and 429.
    pub fn to_response(&self, request_id: &str) -> ErrorResponse {
        let status = self.status();
        let (error, description) = self.codes();
        let body = serde_json::json!({
            "error": error,
            "error_description": description,
            "request_id": request_id,
        });
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self.www_authenticate() {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        if let GateError::RateLimited { retry_after } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(crate::headers::X_REQUEST_ID, v);
        }
        resp
    }

    fn www_authenticate(&self) -> Option<HeaderValue> {
        let GateError::Auth(f) = self else {
            return None;
        };
        let value = match (f, self.status()) {
            // RFC 6750 §3.1: no error code when the request had no token.
            (AuthFailure::MissingToken, _) => "Bearer realm=\"idp-gate\"".to_string(),
            (AuthFailure::InsufficientScope { required }, _) => format!(
                "Bearer realm=\"idp-gate\", error=\"insufficient_scope\", error_description=\"insufficient_scope\", scope=\"{}\"",
                required.join(" ")
            ),
            (_, StatusCode::UNAUTHORIZED) => format!(
                "Bearer realm=\"idp-gate\", error=\"invalid_token\", error_description=\"{}\"",
                f.reason()
            ),
            (_, StatusCode::FORBIDDEN) => format!(
                "Bearer realm=\"idp-gate\", error=\"insufficient_scope\", error_description=\"{}\"",
                f.reason()
            ),
            _ => return None,
        };
        HeaderValue::from_str(&value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(resp: &ErrorResponse, name: header::HeaderName) -> Option<String> {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn every_reason_is_listed_once() {
        let all = [
            AuthFailure::MissingToken,
            AuthFailure::Malformed,
            AuthFailure::BadSignature,
            AuthFailure::UnknownKid,
            AuthFailure::AlgNotAllowed,
            AuthFailure::Expired,
            AuthFailure::NotYetValid,
            AuthFailure::WrongIssuer,
            AuthFailure::WrongAudience,
            AuthFailure::MissingTokenClaim,
            AuthFailure::MissingOrganization,
            AuthFailure::UnverifiedEmail,
            AuthFailure::OrganizationDenied,
            AuthFailure::OrganizationMismatch,
            AuthFailure::InsufficientScope { required: vec![] },
            AuthFailure::ClaimMismatch,
            AuthFailure::JwksUnavailable,
        ];
        for f in &all {
            assert!(AuthFailure::ALL_REASONS.contains(&f.reason()), "{f:?}");
            assert_eq!(f.to_string(), f.reason());
        }
    }

    #[test]
    fn missing_token_has_no_error_code() {
        let r = GateError::Auth(AuthFailure::MissingToken).to_response("rid");
        assert_eq!(r.status(), 401);
        assert_eq!(
            header(&r, header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"idp-gate\""
        );
    }

    #[test]
    fn invalid_token_names_the_reason() {
        let r = GateError::Auth(AuthFailure::Expired).to_response("rid");
        assert_eq!(r.status(), 401);
        let h = header(&r, header::WWW_AUTHENTICATE).unwrap();
        assert!(h.contains("error=\"invalid_token\""), "{h}");
        assert!(h.contains("error_description=\"expired\""), "{h}");
    }

    #[test]
    fn scopes_are_403_with_the_required_scope() {
        let f = AuthFailure::InsufficientScope {
            required: vec!["a:b".into(), "c".into()],
        };
        let r = GateError::Auth(f).to_response("rid");
        assert_eq!(r.status(), 403);
        let h = header(&r, header::WWW_AUTHENTICATE).unwrap();
        assert!(h.contains("error=\"insufficient_scope\""), "{h}");
        assert!(h.contains("scope=\"a:b c\""), "{h}");
    }

    #[test]
    fn statuses_follow_the_contract() {
        use UpstreamFailure::*;
        let cases = [
            (GateError::Auth(AuthFailure::OrganizationDenied), 403),
            (GateError::Auth(AuthFailure::MissingOrganization), 403),
            (GateError::Auth(AuthFailure::MissingTokenClaim), 401),
            (GateError::Auth(AuthFailure::JwksUnavailable), 503),
            (GateError::NoRoute, 404),
            (GateError::BadRequest("x"), 400),
            (GateError::Upstream(Connect), 502),
            (GateError::Upstream(Reset), 502),
            (GateError::Upstream(Timeout), 504),
            (GateError::Upstream(Saturated), 503),
            (GateError::Upstream(BodyTooLarge), 413),
            (GateError::Upstream(BodyTimeout), 408),
            (GateError::Auth(AuthFailure::UnverifiedEmail), 403),
            (GateError::Draining, 503),
            (GateError::RateLimited { retry_after: 3 }, 429),
        ];
        for (e, status) in cases {
            let r = e.to_response("rid");
            assert_eq!(r.status(), status, "{e:?}");
            assert_eq!(
                header(&r, header::CONTENT_TYPE).as_deref(),
                Some("application/json")
            );
            if status == 503 || status == 429 {
                assert!(header(&r, header::RETRY_AFTER).is_some());
            }
        }
    }

    #[test]
    fn rate_limited_is_429_with_its_wait_and_no_auth_reason() {
        let e = GateError::RateLimited { retry_after: 7 };
        let r = e.to_response("rid");
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, header::RETRY_AFTER).as_deref(), Some("7"));
        assert_eq!(header(&r, header::WWW_AUTHENTICATE), None);
        assert_eq!(e.reason(), None);
        let (error, description) = e.codes();
        assert_eq!(error, "rate_limited");
        assert!(!description.is_empty());
    }
}
