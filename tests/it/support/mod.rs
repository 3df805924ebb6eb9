//! What the integration tests share, one small module each: a real
//! JWKS/discovery server, the real echo upstream and dev IdP, the real
//! gateway in-process (`app::start` on 127.0.0.1:0) and as a child process
//! (`idp-gate run`), an HTTP client and its one response type, temp dirs,
//! certificates, tokens and metrics, and the rules for tests that load the
//! machine or measure time.

mod gate;
mod http;
mod idp;
mod jwks;
mod load;
mod metrics;
mod process;
mod served;
mod temp;
mod tls;
mod tokens;
mod upstreams;

pub use gate::*;
pub use http::*;
pub use idp::*;
pub use jwks::*;
pub use load::*;
pub use metrics::*;
pub use process::*;
pub use served::*;
pub use temp::*;
pub use tls::*;
pub use tokens::*;
pub use upstreams::*;
