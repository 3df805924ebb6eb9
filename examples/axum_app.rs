//! A small axum app protected by idp-gate's policy, in-process: the same
//! verification, authorization and refusals as the sidecar, as a tower
//! layer. The verified identity reaches the handlers in the request's
//! extensions.
//!
//! ```sh
//! cargo run --example axum_app -- config.yaml 127.0.0.1:3000
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/api/hello
//! ```
//!
//! The config is an ordinary idp-gate config; its routes decide who may
//! call which path (their `upstream` is not used in-process, but must name
//! one of `upstreams`).

use std::error::Error;
use std::path::Path;

use axum::routing::get;
use axum::{Extension, Router};
use idp_gate::{AuthLayer, Verified};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let config = args.next().ok_or("usage: axum_app CONFIG [ADDRESS]")?;
    let address = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let config = idp_gate::config::Config::load(Path::new(&config))?;
    let auth = AuthLayer::from_config(config)?;

    let app = Router::new()
        .route("/api/hello", get(hello))
        .route("/public/ping", get(|| async { "pong" }))
        .layer(auth);
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Greets the caller by the identity the layer verified.
async fn hello(Extension(verified): Extension<Verified>) -> String {
    let identity = verified.identity.as_deref();
    format!(
        "hello {} of {} (route {})",
        identity
            .and_then(|i| i.subject.as_deref())
            .unwrap_or("anonymous"),
        identity
            .and_then(|i| i.organization.as_deref())
            .unwrap_or("no organization"),
        verified.route
    )
}
