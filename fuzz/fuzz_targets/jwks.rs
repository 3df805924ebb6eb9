//! JWKS parsing on arbitrary bytes, then key selection and a verification
//! attempt with every algorithm, so key construction from hostile `n`, `e`,
//! `x`, `y` and `crv` values is exercised too.

#![no_main]

use idp_gate::internals::auth::keys::KeySet;
use jsonwebtoken::AlgorithmFamily;
use libfuzzer_sys::fuzz_target;

const FAMILIES: [AlgorithmFamily; 4] = [
    AlgorithmFamily::Hmac,
    AlgorithmFamily::Rsa,
    AlgorithmFamily::Ec,
    AlgorithmFamily::Ed,
];

fuzz_target!(|data: &[u8]| {
    let Ok(set) = KeySet::parse(data) else {
        return;
    };
    for family in FAMILIES {
        for &alg in family.algorithms() {
            for key in set.candidates(None, alg) {
                // HMAC keys come only from the configured secret: an `oct`
                // key in a fetched document must never be usable.
                assert!(
                    family != AlgorithmFamily::Hmac,
                    "a JWKS key was offered for {alg:?}"
                );
                assert!(!key.verify(b"e30.e30", b"AAAA", alg));
            }
        }
    }
});
