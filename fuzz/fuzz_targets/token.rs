//! The token front half: split, base64url, header and claims JSON, `crit`,
//! `alg`, `kid`, then provider choice by `iss`, all through
//! `Verifier::verify`, the same entry point requests use.
//!
//! Two input shapes, told apart by the first byte:
//! - anything not starting with `{` is the token text as a client sends it
//!   (the seeds are real tokens, so the mutator starts from valid shapes);
//! - `{header JSON}\n{claims JSON}\n[signature bytes]` is encoded by the
//!   harness, so the mutator works on JSON rather than on base64. With no
//!   signature the harness signs it with the HMAC provider's secret, which
//!   lets arbitrary claims reach the time, audience and identity checks.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idp_gate::internals::auth::fetch::Fetcher;
use idp_gate::internals::auth::jwks::Jwks;
use idp_gate::internals::routing::policy::{Allow, Organizations};
use idp_gate::internals::auth::{Provider, Verifier, authorize};
use idp_gate::config::{ClaimRef, Config};
use idp_gate::internals::metrics::Metrics;
use libfuzzer_sys::fuzz_target;

/// The demo IdP's published keys, also the `jwks` target's seed.
const JWKS: &[u8] = include_bytes!("../corpus/jwks/seed-demo.json");
const HMAC_SECRET: &str = "fuzz-client-secret-at-least-32-bytes-long";
/// Fixed, so a crash input replays the same way on any day; the minted seed
/// tokens are valid at this instant and the demo's own have expired.
const NOW: u64 = 1_800_000_000;

struct Harness {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
    allows: Vec<Allow>,
}

fn config(cache_file: &Path) -> String {
    // Port 9 on loopback refuses at once: an unknown `kid` costs one failed
    // refetch, then the rate limit answers without any I/O.
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{ listen: "127.0.0.1:0" }}
idps:
  - name: demo
    issuer: "http://127.0.0.1:19400/"
    jwksEndpoint: "http://127.0.0.1:9/.well-known/jwks.json"
    usernameClaim: email
    organizationClaim: org_id
    audiences: ["https://apk.example.com/api", "demo-client"]
    algorithms: [RS256, ES256, ES384, EdDSA]
    jwks:
      minRefetchIntervalSeconds: 86400
      maxStaleSeconds: 31536000
      cacheFile: "{cache}"
  - name: hmac
    issuer: "https://hs.fuzz.example/"
    jwksEndpoint: "http://127.0.0.1:9/jwks.json"
    audiences: ["fuzz-api"]
    organizationClaim: org_id
    clientSecret: "{HMAC_SECRET}"
    algorithms: [HS256, HS384, HS512]
upstreams:
  u: {{ url: "http://127.0.0.1:9" }}
routes:
  - name: all
    match: {{ pathPrefix: / }}
    upstream: u
"#,
        cache = cache_file.display()
    )
}

fn harness() -> Harness {
    idp_gate::internals::tls::install_crypto_provider();
    // The JWKS reaches the provider the way a cold start reads it: from
    // its cache file, so nothing is fetched before the first unknown `kid`.
    let cache: PathBuf =
        std::env::temp_dir().join(format!("idp-gate-fuzz-jwks-{}.json", std::process::id()));
    std::fs::write(&cache, JWKS).expect("write the JWKS cache file");
    let config = Config::from_yaml(&config(&cache), Path::new("fuzz.yaml"), &|_| None)
        .unwrap_or_else(|e| panic!("harness config: {e}"));
    let metrics = Arc::new(Metrics::new(false).expect("metrics"));
    let providers = config
        .providers
        .iter()
        .map(|p| {
            let fetcher = Fetcher::new(None).expect("fetcher");
            let jwks = Arc::new(Jwks::new(p, fetcher, metrics.clone()));
            if p.cache_file.is_some() {
                assert!(jwks.is_ready(), "the JWKS cache file was not loaded");
            }
            // No refresh task: the keys stay those of the cache file.
            Arc::new(Provider::new(p.clone(), jwks, None))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let allows = vec![
        Allow::default(),
        Allow {
            organizations: Organizations::AnyPresent,
            scopes: vec!["apk:api_view".into()],
            ..Allow::default()
        },
        Allow {
            organizations: Organizations::OneOf(["org_abc123".to_string()].into()),
            scopes: vec!["apk:api_create".into(), "apk:api_view".into()],
            ..Allow::default()
        },
    ];
    Harness {
        runtime,
        verifier: Verifier::new(providers),
        allows,
    }
}

static HARNESS: LazyLock<Harness> = LazyLock::new(harness);

/// `header\nclaims\n[signature]` → a compact JWS.
fn assemble(data: &[u8]) -> String {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let header = parts.next().unwrap_or_default();
    let claims = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = if signature.is_empty() {
        // Matching on the raw bytes keeps the mutator's header edits cheap;
        // a wrong guess is just a bad signature.
        let hash = if contains(header, b"HS384") {
            hmac::HMAC_SHA384
        } else if contains(header, b"HS512") {
            hmac::HMAC_SHA512
        } else {
            hmac::HMAC_SHA256
        };
        let key = hmac::Key::new(hash, HMAC_SECRET.as_bytes());
        URL_SAFE_NO_PAD.encode(hmac::sign(&key, message.as_bytes()))
    } else {
        URL_SAFE_NO_PAD.encode(signature)
    };
    format!("{message}.{signature}")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let token = if data.first() == Some(&b'{') {
        assemble(data)
    } else {
        match std::str::from_utf8(data) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    };
    let h = &*HARNESS;
    let verdict = h.runtime.block_on(h.verifier.verify(&token, None, NOW));
    let Ok(verified) = verdict else { return };
    // The window handed to the verdict cache must hold at the instant the
    // token was accepted, or a cached verdict could outlive its token.
    assert!(verified.window.check(NOW).is_ok());
    let identity = &verified.identity;
    for allow in &h.allows {
        let _ = authorize(identity, allow, None);
    }
    for claim in [
        ClaimRef::Name("org_id".into()),
        ClaimRef::Pointer("/https:~1~1example.com~1claims/tier".into()),
        ClaimRef::Pointer("/permissions/0".into()),
    ] {
        let _ = identity.claim_value(&claim);
    }
});
