//! Reading private keys from PEM files and writing them back as PKCS#8.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
};
use jsonwebtoken::Algorithm;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self as pki_pem, PemObject as _};

use super::{KeyError, SigningKey};

impl SigningKey {
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
}

/// PKCS#8 DER as a `PRIVATE KEY` PEM block. LF line endings rather than
/// the `pem` crate's default CRLF: the file is for Unix tools, and a key
/// written and read back gives the same text.
pub(super) fn pkcs8_pem(der: &[u8]) -> String {
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
