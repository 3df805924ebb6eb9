//! A parsed JWKS: the public keys a provider signs with, and which of them
//! may verify a token of a given `alg`.

use aws_lc_rs::signature::{
    self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents, VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// RSA keys below this many modulus bits are ignored.
const MIN_RSA_BITS: usize = 2048;

/// Why a JWKS document was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// Not JSON, or no `keys` array.
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
}

/// One usable verification key, parsed once when its JWKS is loaded: for
/// each algorithm it may verify, a ready aws-lc public key. Building an RSA
/// key from `n` and `e` (its Montgomery set-up above all) costs more than
/// the verification itself, so it must never happen per request.
pub struct VerifyKey {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    family: AlgorithmFamily,
    alg: Option<Algorithm>,
    curve: Option<EllipticCurve>,
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`: same family,
    /// the key's own `alg` (if any) equal, and for EC/OKP the right curve.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        if alg.family() != self.family || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (alg, &self.curve) {
            (Algorithm::ES256, Some(c)) => *c == EllipticCurve::P256,
            (Algorithm::ES384, Some(c)) => *c == EllipticCurve::P384,
            (Algorithm::EdDSA, Some(c)) => *c == EllipticCurve::Ed25519,
            (Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA, None) => false,
            _ => true,
        }
    }

    /// Verifies `signature` (decoded) over `message` (`header.payload`).
    pub fn verify(&self, message: &[u8], signature: &[u8], alg: Algorithm) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    /// How many entries were skipped (symmetric, encryption, unknown, weak).
    pub skipped: usize,
}

impl KeySet {
    /// Parses a JWKS. Unusable entries are skipped, not fatal: a provider may
    /// publish encryption keys or types this build does not verify with.
    /// Symmetric (`oct`) keys are always skipped: HMAC keys come only from
    /// the configured client secret, never from a fetched document.
    pub fn parse(json: &[u8]) -> Result<KeySet, KeySetError> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| KeySetError::NotJwks(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| KeySetError::NotJwks("no \"keys\" array".into()))?;
        let mut set = KeySet::default();
        for entry in entries {
            match usable_key(entry) {
                Some(k) => set.keys.push(k),
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys that may verify a token with this `kid` (or any key, if the token
    /// has none) and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(move |k| k.accepts(alg))
    }
}

fn usable_key(entry: &serde_json::Value) -> Option<VerifyKey> {
    let kty = entry.get("kty")?.as_str()?;
    let family = match kty {
        "RSA" => AlgorithmFamily::Rsa,
        "EC" => AlgorithmFamily::Ec,
        "OKP" => AlgorithmFamily::Ed,
        _ => return None,
    };
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    // An `alg` on the key pins it: a key marked for one algorithm is never
    // used with another, and one for an algorithm we do not know is unusable.
    let alg = match jwk.common.key_algorithm {
        Some(a) => {
            let alg = Algorithm::try_from(a).ok()?;
            if alg.family() != family {
                return None;
            }
            Some(alg)
        }
        None => None,
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok();
    let wanted = |a: Algorithm| alg.is_none_or(|pinned| pinned == a);
    let mut parsed = Vec::new();
    let curve = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if family == AlgorithmFamily::Rsa => {
            let n = b64(&rsa.n)?;
            let e = b64(&rsa.e)?;
            // aws-lc wants both without leading zero bytes.
            let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
            let e: Vec<u8> = e.into_iter().skip_while(|b| *b == 0).collect();
            if n.len() * 8 < MIN_RSA_BITS {
                return None;
            }
            let components = RsaPublicKeyComponents { n: &n, e: &e };
            for (a, params) in RSA_ALGORITHMS {
                if wanted(a) {
                    parsed.push((a, components.to_parsed_public_key(params).ok()?));
                }
            }
            None
        }
        AlgorithmParameters::EllipticCurve(ec) if family == AlgorithmFamily::Ec => {
            let (a, verification): (Algorithm, &'static dyn VerificationAlgorithm) = match ec.curve
            {
                EllipticCurve::P256 => (Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED),
                EllipticCurve::P384 => (Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED),
                _ => return None,
            };
            if wanted(a) {
                // The uncompressed point: 0x04 ‖ x ‖ y.
                let mut point = vec![0x04];
                point.extend(b64(&ec.x)?);
                point.extend(b64(&ec.y)?);
                parsed.push((a, ParsedPublicKey::new(verification, point).ok()?));
            }
            Some(ec.curve.clone())
        }
        AlgorithmParameters::OctetKeyPair(okp) if family == AlgorithmFamily::Ed => {
            if okp.curve != EllipticCurve::Ed25519 {
                return None;
            }
            if wanted(Algorithm::EdDSA) {
                let key = ParsedPublicKey::new(&signature::ED25519, b64(&okp.x)?).ok()?;
                parsed.push((Algorithm::EdDSA, key));
            }
            Some(okp.curve.clone())
        }
        _ => return None,
    };
    if parsed.is_empty() {
        return None;
    }
    Some(VerifyKey {
        kid: jwk.common.key_id,
        family,
        alg,
        curve,
        parsed,
    })
}

/// The RSA algorithms and aws-lc's parameters for them (moduli of 2048 to
/// 8192 bits, as jsonwebtoken accepts).
const RSA_ALGORITHMS: [(Algorithm, &RsaParameters); 6] = [
    (Algorithm::RS256, &signature::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &signature::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &signature::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &signature::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &signature::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &signature::RSA_PSS_2048_8192_SHA512),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"XYZ","kid":"x"},
            {"kty":"RSA","kid":"weak","n":"AQAB","e":"AQAB"}
        ]}"#;
        let set = KeySet::parse(doc).unwrap();
        assert_eq!(set.len(), 0);
        assert_eq!(set.skipped, 4);
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(br#"{"keys":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn ec_key_accepts_only_its_curve() {
        // A P-256 public key (x, y from RFC 7515 A.3).
        let doc = br#"{"keys":[{"kty":"EC","kid":"e","crv":"P-256",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let set = KeySet::parse(doc).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.candidates(Some("e"), Algorithm::ES256).count(), 1);
        assert_eq!(set.candidates(Some("e"), Algorithm::ES384).count(), 0);
        assert_eq!(set.candidates(Some("e"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("e"), Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("other"), Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 1);
    }
}
