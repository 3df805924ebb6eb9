//! `idp-gate dev-idp`: the demo's development IdP on its own, as the
//! compose stack runs it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use idp_gate::demo::{idp, run::API_AUDIENCE, run::demo_keys, run::idp_settings};
use idp_gate::logging::{self, LogFormat};
use jsonwebtoken::Algorithm;

use super::{CliError, LOG_TARGET, Threads, bind, block_on, values};

const COMMAND: &str = "dev-idp";

#[derive(clap::Args)]
pub struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// Issuer URL as clients reach it, e.g. http://dev-idp:9400/ in a
    /// container network. Default: http://127.0.0.1:PORT/.
    #[arg(long)]
    issuer: Option<String>,
    /// API identifier that access tokens are issued for.
    #[arg(long, default_value = API_AUDIENCE)]
    audience: String,
    /// Signing algorithm: RS256 or ES256 (both keys are published).
    #[arg(long, default_value = "RS256", value_parser = values::idp_alg(COMMAND))]
    alg: Algorithm,
}

pub fn execute(args: Args, log_format: LogFormat) -> Result<ExitCode, CliError> {
    let _flush_on_exit = logging::init(log_format);
    block_on(Threads::Workers, serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> Result<(), CliError> {
    let failed = |source| CliError::Serve {
        command: COMMAND,
        source,
    };
    let listener = bind(args.listen, COMMAND).await?;
    let local = listener.local_addr().map_err(failed)?;
    let issuer = args
        .issuer
        .unwrap_or_else(|| format!("http://{}/", reachable(local)));
    let keys = demo_keys(args.alg).map_err(CliError::IdpKeys)?;
    let mut settings = idp_settings(issuer.clone());
    settings.api_audience = args.audience;
    // Printed on stdout (not only logged) so scripts started on port 0
    // can read the address.
    println!("dev-idp listening on {local}, issuer {issuer}");
    tracing::info!(target: LOG_TARGET, listen = %local, issuer = %issuer, "dev idp listening");
    idp::serve(
        listener,
        Arc::new(settings),
        Arc::new(keys),
        idp_gate::app::wait_for_signal(),
    )
    .await
    .map_err(failed)
}

/// The address to print for a listener: the wildcard address is not one a
/// client can use, so loopback stands in for it.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}
