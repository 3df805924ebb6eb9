//! Offline minting of Auth0-shaped access tokens, for trying the gateway
//! without running a provider at all.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::keys::{KeyError, SigningKey};
use super::unix_seconds;

/// What to put in a minted token.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    /// `iss`, e.g. `https://tenant.eu.auth0.com/` (Auth0 keeps the slash).
    pub issuer: String,
    /// `aud`: a string when there is one entry, an array when more, absent
    /// when empty.
    pub audience: Vec<String>,
    /// `org_id`, absent when `None`.
    pub org: Option<String>,
    /// `sub`; also `email` when it contains `@`.
    pub user: String,
    /// `scope` (space-joined, absent when empty) and `permissions` (array).
    pub scopes: Vec<String>,
    /// `exp - iat`.
    pub ttl: Duration,
    /// Merged in last, so they override the generated claims; that is how
    /// expired, foreign-issuer or otherwise broken tokens are made.
    pub extra_claims: Map<String, Value>,
}

/// Signs the claims of [`claims_at`] taken at the current time.
pub fn mint(key: &SigningKey, req: &MintRequest) -> Result<String, KeyError> {
    let claims = claims_at(req, SystemTime::now())?;
    key.sign(&Value::Object(claims))
}

/// The claims [`mint`] signs, with `iat = now` and a fresh UUIDv4 `jti`.
pub fn claims_at(req: &MintRequest, now: SystemTime) -> Result<Map<String, Value>, KeyError> {
    let iat = unix_seconds(now);
    let exp = iat
        .checked_add(req.ttl.as_secs())
        .ok_or_else(|| KeyError::Claims("ttl too large".to_owned()))?;

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(req.issuer));
    claims.insert("sub".into(), json!(req.user));
    match req.audience.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    if let Some(org) = &req.org {
        claims.insert("org_id".into(), json!(org));
    }
    if !req.scopes.is_empty() {
        claims.insert("scope".into(), json!(req.scopes.join(" ")));
    }
    claims.insert("permissions".into(), json!(req.scopes));
    if req.user.contains('@') {
        claims.insert("email".into(), json!(req.user));
    }
    for (name, value) in &req.extra_claims {
        claims.insert(name.clone(), value.clone());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn request() -> MintRequest {
        MintRequest {
            issuer: "https://tenant.example/".into(),
            audience: vec!["https://api.example/".into()],
            org: Some("org_abc".into()),
            user: "alice@example.com".into(),
            scopes: vec!["read:items".into(), "write:items".into()],
            ttl: Duration::from_secs(600),
            extra_claims: Map::new(),
        }
    }

    #[test]
    fn claims_are_auth0_shaped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut claims = claims_at(&request(), now).unwrap();
        let jti = claims.remove("jti").unwrap();
        let jti = uuid::Uuid::parse_str(jti.as_str().unwrap()).unwrap();
        assert_eq!(jti.get_version_num(), 4);
        assert_eq!(
            Value::Object(claims),
            json!({
                "iss": "https://tenant.example/",
                "sub": "alice@example.com",
                "aud": "https://api.example/",
                "iat": 1_700_000_000u64,
                "exp": 1_700_000_600u64,
                "org_id": "org_abc",
                "scope": "read:items write:items",
                "permissions": ["read:items", "write:items"],
                "email": "alice@example.com",
            })
        );
    }

    #[test]
    fn audience_shapes_and_optional_claims() {
        let mut req = request();
        req.audience.push("https://tenant.example/userinfo".into());
        req.org = None;
        req.user = "svc".into();
        req.scopes.clear();
        let claims = claims_at(&req, SystemTime::now()).unwrap();
        assert_eq!(
            claims["aud"],
            json!(["https://api.example/", "https://tenant.example/userinfo"])
        );
        assert!(!claims.contains_key("org_id"));
        assert!(!claims.contains_key("email"));
        assert!(!claims.contains_key("scope"));
        assert_eq!(claims["permissions"], json!([]));

        req.audience.clear();
        assert!(
            !claims_at(&req, SystemTime::now())
                .unwrap()
                .contains_key("aud")
        );
    }

    #[test]
    fn extra_claims_override() {
        let mut req = request();
        req.extra_claims.insert("exp".into(), json!(1));
        req.extra_claims.insert("nbf".into(), json!(2));
        let claims = claims_at(&req, SystemTime::now()).unwrap();
        assert_eq!(claims["exp"], json!(1));
        assert_eq!(claims["nbf"], json!(2));
    }

    #[test]
    fn huge_ttl_is_an_error() {
        let mut req = request();
        req.ttl = Duration::from_secs(u64::MAX);
        assert!(matches!(
            claims_at(&req, SystemTime::now()),
            Err(KeyError::Claims(_))
        ));
    }
}
