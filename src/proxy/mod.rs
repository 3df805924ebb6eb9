//! Forwarding: header rewriting and the pooled upstream clients.

pub mod body;
pub mod client;
pub mod forward;
pub mod pool;
pub mod upgrade;

pub use client::Upstream;
pub use upgrade::Tunnels;
