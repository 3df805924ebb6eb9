//! Fresh key pairs, one per asymmetric algorithm family.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair,
};
use jsonwebtoken::Algorithm;

use super::{KeyError, SigningKey};

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
}

fn generate_ec(alg: &'static EcdsaSigningAlgorithm) -> Result<Vec<u8>, KeyError> {
    EcdsaKeyPair::generate(alg)
        .and_then(|kp| kp.to_pkcs8v1())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| KeyError::Crypto)
}
