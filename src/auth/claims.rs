//! The identity read from verified claims, and the route's authorization
//! checks against it. Pure.

use std::collections::HashMap;

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::config::{OrganizationBinding, ProviderConfig};
use crate::error::AuthFailure;
use crate::routing::policy::{Allow, ClaimRef, Organizations};

/// Who a verified token speaks for.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub`.
    pub subject: Option<String>,
    /// The configured username claim.
    pub username: Option<String>,
    /// The configured organization claim.
    pub organization: Option<String>,
    /// From `scope` (space-separated) and `permissions` (array), deduplicated.
    pub scopes: Vec<String>,
    /// A short hash of `jti`, safe to log.
    pub jti_hash: Option<String>,
    /// All claims, for `claimsHeaders`.
    pub claims: Map<String, Value>,
    /// `subject`, `username` and `organization` as header values, made
    /// once per verified token instead of on every request that reuses it.
    pub(crate) values: IdentityValues,
}

/// See [`Identity::values`]: `None` where the claim is absent or cannot
/// be a header value.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentityValues {
    pub subject: Option<HeaderValue>,
    pub username: Option<HeaderValue>,
    pub organization: Option<HeaderValue>,
}

impl Identity {
    /// Reads the identity out of verified claims.
    pub fn from_claims(config: &ProviderConfig, claims: Map<String, Value>) -> Identity {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let mut scopes: Vec<String> = Vec::new();
        if let Some(Value::String(s)) = claims.get("scope") {
            scopes.extend(s.split_ascii_whitespace().map(str::to_string));
        }
        if let Some(Value::Array(items)) = claims.get("permissions") {
            scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
        }
        scopes.sort();
        scopes.dedup();
        let subject = string("sub");
        let username = string(&config.username_claim);
        let organization = string(&config.organization_claim).filter(|o| !o.is_empty());
        let value = |v: &Option<String>| v.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
        let values = IdentityValues {
            subject: value(&subject),
            username: value(&username),
            organization: value(&organization),
        };
        Identity {
            subject,
            username,
            organization,
            scopes,
            jti_hash: string("jti").map(|j| short_hash(&j)),
            claims,
            values,
        }
    }

    /// A claim, by its whole name or as a JSON Pointer.
    pub fn claim(&self, claim: &ClaimRef) -> Option<&Value> {
        Some(match claim {
            ClaimRef::Name(n) => self.claims.get(n)?,
            ClaimRef::Pointer(p) => {
                // JSON Pointer on the claims object.
                let mut current: Option<&Value> = None;
                let mut first = true;
                for token in p.split('/').skip(1) {
                    let token = token.replace("~1", "/").replace("~0", "~");
                    current = if first {
                        first = false;
                        self.claims.get(&token)
                    } else {
                        match current? {
                            Value::Object(m) => m.get(&token),
                            Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
                            _ => None,
                        }
                    };
                }
                current?
            }
        })
    }

    /// A claim as a header value: strings as they are, other JSON compactly.
    pub fn claim_value(&self, claim: &ClaimRef) -> Option<String> {
        match self.claim(claim)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Array(items) if items.iter().all(Value::is_string) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            other => Some(other.to_string()),
        }
    }
}

/// First 12 hex digits of SHA-256: enough to correlate log lines, useless to replay.
pub fn short_hash(s: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks the route's `allow` and the trusted organizations list.
pub fn authorize(
    identity: &Identity,
    allow: &Allow,
    trusted: Option<&HashMap<String, String>>,
) -> Result<(), AuthFailure> {
    let needs_org = allow.organizations != Organizations::Unrestricted || trusted.is_some();
    match (&identity.organization, needs_org) {
        (None, true) => return Err(AuthFailure::MissingOrganization),
        (Some(org), _) => {
            if trusted.is_some_and(|t| !t.contains_key(org)) {
                return Err(AuthFailure::OrganizationDenied);
            }
            if matches!(&allow.organizations, Organizations::OneOf(set) if !set.contains(org)) {
                return Err(AuthFailure::OrganizationDenied);
            }
        }
        (None, false) => {}
    }
    if !allow.scopes.iter().all(|s| identity.scopes.contains(s)) {
        return Err(AuthFailure::InsufficientScope {
            required: allow.scopes.clone(),
        });
    }
    for rule in &allow.claims {
        if !rule.matches(identity.claim(&rule.claim)) {
            return Err(AuthFailure::ClaimMismatch);
        }
    }
    Ok(())
}

/// The caller may not name another organization than the verified one,
/// and a token without one cannot pass where the upstream is told the
/// tenant (APK would fall back to its default organization).
///
/// The query is read as the strictest upstream reads it (split on `;` as
/// well as `&`, names decoded and compared without regard to case, as for
/// token parameters): `?a=1;organization=other` names `other` to Tomcat.
pub fn check_binding(
    binding: &OrganizationBinding,
    trusted: Option<&HashMap<String, String>>,
    identity: &Identity,
    query: Option<&str>,
) -> Result<(), AuthFailure> {
    if binding.header.is_some() && identity.organization.is_none() {
        return Err(AuthFailure::MissingOrganization);
    }
    let (Some(param), Some(query)) = (&binding.query_param, query) else {
        return Ok(());
    };
    let verified = identity.organization.as_deref();
    let name = verified.and_then(|o| trusted?.get(o).map(String::as_str));
    for p in super::token::query_params(query) {
        if !p.name.eq_ignore_ascii_case(param) {
            continue;
        }
        let v = p.value();
        if Some(v.as_ref()) != verified && Some(v.as_ref()) != name {
            return Err(AuthFailure::OrganizationMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(claims: Value) -> Identity {
        let config = crate::config::Config::from_yaml(
            "idp: {issuer: 'https://i/', audiences: [a], jwksEndpoint: 'https://i/jwks'}\nupstreams: {u: {url: 'http://127.0.0.1:1'}}\nroutes: [{name: r, match: {pathPrefix: /}, upstream: u}]\n",
            std::path::Path::new("t.yaml"),
            &|_| None,
        )
        .unwrap();
        Identity::from_claims(&config.providers[0], claims.as_object().unwrap().clone())
    }

    fn allow(orgs: Option<&[&str]>, scopes: &[&str]) -> Allow {
        Allow {
            organizations: match orgs {
                None => Organizations::Unrestricted,
                Some(["*"]) => Organizations::AnyPresent,
                Some(o) => Organizations::OneOf(o.iter().map(|s| s.to_string()).collect()),
            },
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: Vec::new(),
        }
    }

    #[test]
    fn scopes_come_from_scope_and_permissions_whole_words() {
        let id =
            identity(json!({"scope": "openid apk:api_create", "permissions": ["apk:api_view"]}));
        assert!(authorize(&id, &allow(None, &["apk:api_create", "apk:api_view"]), None).is_ok());
        let id = identity(json!({"scope": "apk:api_create_extra"}));
        assert!(matches!(
            authorize(&id, &allow(None, &["apk:api_create"]), None),
            Err(AuthFailure::InsufficientScope { .. })
        ));
    }

    #[test]
    fn organizations() {
        let id = identity(json!({"org_id": "org_abc"}));
        assert!(authorize(&id, &allow(Some(&["org_abc"]), &[]), None).is_ok());
        assert_eq!(
            authorize(&id, &allow(Some(&["org_xyz"]), &[]), None),
            Err(AuthFailure::OrganizationDenied)
        );
        let none = identity(json!({}));
        assert_eq!(
            authorize(&none, &allow(Some(&["org_abc"]), &[]), None),
            Err(AuthFailure::MissingOrganization)
        );
        assert!(authorize(&none, &allow(None, &[]), None).is_ok());
        // "*": any organization, but one is required.
        assert!(authorize(&id, &allow(Some(&["*"]), &[]), None).is_ok());
        assert_eq!(
            authorize(&none, &allow(Some(&["*"]), &[]), None),
            Err(AuthFailure::MissingOrganization)
        );
        let mut trusted = HashMap::new();
        trusted.insert("org_abc".to_string(), "org1".to_string());
        assert!(authorize(&id, &allow(None, &[]), Some(&trusted)).is_ok());
        let other = identity(json!({"org_id": "org_other"}));
        assert_eq!(
            authorize(&other, &allow(None, &[]), Some(&trusted)),
            Err(AuthFailure::OrganizationDenied)
        );
        assert_eq!(
            authorize(&none, &allow(None, &[]), Some(&trusted)),
            Err(AuthFailure::MissingOrganization)
        );
    }

    #[test]
    fn claim_values_by_name_and_pointer() {
        let id = identity(json!({
            "https://example.com/roles": ["admin", "dev"],
            "nested": {"a": [1, {"b": "deep"}]},
            "n": 5
        }));
        assert_eq!(
            id.claim_value(&ClaimRef::Name("https://example.com/roles".into()))
                .as_deref(),
            Some("admin,dev")
        );
        assert_eq!(
            id.claim_value(&ClaimRef::Pointer("/nested/a/1/b".into()))
                .as_deref(),
            Some("deep")
        );
        assert_eq!(
            id.claim_value(&ClaimRef::Name("n".into())).as_deref(),
            Some("5")
        );
        assert_eq!(id.claim_value(&ClaimRef::Name("missing".into())), None);
    }

    #[test]
    fn the_binding_parameter_is_read_on_either_separator() {
        let binding = OrganizationBinding {
            header: None,
            query_param: Some("organization".into()),
        };
        let mut trusted = HashMap::new();
        trusted.insert("org_abc".to_string(), "org1".to_string());
        let id = identity(json!({"org_id": "org_abc"}));
        let check = |q: &str| check_binding(&binding, Some(&trusted), &id, Some(q));
        for q in [
            "organization=org1",
            "a=1;organization=org_abc",
            "organization=org1;b=2&c=organization%3Dx",
        ] {
            assert_eq!(check(q), Ok(()), "{q}");
        }
        for q in [
            "a=1;organization=org2",
            "organization=org1;organization=org2",
            "Organization=org2",
            "organizatio%6E=org2",
            "organization",
        ] {
            assert_eq!(check(q), Err(AuthFailure::OrganizationMismatch), "{q}");
        }
    }
}
