//! `idp-gate explain`: what the gateway would do with one request, worked
//! out offline by the gateway's own decision code.

use std::path::PathBuf;
use std::process::ExitCode;

use http::Method;
use idp_gate::config::Config;
use idp_gate::explain::{ExplainRequest, explain};

use super::values::BadValue;
use super::{CliError, Threads, block_on};

#[derive(clap::Args)]
pub struct Args {
    /// The YAML config file.
    #[arg(long, short, env = "IDP_GATE_CONFIG")]
    config: PathBuf,
    /// The bearer token (never printed back).
    #[arg(long)]
    token: Option<String>,
    /// Request method.
    #[arg(long, default_value = "GET", value_parser = method)]
    method: Method,
    /// Request path, with its query if any (a token parameter in it is
    /// read as the gateway reads it, and printed as `[redacted]`).
    #[arg(long)]
    path: String,
    /// Request host, for routes that match on it.
    #[arg(long)]
    host: Option<String>,
}

/// Exit 0 when the request would be forwarded, 1 when it would be refused:
/// the report on stdout says why either way.
pub fn execute(args: Args) -> Result<ExitCode, CliError> {
    let config = Config::load(&args.config).map_err(CliError::InvalidConfig)?;
    idp_gate::install_crypto_provider();
    let request = ExplainRequest {
        token: args.token.as_deref(),
        method: args.method,
        path: &args.path,
        host: args.host.as_deref(),
    };
    let explanation = block_on(Threads::Workers, async {
        Ok(explain(config, request).await)
    })?;
    print!("{}", explanation.report);
    Ok(if explanation.refusal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Any method token, in any case (`get` is `GET`), extension methods too.
fn method(value: &str) -> Result<Method, BadValue> {
    Method::from_bytes(value.to_ascii_uppercase().as_bytes())
        .map_err(|_| BadValue::new("explain", format!("invalid method {value:?}")))
}
