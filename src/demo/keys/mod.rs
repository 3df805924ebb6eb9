//! Signing keys for the demo provider and the token minter, and a
//! [`KeyRing`] that publishes several keys so that rotation can be exercised.
//!
//! A [`SigningKey`] is made fresh (`generate`), read from a key file
//! (`pem_file`) or from PKCS#8 DER (here); `jwk` turns its public half into what
//! a JWKS publishes.

mod generate;
mod jwk;
mod keyring;
mod pem_file;

use std::fmt;

use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RsaPublicKeyComponents,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use jwk::{PublicKey, b64url, ec_public, strip_leading_zeros, thumbprint};
pub use keyring::KeyRing;
use pem_file::pkcs8_pem;

/// Why a key could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The algorithm has no asymmetric key type here (HMAC, for instance).
    #[error("algorithm {0:?} is not supported for signing keys")]
    UnsupportedAlgorithm(Algorithm),
    /// The input was not PEM, or held no unencrypted private key.
    #[error("invalid PEM: {0}")]
    Pem(&'static str),
    /// The DER inside the PEM is not a key this module can sign with.
    #[error(
        "unsupported private key: expected unencrypted RSA (2048-8192 bit), \
         EC P-256/P-384 or Ed25519"
    )]
    UnsupportedKey,
    /// An explicit algorithm does not fit the key type.
    #[error("a {key} key cannot sign with {alg:?}")]
    AlgorithmMismatch {
        /// The key type found, e.g. "EC P-256".
        key: &'static str,
        /// The algorithm that was asked for.
        alg: Algorithm,
    },
    /// The crypto library refused to generate or serialise a key.
    #[error("key generation or serialisation failed")]
    Crypto,
    /// The claims could not be assembled (e.g. an expiry past year 2^64).
    #[error("invalid claims: {0}")]
    Claims(String),
    /// jsonwebtoken failed to produce a signature.
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// A private key with everything needed to sign JWTs and publish the
/// matching public key.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    public_jwk: Value,
    /// PKCS#8 DER of the private key, kept so it can be written out again.
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Private key material stays out of debug output and logs.
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Builds a key from unencrypted PKCS#8 DER; see [`SigningKey::from_pem`]
    /// for how the algorithm is chosen.
    pub fn from_pkcs8_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let (alg, encoding, public) = if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
            let alg = choose_alg(
                alg,
                "RSA",
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )?;
            let components = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
            // jsonwebtoken's aws-lc RSA signer takes PKCS#1 DER, which
            // aws-lc cannot export; jsonwebtoken's PEM reader unwraps it
            // from PKCS#8, so the key goes in as PEM.
            let encoding = EncodingKey::from_rsa_pem(pkcs8_pem(der).as_bytes())
                .map_err(|_| KeyError::UnsupportedKey)?;
            let public = PublicKey::Rsa {
                n: b64url(strip_leading_zeros(&components.n)),
                e: b64url(strip_leading_zeros(&components.e)),
            };
            (alg, encoding, public)
        } else if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            let alg = choose_alg(alg, "EC P-256", &[Algorithm::ES256])?;
            let public = ec_public("P-256", kp.public_key().as_ref(), 32)?;
            (alg, EncodingKey::from_ec_der(der), public)
        } else if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            let alg = choose_alg(alg, "EC P-384", &[Algorithm::ES384])?;
            let public = ec_public("P-384", kp.public_key().as_ref(), 48)?;
            (alg, EncodingKey::from_ec_der(der), public)
        } else if let Ok(kp) = Ed25519KeyPair::from_pkcs8(der) {
            let alg = choose_alg(alg, "Ed25519", &[Algorithm::EdDSA])?;
            let public = PublicKey::Ed25519 {
                x: b64url(kp.public_key().as_ref()),
            };
            (alg, EncodingKey::from_ed_der(der), public)
        } else {
            return Err(KeyError::UnsupportedKey);
        };

        let kid = thumbprint(&public);
        let public_jwk = public.to_jwk(&kid, alg);
        Ok(Self {
            alg,
            kid,
            encoding,
            public_jwk,
            pkcs8: der.to_vec(),
        })
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key,
    /// base64url without padding. Stable across reloads of the same key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a JWK with `kty`, `kid`, `alg`, `use: "sig"` and
    /// `n`/`e`, `crv`/`x`/`y` or `crv`/`x`.
    pub fn public_jwk(&self) -> Value {
        self.public_jwk.clone()
    }

    /// Signs `claims` as a compact JWS with header `{alg, typ: "JWT", kid}`.
    pub fn sign(&self, claims: &Value) -> Result<String, KeyError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// The private key as a PKCS#8 `PRIVATE KEY` PEM, readable again by
    /// [`SigningKey::from_pem`] and by OpenSSL.
    pub fn private_pem(&self) -> String {
        pkcs8_pem(&self.pkcs8)
    }
}

fn choose_alg(
    requested: Option<Algorithm>,
    key: &'static str,
    allowed: &[Algorithm],
) -> Result<Algorithm, KeyError> {
    match (requested, allowed.first()) {
        (Some(alg), _) if allowed.contains(&alg) => Ok(alg),
        (Some(alg), _) => Err(KeyError::AlgorithmMismatch { key, alg }),
        (None, Some(default)) => Ok(*default),
        (None, None) => Err(KeyError::UnsupportedKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::json;

    fn verify(key: &SigningKey, token: &str) -> Value {
        let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        let dk = DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = Validation::new(key.alg());
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(token, &dk, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        data.claims
    }

    #[test]
    fn generated_keys_sign_verifiable_tokens_and_kid_is_rfc7638() {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let key = SigningKey::generate(alg).unwrap();
            assert_eq!(key.alg(), alg);
            let claims = json!({"sub": "alice", "n": 1});
            assert_eq!(verify(&key, &key.sign(&claims).unwrap()), claims);

            let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
            assert_eq!(
                jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
                key.kid(),
                "{alg:?}"
            );
            assert_eq!(key.public_jwk()["use"], "sig");
            assert_eq!(key.public_jwk()["alg"], format!("{alg:?}"));
            assert!(!format!("{key:?}").contains(&key.private_pem()[30..60]));
        }
    }

    #[test]
    fn hmac_is_rejected() {
        assert!(matches!(
            SigningKey::generate(Algorithm::HS256),
            Err(KeyError::UnsupportedAlgorithm(_))
        ));
    }

    /// Keys written by `openssl genrsa -traditional`, `openssl ecparam
    /// -genkey` (with and without `-noout`), `openssl genpkey` and `openssl
    /// pkcs8 -topk8`; test-only, never used to sign anything real.
    const RSA_PKCS1: &str = include_str!("testdata/rsa2048.pkcs1.pem");
    const RSA_PKCS8: &str = include_str!("testdata/rsa2048.pkcs8.pem");
    const P256_SEC1_WITH_PARAMETERS: &str = include_str!("testdata/p256.sec1.pem");
    const P256_PKCS8: &str = include_str!("testdata/p256.pkcs8.pem");
    const P384_SEC1: &str = include_str!("testdata/p384.sec1.pem");
    const ED25519_PKCS8_V1: &str = include_str!("testdata/ed25519.pkcs8.pem");
    const P256_ENCRYPTED_PKCS8: &str = include_str!("testdata/p256.encrypted.pem");
    const P256_LEGACY_ENCRYPTED_SEC1: &str = include_str!("testdata/p256.legacy-encrypted.pem");
    const ED25519_KID: &str = "JbgzkMx0pWEv0E5IRuxR_3XghTKYvZj41eMZ6rV27FE";

    #[test]
    fn openssl_keys_load_in_every_format() {
        for (pem, alg) in [
            (RSA_PKCS1, Algorithm::RS256),
            (RSA_PKCS8, Algorithm::RS256),
            (P256_SEC1_WITH_PARAMETERS, Algorithm::ES256),
            (P256_PKCS8, Algorithm::ES256),
            (P384_SEC1, Algorithm::ES384),
            (ED25519_PKCS8_V1, Algorithm::EdDSA),
        ] {
            let key = SigningKey::from_pem(pem.as_bytes(), None).unwrap();
            assert_eq!(key.alg(), alg);
            let claims = json!({"sub": "alice"});
            assert_eq!(verify(&key, &key.sign(&claims).unwrap()), claims);
            let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
            assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), key.kid());

            // Normalised to PKCS#8, which reads back as the same key.
            let pkcs8 = key.private_pem();
            assert!(
                pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "{pkcs8}"
            );
            let again = SigningKey::from_pem(pkcs8.as_bytes(), None).unwrap();
            assert_eq!(again.kid(), key.kid());
        }

        let kid = |pem: &str| SigningKey::from_pem(pem.as_bytes(), None).unwrap().kid;
        assert_eq!(kid(RSA_PKCS1), kid(RSA_PKCS8));
        assert_eq!(kid(P256_SEC1_WITH_PARAMETERS), kid(P256_PKCS8));
        // The RFC 7638 thumbprint as computed outside this code: SHA-256 of
        // {"crv":"Ed25519","kty":"OKP","x":...} with x from `openssl pkey -pubout`.
        assert_eq!(kid(ED25519_PKCS8_V1), ED25519_KID);
    }

    #[test]
    fn sec1_from_aws_lc_with_crlf_lines_loads() {
        let ec = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let sec1 = ec.private_key().as_der().unwrap();
        // The pem crate's default line ending is CRLF, as Windows tools write.
        let pem = pem::encode_many(&[
            pem::Pem::new("EC PARAMETERS", [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
            pem::Pem::new("EC PRIVATE KEY", sec1.as_ref()),
        ]);
        let loaded = SigningKey::from_pem(pem.as_bytes(), None).unwrap();
        assert_eq!(loaded.alg(), Algorithm::ES384);
        assert_eq!(loaded.public_jwk()["crv"], "P-384");
    }

    #[test]
    fn explicit_alg_is_checked_against_key_type() {
        let rsa = SigningKey::generate(Algorithm::RS256).unwrap();
        let ps =
            SigningKey::from_pem(rsa.private_pem().as_bytes(), Some(Algorithm::PS384)).unwrap();
        assert_eq!(ps.alg(), Algorithm::PS384);
        assert_eq!(ps.kid(), rsa.kid());
        let es = SigningKey::generate(Algorithm::ES256).unwrap();
        assert!(matches!(
            SigningKey::from_pem(es.private_pem().as_bytes(), Some(Algorithm::ES384)),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
        assert!(matches!(
            SigningKey::from_pem(es.private_pem().as_bytes(), Some(Algorithm::RS256)),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn bad_pem_inputs_name_the_problem() {
        let cases: [(&[u8], &str); 12] = [
            (b"", "invalid PEM: no private key block"),
            (b"\xff\xfe", "invalid PEM: no private key block"),
            (
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "invalid PEM: no private key block",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----",
                "invalid PEM: unterminated PEM block",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
                "invalid PEM: bad base64 in PEM body",
            ),
            (
                b"-----BEGIN -----BEGIN x",
                "invalid PEM: malformed PEM BEGIN line",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "unsupported private key: expected unencrypted RSA (2048-8192 bit), \
                 EC P-256/P-384 or Ed25519",
            ),
            (
                b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "unsupported private key: expected unencrypted RSA (2048-8192 bit), \
                 EC P-256/P-384 or Ed25519",
            ),
            (
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "invalid PEM: encrypted private keys are not supported",
            ),
            (
                b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "invalid PEM: encrypted private keys are not supported",
            ),
            (
                P256_ENCRYPTED_PKCS8.as_bytes(),
                "invalid PEM: encrypted private keys are not supported",
            ),
            (
                P256_LEGACY_ENCRYPTED_SEC1.as_bytes(),
                "invalid PEM: encrypted private keys are not supported",
            ),
        ];
        for (input, message) in cases {
            let err = SigningKey::from_pem(input, None).unwrap_err();
            assert_eq!(
                err.to_string(),
                message,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
