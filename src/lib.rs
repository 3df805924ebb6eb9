//! idp-gate: a reverse-proxy sidecar that verifies bearer JWTs against an
//! OIDC provider's JWKS, authorizes by organization and scope, routes by
//! organization, forwards, and exports Prometheus metrics.
//!
//! `main.rs` is a thin CLI over this library.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod decision;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod error;
pub mod explain;
pub mod gateway;
pub mod headers;
pub mod layer;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod request_id;
pub mod routing;
pub mod secret;
pub mod server;
pub mod snapshot;
pub mod tls;

pub use layer::{AuthLayer, Verified};

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
