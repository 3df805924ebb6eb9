//! Authorization rules as compiled from a route's `allow`: which
//! organizations, which scopes, which claim values. Pure data; the checks
//! against a verified identity are in `claims`.

use std::collections::HashSet;

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
}

/// A claim read for a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRef {
    /// A top-level claim by its whole name (namespaced names included).
    Name(String),
    /// A JSON Pointer into the claims.
    Pointer(String),
}
