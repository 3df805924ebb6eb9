//! End-to-end tests of the demo provider and echo upstream over real
//! sockets on 127.0.0.1.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idp_gate::demo::idp::{self, DevClient, DevIdpSettings, DevUser};
use idp_gate::demo::keys::{KeyRing, SigningKey};
use idp_gate::demo::mint::{MintRequest, mint};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::support::*;

const API: &str = "https://apk.example.com/api";

fn settings(issuer: String) -> DevIdpSettings {
    DevIdpSettings {
        issuer,
        api_audience: API.into(),
        clients: vec![DevClient {
            client_id: "svc-client".into(),
            client_secret: "svc-secret".into(),
            organization: Some("org_acme".into()),
            scopes: vec!["read:items".into(), "write:items".into()],
        }],
        users: vec![DevUser {
            username: "alice".into(),
            password: "wonderland".into(),
            email: "alice@example.com".into(),
            sub: "auth0|alice".into(),
            organizations: vec!["org_acme".into(), "org_beta".into()],
            scopes: vec!["read:items".into()],
            permissions: vec!["read:items".into(), "admin:items".into()],
        }],
        token_ttl: Duration::from_secs(300),
    }
}

async fn start_idp(alg: Algorithm) -> DevIdp {
    DevIdp::start(alg, "", settings).await
}

async fn get(url: &str) -> Resp {
    send(&client(), Request::get(url).body(empty()).unwrap()).await
}

async fn post_json(url: &str, body: &Value) -> Resp {
    send(
        &client(),
        Request::post(url)
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn jwks(base: &str) -> JwkSet {
    serde_json::from_slice(&get(&format!("{base}/.well-known/jwks.json")).await.body).unwrap()
}

/// Verifies `token` the way a relying party would: key by `kid` from the
/// JWKS, algorithm from the JWK, issuer and audience checked.
async fn verify(base: &str, token: &str, aud: &str) -> (jsonwebtoken::Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set = jwks(base).await;
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[format!("{base}/")]);
    validation.set_audience(&[aud]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
    (data.header, data.claims)
}

/// Form fields in request order.
type Form<'a> = Vec<(&'a str, &'a str)>;

fn cc_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", "svc-client"),
        ("client_secret", "svc-secret"),
    ];
    form.extend_from_slice(extra);
    form
}

fn pw_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", "svc-client"),
        ("client_secret", "svc-secret"),
        ("username", "alice"),
        ("password", "wonderland"),
    ];
    form.extend_from_slice(extra);
    form
}

#[tokio::test]
async fn discovery_document_names_issuer_and_endpoints() {
    let idp = start_idp(Algorithm::ES256).await;
    let reply = get(&format!("{}/.well-known/openid-configuration", idp.base)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert_eq!(doc["issuer"], format!("{}/", idp.base));
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/.well-known/jwks.json", idp.base)
    );
    assert_eq!(doc["token_endpoint"], format!("{}/oauth/token", idp.base));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_credentials"))
    );
    idp.stop().await;
}

#[tokio::test]
async fn jwks_publishes_active_key_under_its_thumbprint() {
    let idp = start_idp(Algorithm::RS256).await;
    let reply = get(&format!("{}/.well-known/jwks.json", idp.base)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers["cache-control"], "public, max-age=15",
        "JWKS must be briefly cacheable"
    );
    let set: JwkSet = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(set.keys.len(), 1);
    let active = idp.keys.active();
    let jwk = set.find(active.kid()).unwrap();
    assert_eq!(
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
        active.kid()
    );
    let raw = &reply.json()["keys"][0];
    assert_eq!(raw["kty"], "RSA");
    assert_eq!(raw["alg"], "RS256");
    assert_eq!(raw["use"], "sig");
    idp.stop().await;
}

#[tokio::test]
async fn client_credentials_token_verifies_and_has_auth0_claims() {
    let idp = start_idp(Algorithm::RS256).await;
    let token_url = format!("{}/oauth/token", idp.base);

    let reply = post_form(&token_url, &cc_form(&[("audience", API)]), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers["cache-control"], "no-store");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "read:items write:items");
    assert!(body.get("id_token").is_none());

    let (header, claims) = verify(&idp.base, body["access_token"].as_str().unwrap(), API).await;
    assert_eq!(header.kid.as_deref(), Some(idp.keys.active().kid()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(claims["sub"], "svc-client@clients");
    assert_eq!(claims["aud"], API, "client tokens carry a string aud");
    assert_eq!(claims["azp"], "svc-client");
    assert_eq!(claims["org_id"], "org_acme");
    assert_eq!(claims["scope"], "read:items write:items");
    assert_eq!(claims["permissions"], json!(["read:items", "write:items"]));
    assert_eq!(claims["gty"], "client-credentials");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());

    // JSON body, HTTP Basic, explicit organization and a narrower scope.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "svc-client:svc-secret"
        )
    );
    let reply = send(
        &client(),
        Request::post(&token_url)
            .header("content-type", "application/json")
            .header("authorization", basic)
            .body(full(
                json!({
                    "grant_type": "client_credentials",
                    "organization": "org_other",
                    "scope": "read:items",
                })
                .to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (_, claims) = verify(
        &idp.base,
        reply.json()["access_token"].as_str().unwrap(),
        API,
    )
    .await;
    assert_eq!(claims["org_id"], "org_other");
    assert_eq!(claims["scope"], "read:items");
    assert_eq!(claims["permissions"], json!(["read:items"]));
    idp.stop().await;
}

#[tokio::test]
async fn password_grant_returns_access_and_id_tokens() {
    let idp = start_idp(Algorithm::EdDSA).await;
    let token_url = format!("{}/oauth/token", idp.base);
    let reply = post_form(
        &token_url,
        &pw_form(&[
            ("scope", "openid email read:items write:items"),
            ("organization", "org_beta"),
        ]),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["scope"], "openid email read:items");
    assert_eq!(body["token_type"], "Bearer");

    let userinfo = format!("{}/userinfo", idp.base);
    let (_, access) = verify(&idp.base, body["access_token"].as_str().unwrap(), API).await;
    assert_eq!(access["aud"], json!([API, userinfo]));
    assert_eq!(access["sub"], "auth0|alice");
    assert_eq!(access["org_id"], "org_beta");
    assert_eq!(access["scope"], "openid email read:items");
    assert_eq!(access["permissions"], json!(["read:items", "admin:items"]));
    assert_eq!(access["email"], "alice@example.com");
    assert_eq!(access["gty"], "password");

    let (_, id) = verify(&idp.base, body["id_token"].as_str().unwrap(), "svc-client").await;
    assert_eq!(id["aud"], "svc-client");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["org_id"], "org_beta");
    assert_eq!(id["name"], "alice@example.com");
    assert!(id.get("nonce").is_none());

    // Without `openid` there is no id_token; the default org is the first;
    // the email works as login name, case-insensitively; JSON bodies work.
    let reply = post_json(
        &token_url,
        &json!({
            "grant_type": "password",
            "client_id": "svc-client",
            "client_secret": "svc-secret",
            "username": "ALICE@example.com",
            "password": "wonderland",
        }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert!(body.get("id_token").is_none());
    let (_, access) = verify(&idp.base, body["access_token"].as_str().unwrap(), API).await;
    assert_eq!(access["org_id"], "org_acme");
    assert_eq!(access["scope"], "read:items");
    idp.stop().await;
}

#[tokio::test]
async fn refused_requests_get_oauth_errors_and_no_tokens() {
    let idp = start_idp(Algorithm::ES256).await;
    let url = format!("{}/oauth/token", idp.base);
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "svc-client"),
                ("client_secret", "wrong"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", "svc-secret"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "svc-client"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            {
                let mut f = pw_form(&[]);
                f[4] = ("password", "wrong");
                f
            },
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            {
                let mut f = pw_form(&[]);
                f[3] = ("username", "mallory");
                f
            },
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            pw_form(&[("organization", "org_elsewhere")]),
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            pw_form(&[("audience", "https://other.example/")]),
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            cc_form(&[("scope", "read:items delete:items")]),
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", "svc-client"),
                ("client_secret", "svc-secret"),
            ],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("client_id", "svc-client"), ("client_secret", "svc-secret")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            pw_form(&[("username", "alice")]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "svc-client"),
                ("client_secret", "svc-secret"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, status, error) in cases {
        let reply = post_form(&url, &form, None).await;
        assert_eq!(reply.status, status, "{form:?}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["error"], error, "{form:?}");
        assert!(body["error_description"].is_string());
        assert!(!reply.text().contains("access_token"), "{form:?}");
        assert!(!reply.text().contains("eyJ"), "{form:?}");
    }

    let basic_wrong = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "svc-client:nope"
        )
    );
    let reply = post_form(
        &url,
        &[("grant_type", "client_credentials")],
        Some(&basic_wrong),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key("www-authenticate"));
    assert!(!reply.text().contains("access_token"));

    let big = vec![b'a'; 70 * 1024];
    let reply = send(
        &client(),
        Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(full(big))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let reply = get(&url).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = get(&format!("{}/nope", idp.base)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "not_found");
    idp.stop().await;
}

#[tokio::test]
async fn rotation_publishes_both_keys_and_signs_with_the_new_one() {
    let idp = start_idp(Algorithm::ES256).await;
    let url = format!("{}/oauth/token", idp.base);
    let old_token = post_form(&url, &cc_form(&[]), None).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_kid = idp.keys.active().kid().to_owned();

    let new_key = idp.keys.rotate().unwrap();
    assert_ne!(new_key.kid(), old_kid);
    let set = jwks(&idp.base).await;
    assert_eq!(set.keys.len(), 2);
    assert!(set.find(&old_kid).is_some() && set.find(new_key.kid()).is_some());

    let new_token = post_form(&url, &cc_form(&[]), None).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (header, _) = verify(&idp.base, &new_token, API).await;
    assert_eq!(header.kid.as_deref(), Some(new_key.kid()));
    let (header, _) = verify(&idp.base, &old_token, API).await;
    assert_eq!(header.kid.as_deref(), Some(old_kid.as_str()));

    assert!(idp.keys.retire(&old_kid));
    assert_eq!(jwks(&idp.base).await.keys.len(), 1);
    idp.stop().await;
}

#[tokio::test]
async fn issuer_with_a_path_serves_under_that_path() {
    let idp = DevIdp::start(Algorithm::ES256, "/tenant", settings).await;
    let base = &idp.base;
    assert!(base.ends_with("/tenant"), "{base}");
    let doc = get(&format!("{base}/.well-known/openid-configuration"))
        .await
        .json();
    assert_eq!(doc["jwks_uri"], format!("{base}/.well-known/jwks.json"));
    assert_eq!(
        get(&format!("{base}/.well-known/jwks.json")).await.status,
        StatusCode::OK
    );
    idp.stop().await;
}

#[tokio::test]
async fn invalid_issuer_fails_fast() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut s = settings("not a url".into());
    s.clients.clear();
    let err = idp::serve(
        listener,
        std::sync::Arc::new(s),
        std::sync::Arc::new(KeyRing::generate(Algorithm::EdDSA).unwrap()),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn private_pem_round_trips_with_the_same_kid() {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg).unwrap();
        let pem = key.private_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let loaded = SigningKey::from_pem(pem.as_bytes(), None).unwrap();
        assert_eq!(loaded.kid(), key.kid(), "{alg:?}");
        assert_eq!(loaded.alg(), alg);
        assert_eq!(loaded.public_jwk(), key.public_jwk());
        assert_eq!(loaded.private_pem(), pem);

        // A token from the reloaded key verifies with the original's JWK.
        let token = loaded.sign(&json!({"sub": "x"})).unwrap();
        let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap();
    }
}

#[test]
fn minted_tokens_carry_the_requested_claims() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let mut extra = Map::new();
    extra.insert("custom".into(), json!({"k": 1}));
    let req = MintRequest {
        issuer: "https://tenant.example/".into(),
        audience: vec![API.into(), "https://tenant.example/userinfo".into()],
        org: Some("org_acme".into()),
        user: "bob@example.com".into(),
        scopes: vec!["read:items".into()],
        ttl: Duration::from_secs(900),
        extra_claims: extra,
    };
    let token = mint(&key, &req).unwrap();
    let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&["https://tenant.example/"]);
    v.set_audience(&[API]);
    let data =
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap();
    assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    let mut claims = data.claims.as_object().unwrap().clone();
    let iat = claims.remove("iat").unwrap().as_u64().unwrap();
    let exp = claims.remove("exp").unwrap().as_u64().unwrap();
    assert_eq!(exp - iat, 900);
    let jti = claims.remove("jti").unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(jti.as_str().unwrap())
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(
        Value::Object(claims),
        json!({
            "iss": "https://tenant.example/",
            "sub": "bob@example.com",
            "aud": [API, "https://tenant.example/userinfo"],
            "org_id": "org_acme",
            "scope": "read:items",
            "permissions": ["read:items"],
            "email": "bob@example.com",
            "custom": {"k": 1},
        })
    );
}

#[tokio::test]
async fn echo_reports_method_raw_path_headers_and_streamed_body_size() {
    let echo = Echo::start().await;
    let raw = "/a%2Fb/./c;p=1?q=%20+x&z=1&z=2&empty&%ZZ";
    let reply = send(
        &client(),
        Request::builder()
            .method(Method::PATCH)
            .uri(format!("{}{raw}", echo.url()))
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("authorization", "Bearer abc")
            .body(full(&b"hello"[..]))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["method"], "PATCH");
    assert_eq!(body["path"], raw);
    assert_eq!(body["headers"]["x-multi"], json!(["one", "two"]));
    assert_eq!(body["headers"]["authorization"], "Bearer abc");
    assert_eq!(body["body_bytes"], 5);
    assert_eq!(body["version"], "HTTP/1.1");

    // A chunked body of 4 MiB is counted, not buffered.
    let reply = send(
        &client(),
        Request::post(format!("{}/upload", echo.url()))
            .body(streaming_body(64, 64 * 1024))
            .unwrap(),
    )
    .await;
    let body = reply.json();
    assert_eq!(body["body_bytes"], 64 * 64 * 1024);
    assert_eq!(body["path"], "/upload");

    // Cleartext HTTP/2 with prior knowledge is accepted too.
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = h2
        .request(
            Request::get(format!("{}/h2?x=1", echo.url()))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["version"], "HTTP/2.0");
    assert_eq!(body["path"], "/h2?x=1");

    echo.stop().await;
}
