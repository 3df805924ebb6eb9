//! Forwarding: header rewriting and the pooled upstream clients.

pub mod client;
pub mod headers;

pub use client::Upstream;
