//! Why a command failed. The Display of each variant is the one line the
//! command prints on stderr before it exits 1; scripts and tests match on
//! these words, so each variant spells its line out in full.

use std::io;
#[cfg(feature = "dev-tools")]
use std::net::SocketAddr;
#[cfg(feature = "dev-tools")]
use std::path::PathBuf;

use idp_gate::app::StartError;
use idp_gate::config::ConfigError;
#[cfg(feature = "dev-tools")]
use idp_gate::demo::{keys::KeyError, run::DemoError};

use super::values::BadValue;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value refused while the command line was parsed.
    #[error(transparent)]
    BadValue(#[from] BadValue),
    /// The async runtime could not be built.
    #[error("{who}: cannot start the runtime: {source}")]
    Runtime {
        who: &'static str,
        #[source]
        source: io::Error,
    },
    /// `run`, `explain`: the config file does not validate.
    #[error("idp-gate: invalid config: {0}")]
    InvalidConfig(#[source] ConfigError),
    /// `run`: the gateway could not start.
    #[error("idp-gate: {0}")]
    Start(#[source] StartError),
    /// `probe`: only a plain-HTTP URL with a host can be probed.
    #[error("idp-gate probe: {0:?} is not an http:// URL")]
    NotHttpUrl(String),
    /// `dev-idp`, `echo`: the listen address cannot be bound.
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate {command}: cannot listen on {addr}: {source}")]
    Bind {
        command: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// `dev-idp`, `echo`: the listener or the server failed.
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate {command}: {source}")]
    Serve {
        command: &'static str,
        #[source]
        source: io::Error,
    },
    /// `dev-idp`: the signing keys could not be made.
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate dev-idp: keys: {0}")]
    IdpKeys(#[source] KeyError),
    /// `demo`: a part could not start.
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate demo: {0}")]
    Demo(#[source] DemoError),
    /// `token`: the key file cannot be read.
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate token: {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `token`: the key file holds no key that can sign (with `--alg`).
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate token: {}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// `token`: the claims could not be signed.
    #[cfg(feature = "dev-tools")]
    #[error("idp-gate token: {0}")]
    Mint(#[source] KeyError),
}
