//! The token endpoint's decisions: which client and user authenticate,
//! what each grant may issue, and the signed tokens that come back.

use std::time::SystemTime;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::error::OAuthError;
use super::request::{Params, client_credentials_of, parse_params, read_capped};
use super::{DevClient, DevIdpSettings, Idp};
use crate::demo::unix_seconds;

/// Scopes that shape the OpenID response rather than the API grant.
pub(super) const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Auth0's grant type for the password grant with a `realm`; the realm is
/// ignored here.
pub(super) const PASSWORD_REALM_GRANT: &str = "http://auth0.com/oauth/grant-type/password-realm";

/// Answers a token request: the client authenticates, then its grant runs.
pub(super) async fn token(idp: &Idp, req: Request<Incoming>) -> Result<Value, OAuthError> {
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
