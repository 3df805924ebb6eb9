//! Talking to upstreams: the pooled clients with their timeouts, the
//! request body on its way, and upgraded connections.

pub mod body;
pub mod client;
pub mod pool;
pub mod upgrade;

pub use client::Upstream;
pub use upgrade::Tunnels;
