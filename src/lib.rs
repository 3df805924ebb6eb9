//! idp-gate: a reverse-proxy sidecar that verifies bearer JWTs against an
//! OIDC provider's JWKS, authorizes by organization and scope, routes by
//! organization, forwards, and exports Prometheus metrics.
//!
//! `main.rs` is a thin CLI over this library.

#![forbid(unsafe_code)]

// What an embedder uses: the configuration, the tower layer and what it
// hands on, the refusal types, and the whole sidecar in-process (`app`).
pub mod app;
pub mod config;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod error;
pub mod explain;
pub mod logging;

pub use auth::Identity;
pub use layer::{Auth, AuthLayer, AuthResponse, ClientInfo, LayerError, Verified};
pub use request_id::RequestId;
pub use tls::install_crypto_provider;

// The inside.
mod access;
mod admin;
mod auth;
mod clock;
mod decision;
mod gateway;
mod headers;
mod layer;
mod metrics;
mod proxy;
mod ratelimit;
mod reload;
mod request_id;
mod routing;
mod secret;
mod server;
mod snapshot;
mod tls;

/// Parts of the inside that the project's own benchmarks, fuzz targets and
/// property tests drive directly. Not part of the API: no stability promise.
#[doc(hidden)]
pub mod internals {
    pub mod auth {
        pub use crate::auth::{CachingVerifier, Identity, Provider, Verifier, authorize};
        pub mod cache {
            pub use crate::auth::cache::TokenCache;
        }
        pub mod fetch {
            pub use crate::auth::fetch::Fetcher;
        }
        pub mod jwks {
            pub use crate::auth::jwks::Jwks;
        }
        pub mod keys {
            pub use crate::auth::keys::KeySet;
        }
        pub mod token {
            pub use crate::auth::token::extract;
        }
    }
    pub mod decision {
        pub use crate::decision::{RequestFacts, Rewrite, Seen, decide};
    }
    pub mod metrics {
        pub use crate::metrics::Metrics;
    }
    pub mod proxy {
        pub use crate::proxy::Upstream;
    }
    pub mod ratelimit {
        pub use crate::ratelimit::{RateLimit, RateLimits};
    }
    pub mod request_id {
        pub use crate::request_id::RequestId;
    }
    pub mod routing {
        pub use crate::routing::{Route, canonicalize, find};
        pub mod canonical {
            pub use crate::routing::canonical::canonicalize;
        }
        pub mod policy {
            pub use crate::routing::policy::{Allow, Organizations};
        }
    }
    pub mod snapshot {
        pub use crate::snapshot::Snapshot;
    }
    pub mod tls {
        pub use crate::tls::{client_config, install_crypto_provider};
    }
}

/// Version, commit and features, for `idp-gate version` and logs.
pub fn version_line() -> String {
    format!(
        "idp-gate {} (commit {}, crypto aws-lc-rs, features: jwks-discovery token-cache tls{})",
        env!("CARGO_PKG_VERSION"),
        option_env!("IDP_GATE_GIT_COMMIT").unwrap_or("unknown"),
        if cfg!(feature = "dev-tools") {
            " dev-tools"
        } else {
            ""
        },
    )
}
