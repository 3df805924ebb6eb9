//! Signing keys for the demo provider and the token minter, and a
//! [`KeyRing`] that publishes several keys so that rotation can be exercised.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self as pki_pem, PemObject as _};
use serde_json::{Value, json};

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

/// Key families this module understands, with the public half.
enum PublicKey {
    Rsa {
        n: String,
        e: String,
    },
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
    Ed25519 {
        x: String,
    },
}

impl SigningKey {
    /// A fresh key pair: RSA 2048 for `RS*`/`PS*`, P-256 for `ES256`,
    /// P-384 for `ES384` and Ed25519 for `EdDSA`.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let pkcs8: Vec<u8> = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|kp| kp.as_der())
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
            Algorithm::ES256 => generate_ec(&ECDSA_P256_SHA256_FIXED_SIGNING)?,
            Algorithm::ES384 => generate_ec(&ECDSA_P384_SHA384_FIXED_SIGNING)?,
            Algorithm::EdDSA => Ed25519KeyPair::generate()
                .and_then(|kp| kp.to_pkcs8v1())
                .map_err(|_| KeyError::Crypto)?
                .as_ref()
                .to_vec(),
            // HMAC has no public half to publish.
            _ => return Err(KeyError::UnsupportedAlgorithm(alg)),
        };
        Self::from_pkcs8_der(&pkcs8, Some(alg))
    }

    /// Loads a private key from PEM: PKCS#8 (`PRIVATE KEY`: RSA, EC P-256,
    /// EC P-384, Ed25519), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`). The first private-key block is used, so files
    /// that also carry `EC PARAMETERS` or certificates work.
    ///
    /// Without `alg` the algorithm follows the key: RSA→RS256, P-256→ES256,
    /// P-384→ES384, Ed25519→EdDSA. An RSA key may be given any of
    /// RS256/384/512 or PS256/384/512.
    pub fn from_pem(pem: &[u8], alg: Option<Algorithm>) -> Result<Self, KeyError> {
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|err| pem_error(&err, pem))?;
        // Everything is normalised to PKCS#8 so that one code path finds the
        // key type and `private_pem` always writes the same format.
        match key {
            PrivateKeyDer::Pkcs8(der) => Self::from_pkcs8_der(der.secret_pkcs8_der(), alg),
            PrivateKeyDer::Pkcs1(der) => {
                let kp = RsaKeyPair::from_der(der.secret_pkcs1_der())
                    .map_err(|_| KeyError::UnsupportedKey)?;
                let pkcs8 = kp.as_der().map_err(|_| KeyError::Crypto)?;
                Self::from_pkcs8_der(pkcs8.as_ref(), alg)
            }
            PrivateKeyDer::Sec1(der) => {
                // SEC1 names the curve inside the key, but aws-lc wants it up
                // front; a key on any other curve fails both.
                let der = der.secret_sec1_der();
                let kp = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .or_else(|_| {
                        EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
                    })
                    .map_err(|_| KeyError::UnsupportedKey)?;
                let pkcs8 = kp.to_pkcs8v1().map_err(|_| KeyError::Crypto)?;
                Self::from_pkcs8_der(pkcs8.as_ref(), alg)
            }
            // rustls-pki-types may learn new key formats; none of them are
            // ones this module can sign with today.
            _ => Err(KeyError::UnsupportedKey),
        }
    }

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
        let alg_name = format!("{alg:?}");
        let public_jwk = match public {
            PublicKey::Rsa { n, e } => json!({
                "kty": "RSA", "kid": kid, "alg": alg_name, "use": "sig", "n": n, "e": e,
            }),
            PublicKey::Ec { crv, x, y } => json!({
                "kty": "EC", "kid": kid, "alg": alg_name, "use": "sig", "crv": crv, "x": x, "y": y,
            }),
            PublicKey::Ed25519 { x } => json!({
                "kty": "OKP", "kid": kid, "alg": alg_name, "use": "sig", "crv": "Ed25519", "x": x,
            }),
        };
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

fn generate_ec(alg: &'static EcdsaSigningAlgorithm) -> Result<Vec<u8>, KeyError> {
    EcdsaKeyPair::generate(alg)
        .and_then(|kp| kp.to_pkcs8v1())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| KeyError::Crypto)
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

fn ec_public(crv: &'static str, point: &[u8], coord_len: usize) -> Result<PublicKey, KeyError> {
    // aws-lc hands out the uncompressed SEC1 point: 0x04 || x || y.
    match point.split_first() {
        Some((0x04, xy)) if xy.len() == 2 * coord_len => {
            let (x, y) = xy.split_at(coord_len);
            Ok(PublicKey::Ec {
                crv,
                x: b64url(x),
                y: b64url(y),
            })
        }
        _ => Err(KeyError::UnsupportedKey),
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order with
/// no whitespace. Built by hand because the member values are base64url or
/// fixed names (no escaping needed) and serde_json's map order depends on
/// crate features.
fn thumbprint(public: &PublicKey) -> String {
    let canonical = match public {
        PublicKey::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        PublicKey::Ec { crv, x, y } => {
            format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        PublicKey::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
    };
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// JWK integers must be minimal big-endian (RFC 7518 §6.3.1).
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes.get(start..).unwrap_or(bytes)
}

/// PKCS#8 DER as a `PRIVATE KEY` PEM block. LF line endings rather than
/// the `pem` crate's default CRLF: the file is for Unix tools, and a key
/// written and read back gives the same text.
fn pkcs8_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Says what is wrong with a key file in words an operator can act on.
fn pem_error(err: &pki_pem::Error, input: &[u8]) -> KeyError {
    KeyError::Pem(match err {
        // The PEM reader skips `ENCRYPTED PRIVATE KEY` blocks as unknown and
        // fails on the RFC 1421 headers of legacy encrypted keys, so neither
        // would otherwise say why the key was not usable.
        pki_pem::Error::NoItemsFound | pki_pem::Error::Base64Decode(_)
            if is_encrypted_key(input) =>
        {
            "encrypted private keys are not supported"
        }
        pki_pem::Error::NoItemsFound => "no private key block",
        pki_pem::Error::MissingSectionEnd { .. } => "unterminated PEM block",
        pki_pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line",
        pki_pem::Error::Base64Decode(_) => "bad base64 in PEM body",
        pki_pem::Error::SectionTooLarge => "PEM block too large",
        _ => "unreadable PEM",
    })
}

fn is_encrypted_key(input: &[u8]) -> bool {
    const MARKERS: [&[u8]; 2] = [
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
        b"Proc-Type: 4,ENCRYPTED",
    ];
    MARKERS
        .iter()
        .any(|marker| input.windows(marker.len()).any(|w| w == *marker))
}

/// The keys a provider publishes, one of which signs new tokens.
///
/// Old keys stay published after [`KeyRing::rotate`] so that tokens signed
/// before a rotation keep verifying until they are retired.
#[derive(Debug)]
pub struct KeyRing {
    state: RwLock<RingState>,
}

#[derive(Debug)]
struct RingState {
    published: Vec<Arc<SigningKey>>,
    active: Arc<SigningKey>,
}

impl KeyRing {
    /// A ring publishing just `key`, which is active.
    pub fn new(key: SigningKey) -> Self {
        let key = Arc::new(key);
        Self {
            state: RwLock::new(RingState {
                published: vec![Arc::clone(&key)],
                active: key,
            }),
        }
    }

    /// A ring with one freshly generated key.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        Ok(Self::new(SigningKey::generate(alg)?))
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Arc<SigningKey> {
        Arc::clone(&self.read().active)
    }

    /// All published keys, oldest first.
    pub fn keys(&self) -> Vec<Arc<SigningKey>> {
        self.read().published.clone()
    }

    /// The JWKS document: `{"keys": [...]}` with every published key.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .read()
            .published
            .iter()
            .map(|k| k.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// Generates a key with the active key's algorithm, publishes it and
    /// makes it active. Earlier keys stay published.
    pub fn rotate(&self) -> Result<Arc<SigningKey>, KeyError> {
        let alg = self.active().alg();
        // Generate outside the lock: RSA key generation takes a while.
        let key = SigningKey::generate(alg)?;
        Ok(self.add(key, true))
    }

    /// Publishes `key` (once: a key with the same kid is not added twice)
    /// and, if `activate`, makes it the signing key.
    pub fn add(&self, key: SigningKey, activate: bool) -> Arc<SigningKey> {
        let mut state = self.write();
        let key = match state.published.iter().find(|k| k.kid() == key.kid()) {
            Some(existing) => Arc::clone(existing),
            None => {
                let key = Arc::new(key);
                state.published.push(Arc::clone(&key));
                key
            }
        };
        if activate {
            state.active = Arc::clone(&key);
        }
        key
    }

    /// Stops publishing the key with `kid`. The active key cannot be
    /// retired; returns whether a key was removed.
    pub fn retire(&self, kid: &str) -> bool {
        let mut state = self.write();
        if state.active.kid() == kid {
            return false;
        }
        let before = state.published.len();
        state.published.retain(|k| k.kid() != kid);
        state.published.len() != before
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RingState> {
        // The state is replaced wholesale under the lock, so a panic
        // elsewhere cannot leave it half-updated; poisoning is safe to ignore.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RingState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
    use jsonwebtoken::{DecodingKey, Validation};

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

    #[test]
    fn strip_leading_zeros_keeps_a_single_zero() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[0]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
    }

    #[test]
    fn ring_rotation_keeps_old_keys_published() {
        let ring = KeyRing::generate(Algorithm::ES256).unwrap();
        let first = ring.active();
        let second = ring.rotate().unwrap();
        assert_ne!(first.kid(), second.kid());
        assert_eq!(ring.active().kid(), second.kid());
        assert_eq!(ring.keys().len(), 2);
        assert!(!ring.retire(second.kid()));
        ring.add((*first).clone(), false);
        assert_eq!(ring.keys().len(), 2, "same kid is not published twice");
        assert!(ring.retire(first.kid()));
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 1);
    }
}
