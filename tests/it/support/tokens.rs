//! Tokens made in the test: Auth0-shaped claims, signatures by the demo
//! keys, and hand-made headers and signatures for forgeries.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use idp_gate::demo::keys::{KeyRing, SigningKey};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// The audience every test token carries (an Auth0 API identifier).
pub const AUDIENCE: &str = "https://apk.example.com/api";
/// A client secret long enough for HS256 (≥ 32 bytes).
pub const CLIENT_SECRET: &str = "a-client-secret-that-is-long-enough-0123456789";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Auth0-shaped access-token claims: `iss` (with its trailing slash),
/// `aud`, `exp` in 5 minutes, `iat`, `sub`, `email`, `org_id` (omitted if
/// `org` is empty), `scope` (space-separated) and an empty `permissions`.
pub fn claims(issuer: &str, org: &str, scopes: &[&str]) -> Value {
    let now = now();
    let mut c = json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "auth0|user-1",
        "email": "alice@example.com",
        "iat": now,
        "exp": now + 300,
        "scope": scopes.join(" "),
        "permissions": [],
        "jti": jti(),
    });
    if !org.is_empty() {
        c["org_id"] = json!(org);
    }
    c
}

/// A token signed by `key` (header `{alg, typ, kid}`).
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    key.sign(claims).expect("signing")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// `header.payload.signature` from parts.
pub fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64_json(header),
        b64_json(claims),
        b64(signature)
    )
}

/// A token with an arbitrary header, RSA-signed (RS256) by `key`.
pub fn sign_rs256_raw(key: &SigningKey, header: &Value, claims: &Value) -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    let kp = KeyPair::from_pkcs8(&pkcs8_der(key)).expect("an RSA key");
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing");
    format!("{message}.{}", b64(&sig))
}

/// An HMAC-SHA256 token over an arbitrary header, keyed with `secret`.
pub fn sign_hs256_raw(secret: &[u8], header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", b64(tag.as_ref()))
}

fn pkcs8_der(key: &SigningKey) -> Vec<u8> {
    let pem = key.private_pem();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body).unwrap()
}

/// The RSA public key of `key`: (modulus bytes, SubjectPublicKeyInfo DER, PEM).
pub fn rsa_public_material(key: &SigningKey) -> (Vec<u8>, Vec<u8>, String) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::KeyPair as _;
    let kp = KeyPair::from_pkcs8(&pkcs8_der(key)).expect("an RSA key");
    let n = URL_SAFE_NO_PAD
        .decode(key.public_jwk()["n"].as_str().unwrap())
        .unwrap();
    let der = kp
        .public_key()
        .as_der()
        .expect("SPKI DER")
        .as_ref()
        .to_vec();
    let b64 = STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    (n, der, pem)
}

pub fn ring(alg: Algorithm) -> Arc<KeyRing> {
    Arc::new(KeyRing::generate(alg).expect("key generation"))
}
