//! The public half of a key as JSON Web Key members, and its RFC 7638
//! thumbprint (the key id).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::KeyError;

/// Key families this module understands, with the public half.
pub(super) enum PublicKey {
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

pub(super) fn ec_public(
    crv: &'static str,
    point: &[u8],
    coord_len: usize,
) -> Result<PublicKey, KeyError> {
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
pub(super) fn thumbprint(public: &PublicKey) -> String {
    let canonical = match public {
        PublicKey::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        PublicKey::Ec { crv, x, y } => {
            format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        PublicKey::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
    };
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

pub(super) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// JWK integers must be minimal big-endian (RFC 7518 §6.3.1).
pub(super) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes.get(start..).unwrap_or(bytes)
}

impl PublicKey {
    /// The JWK a JWKS publishes for this key: `kty`, `kid`, `alg`,
    /// `use: "sig"` and the family's members.
    pub(super) fn to_jwk(&self, kid: &str, alg: Algorithm) -> Value {
        let alg_name = format!("{alg:?}");
        match self {
            PublicKey::Rsa { n, e } => json!({
                "kty": "RSA", "kid": kid, "alg": alg_name, "use": "sig", "n": n, "e": e,
            }),
            PublicKey::Ec { crv, x, y } => json!({
                "kty": "EC", "kid": kid, "alg": alg_name, "use": "sig", "crv": crv, "x": x, "y": y,
            }),
            PublicKey::Ed25519 { x } => json!({
                "kty": "OKP", "kid": kid, "alg": alg_name, "use": "sig", "crv": "Ed25519", "x": x,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_leading_zeros_keeps_a_single_zero() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[0]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
    }
}
