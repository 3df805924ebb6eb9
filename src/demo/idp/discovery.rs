//! The OpenID discovery document, built from the provider's settings and
//! keys.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::Idp;
use super::grant::{OIDC_SCOPES, PASSWORD_REALM_GRANT};

/// `/.well-known/openid-configuration`: the endpoints, grants, algorithms
/// and scopes this provider offers.
pub(super) fn document(idp: &Idp) -> Value {
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
