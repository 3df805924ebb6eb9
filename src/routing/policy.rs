//! Authorization rules as compiled from a route's `allow`: which
//! organizations, which scopes, which claim values. Pure data; the checks
//! against a verified identity are in `claims`.

use std::collections::HashSet;

use http::HeaderName;

/// Which organizations a protected route takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Organizations {
    /// `allow.organizations` omitted: any organization, or none at all.
    #[default]
    Unrestricted,
    /// `["*"]`: any organization, but the token must carry one.
    AnyPresent,
    /// The token's organization must be one of these.
    OneOf(HashSet<String>),
}

/// Authorization of a protected route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Organization rule.
    pub organizations: Organizations,
    /// All required.
    pub scopes: Vec<String>,
    /// Each must match.
    pub claims: Vec<ClaimRule>,
}

/// `allow.claims` entry: the claim must equal one of `values`; an array
/// claim matches when any of its elements does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    /// Which claim.
    pub claim: ClaimRef,
    /// Accepted values, compared with strings as they are and numbers and
    /// booleans by their JSON text.
    pub values: Vec<String>,
}

impl ClaimRule {
    /// Whether the claim's value (absent: never) satisfies the rule.
    pub fn matches(&self, value: Option<&serde_json::Value>) -> bool {
        use serde_json::Value;
        let one = |v: &Value| match v {
            Value::String(s) => self.values.iter().any(|w| w == s),
            Value::Number(_) | Value::Bool(_) => {
                let text = v.to_string();
                self.values.contains(&text)
            }
            _ => false,
        };
        match value {
            Some(Value::Array(items)) => items.iter().any(one),
            Some(v) => one(v),
            None => false,
        }
    }
}

/// A claim by its whole name (Auth0's namespaced `https://…/roles`
/// included) or, starting with `/`, as a JSON Pointer into the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRef {
    /// A top-level claim by its whole name (namespaced names included).
    Name(String),
    /// A JSON Pointer into the claims.
    Pointer(String),
}

impl ClaimRef {
    /// `name` as written in the config: a JSON Pointer if it starts with `/`.
    pub fn parse(name: &str) -> ClaimRef {
        if name.starts_with('/') {
            ClaimRef::Pointer(name.to_string())
        } else {
            ClaimRef::Name(name.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_rules_match_any_value_and_any_array_element() {
        let rule = ClaimRule {
            claim: ClaimRef::parse("roles"),
            values: vec!["admin".into(), "deployer".into()],
        };
        assert!(rule.matches(Some(&json!("admin"))));
        assert!(rule.matches(Some(&json!(["viewer", "deployer"]))));
        assert!(!rule.matches(Some(&json!(["viewer"]))));
        assert!(!rule.matches(Some(&json!("Admin"))));
        assert!(!rule.matches(Some(&json!({"admin": true}))));
        assert!(!rule.matches(None));
        let tier = ClaimRule {
            claim: ClaimRef::parse("/app_metadata/tier"),
            values: vec!["3".into(), "true".into()],
        };
        assert!(tier.matches(Some(&json!(3))));
        assert!(tier.matches(Some(&json!(true))));
        assert!(!tier.matches(Some(&json!(4))));
        assert_eq!(tier.claim, ClaimRef::Pointer("/app_metadata/tier".into()));
    }
}

/// One place a token may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header, with an optional scheme (compared case-insensitively).
    Header {
        /// Header name.
        name: HeaderName,
        /// e.g. `Bearer`.
        scheme: Option<String>,
    },
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}
