//! idp-gate's integration tests, in one binary so that they link once.
//!
//! Each module was a test file of its own; `support` holds what they share
//! (servers, clients, the gateway in-process and as a child process, temp
//! dirs, tokens and metrics). Run one module with `cargo test --test it
//! auth::`, one test with its full name.

mod support;

mod auth;
mod claim_rules;
mod cli;
mod credential_properties;
mod credentials;
mod demo_cli;
mod demo_idp;
mod explain_agrees;
mod forwarding;
mod hardening;
mod interop;
mod jwks;
mod library;
mod log_secrets;
mod operations;
mod path_properties;
mod ratelimit;
mod reload;
mod slow_clients;
mod standalone_cli;
mod tls;
mod upgrades;
mod upstreams;
