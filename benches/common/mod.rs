//! Set-up shared by the micro-benchmarks: signing keys, a JWKS loaded from
//! a cache file (no network), a configuration compiled from YAML the way
//! `idp-gate run` compiles it, tokens, and a poll-once executor.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use idp_gate::config::Config;
use idp_gate::demo::keys::SigningKey;
use idp_gate::internals::auth::cache::TokenCache;
use idp_gate::internals::metrics::Metrics;
use idp_gate::internals::snapshot::Snapshot;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.bench.example/";
pub const AUDIENCE: &str = "https://api.bench.example";
pub const ORG: &str = "org_abc123";
pub const CLIENT_SECRET: &str = "a-client-secret-that-is-long-enough-0123456789";

/// Polls a future once: verification with a known `kid` never waits on
/// I/O, so this measures the work and not an executor.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future waited on I/O"),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims shaped like an Auth0 access token for an organization member.
pub fn claims(jti: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "https://idp.bench.example/userinfo"],
        "sub": "auth0|64f1c0ffee",
        "email": "alice@example.com",
        "email_verified": true,
        "org_id": ORG,
        "scope": "openid profile apis:read apis:write",
        "permissions": ["apis:read", "apis:write"],
        "iat": now,
        "exp": now + 3600,
        "jti": jti,
    })
}

/// An RS256 (RSA 2048), an ES256 (P-256) key and an HS256 secret, with
/// the matching JWKS written to a file the gateway loads as its cache.
pub struct Keys {
    pub rsa: SigningKey,
    /// The RSA public key as PKCS#1 `RSAPublicKey` DER.
    pub rsa_public_der: Vec<u8>,
    pub ec: SigningKey,
    pub jwks_file: PathBuf,
    dir: PathBuf,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Keys {
    pub fn new() -> Keys {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = kp.as_der().unwrap();
        let rsa = SigningKey::from_pkcs8_der(pkcs8.as_ref(), Some(Algorithm::RS256)).unwrap();
        let rsa_public_der = kp.public_key().as_ref().to_vec();
        let ec = SigningKey::generate(Algorithm::ES256).unwrap();
        let dir = std::env::temp_dir().join(format!("idp-gate-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks_file = dir.join("jwks.json");
        let jwks = json!({"keys": [rsa.public_jwk(), ec.public_jwk()]});
        std::fs::write(&jwks_file, serde_json::to_vec(&jwks).unwrap()).unwrap();
        Keys {
            rsa,
            rsa_public_der,
            ec,
            jwks_file,
            dir,
        }
    }

    pub fn rs256(&self, jti: &str) -> String {
        self.rsa.sign(&claims(jti)).unwrap()
    }

    pub fn es256(&self, jti: &str) -> String {
        self.ec.sign(&claims(jti)).unwrap()
    }

    pub fn hs256(&self, jti: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(jti),
            &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

/// A configuration with one provider (RS256, ES256 and HS256 allowed, keys
/// from `jwks_file`), `decoys` public routes in front of the protected
/// `/api/configurator` route (first match wins, so every decoy is tried),
/// and `orgs` entries in `organizations` and in the protected route's
/// `organizationUpstreams`.
pub fn config_yaml(jwks_file: &Path, decoys: usize, orgs: usize) -> String {
    use std::fmt::Write as _;
    let mut y = String::new();
    writeln!(
        y,
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
idp:
  issuer: {ISSUER}
  jwksEndpoint: {ISSUER}.well-known/jwks.json
  usernameClaim: email
  organizationClaim: org_id
  audiences: [{AUDIENCE}]
  algorithms: [RS256, ES256, HS256]
  clientSecret: {CLIENT_SECRET}
  jwks:
    cacheFile: {}
upstreams:
  origin:
    url: http://127.0.0.1:9
  origin-eu:
    url: http://127.0.0.2:9",
        jwks_file.display()
    )
    .unwrap();
    if orgs > 0 {
        y.push_str("organizations:\n");
        writeln!(y, "  {ORG}: {{name: org1}}").unwrap();
        for i in 1..orgs {
            writeln!(y, "  org_{i:08}: {{name: tenant{i}}}").unwrap();
        }
    }
    y.push_str("organizationBinding:\n  header: X-WSO2-Tenant\n");
    y.push_str("forwarding:\n  claimsHeaders:\n    scope: X-Scopes\n");
    y.push_str("routes:\n");
    for i in 0..decoys {
        writeln!(
            y,
            "  - name: decoy{i}\n    match: {{pathPrefix: /svc{i}/v1}}\n    auth: none\n    upstream: origin"
        )
        .unwrap();
    }
    y.push_str(
        "  - name: configurator
    match: {pathPrefix: /api/configurator, methods: [GET, POST]}
    allow:
      organizations: [org_abc123]
    upstream: origin
",
    );
    if orgs > 1 {
        y.push_str("    organizationUpstreams:\n");
        for i in 1..orgs {
            writeln!(y, "      org_{i:08}: origin-eu").unwrap();
        }
    }
    y
}

pub fn config(jwks_file: &Path, decoys: usize, orgs: usize) -> Config {
    let yaml = config_yaml(jwks_file, decoys, orgs);
    Config::from_yaml(&yaml, Path::new("bench.yaml"), &|_| None)
        .unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// The request-time state `idp-gate run` builds, keys loaded from the
/// cache file. Needs a Tokio runtime entered (the JWKS refresh task is
/// spawned on it; the benchmarks never drive it).
pub fn snapshot(config: Config) -> (Snapshot, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(false).unwrap());
    let tokens = Arc::new(TokenCache::default());
    let snap = Snapshot::build(config, &metrics, &tokens, None).unwrap();
    snap.readiness().expect("JWKS loaded from the cache file");
    (snap, metrics)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
