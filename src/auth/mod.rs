//! Authentication and authorization: where the token is, whose keys verify
//! it, what it says, and whether that is enough for the route.

pub mod cache;
pub mod claims;
pub mod fetch;
pub mod jwks;
pub mod keys;
pub mod token;
pub mod verify;

pub use cache::CachingVerifier;
pub use claims::{Identity, authorize};
pub use verify::{Provider, Verifier};
