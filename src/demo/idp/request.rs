//! Reading a token request: the capped body, its form or JSON parameters,
//! and the client's credentials from HTTP Basic or the body.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::MAX_TOKEN_BODY;
use super::error::OAuthError;

/// A token request's parameters, each with one non-empty value.
pub(super) type Params = HashMap<String, String>;

/// The request body, refused with 413 past [`MAX_TOKEN_BODY`] whether the
/// length is declared up front or only shows while streaming.
pub(super) async fn read_capped(body: Incoming, headers: &HeaderMap) -> Result<Bytes, OAuthError> {
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
pub(super) fn parse_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
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
pub(super) fn client_credentials_of(
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
}
