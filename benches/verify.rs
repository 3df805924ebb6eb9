//! Token verification: a cache hit, a cache miss for each key type (the
//! whole miss path: digest, parse, signature, claims, identity, insert),
//! and the signature check alone with the RSA/EC key in each form it can
//! be held in, so the cost of re-building the key per verification shows.
//!
//!   cargo bench --bench verify

mod common;

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use idp_gate::internals::auth::cache::TokenCache;
use idp_gate::internals::auth::{CachingVerifier, Verifier};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

use common::{Keys, now, ready};

fn verification(c: &mut Criterion) {
    let keys = Keys::new();
    let rt = common::runtime();
    let _entered = rt.enter();
    let (snap, metrics) = common::snapshot(common::config(&keys.jwks_file, 0, 0));
    let providers = snap.verifier.inner().providers().to_vec();
    let now = now();

    let mut g = c.benchmark_group("verify");

    // The same token again: SHA-256 of it, a locked map look-up, the
    // window and key-generation re-checks.
    let hit = keys.rs256("hit");
    ready(snap.verifier.verify(&hit, None, now)).unwrap();
    g.bench_function("cache_hit", |b| {
        b.iter(|| ready(snap.verifier.verify(black_box(&hit), None, now)).unwrap())
    });

    // A token never seen: a fresh, empty cache for every iteration (built
    // outside the timing), so each one is the whole miss path.
    for (name, token) in [
        ("cache_miss_rs256", keys.rs256("miss")),
        ("cache_miss_es256", keys.es256("miss")),
        ("cache_miss_hs256", keys.hs256("miss")),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    CachingVerifier::new(
                        Verifier::new(providers.clone()),
                        Arc::new(TokenCache::default()),
                        metrics.clone(),
                    )
                },
                |v| ready(v.verify(black_box(&token), None, now)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The signature check alone (RS256 and ES256), with the key as
/// jsonwebtoken holds a JWK's (RSA: n and e; EC: the point's bytes, parsed
/// per call), and as aws-lc-rs can hold it parsed once.
fn key_forms(c: &mut Criterion) {
    let keys = Keys::new();
    let mut g = c.benchmark_group("signature");

    let rs256 = keys.rs256("sig");
    let jwk: Jwk = serde_json::from_value(keys.rsa.public_jwk()).unwrap();
    let from_jwk = DecodingKey::from_jwk(&jwk).unwrap();
    with_jsonwebtoken(
        &mut g,
        "rs256_jsonwebtoken_n_e",
        &rs256,
        &from_jwk,
        Algorithm::RS256,
    );
    let der = DecodingKey::from_rsa_der(&keys.rsa_public_der);
    with_jsonwebtoken(
        &mut g,
        "rs256_jsonwebtoken_der",
        &rs256,
        &der,
        Algorithm::RS256,
    );
    let (n, e) = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => (
            URL_SAFE_NO_PAD.decode(&p.n).unwrap(),
            URL_SAFE_NO_PAD.decode(&p.e).unwrap(),
        ),
        _ => unreachable!(),
    };
    let components = RsaPublicKeyComponents { n, e };
    let (message, _, raw_sig) = split(&rs256);
    g.bench_function("rs256_aws_lc_components", |b| {
        b.iter(|| {
            components
                .verify(
                    &sig::RSA_PKCS1_2048_8192_SHA256,
                    message.as_bytes(),
                    black_box(&raw_sig),
                )
                .unwrap()
        })
    });
    let parsed = ParsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, &keys.rsa_public_der)
        .expect("RSA public key");
    parsed_once(&mut g, "rs256_aws_lc_parsed_once", &rs256, &parsed);

    let es256 = keys.es256("sig");
    let jwk: Jwk = serde_json::from_value(keys.ec.public_jwk()).unwrap();
    let from_jwk = DecodingKey::from_jwk(&jwk).unwrap();
    with_jsonwebtoken(
        &mut g,
        "es256_jsonwebtoken",
        &es256,
        &from_jwk,
        Algorithm::ES256,
    );
    let point = from_jwk.try_get_as_bytes().unwrap().to_vec();
    let parsed = ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point).expect("EC key");
    parsed_once(&mut g, "es256_aws_lc_parsed_once", &es256, &parsed);
    g.finish();
}

/// A token's signed message, its base64url signature and the signature's
/// bytes.
fn split(token: &str) -> (&str, &str, Vec<u8>) {
    let (message, signature) = token.rsplit_once('.').unwrap();
    (
        message,
        signature,
        URL_SAFE_NO_PAD.decode(signature).unwrap(),
    )
}

/// jsonwebtoken's check of `token` against `key`.
fn with_jsonwebtoken(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) {
    let (message, signature, _) = split(token);
    g.bench_function(name, |b| {
        b.iter(|| {
            assert!(
                jsonwebtoken::crypto::verify(black_box(signature), message.as_bytes(), key, alg)
                    .unwrap()
            )
        })
    });
}

/// aws-lc's check of `token` against a key parsed once.
fn parsed_once(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    token: &str,
    key: &ParsedPublicKey,
) {
    let (message, _, raw_sig) = split(token);
    g.bench_function(name, |b| {
        b.iter(|| {
            key.verify_sig(message.as_bytes(), black_box(&raw_sig))
                .unwrap()
        })
    });
}

criterion_group!(benches, verification, key_forms);
criterion_main!(benches);
