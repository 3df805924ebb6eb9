//! `idp-gate echo`: an upstream that answers with the request it received,
//! as the compose stack runs it.

use std::net::SocketAddr;
use std::process::ExitCode;

use idp_gate::logging::{self, LogFormat};

use super::{CliError, LOG_TARGET, Threads, bind, block_on};

const COMMAND: &str = "echo";

#[derive(clap::Args)]
pub struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9500")]
    listen: SocketAddr,
}

pub fn execute(args: Args, log_format: LogFormat) -> Result<ExitCode, CliError> {
    let _flush_on_exit = logging::init(log_format);
    block_on(Threads::Workers, serve(args.listen))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(listen: SocketAddr) -> Result<(), CliError> {
    let failed = |source| CliError::Serve {
        command: COMMAND,
        source,
    };
    let listener = bind(listen, COMMAND).await?;
    let local = listener.local_addr().map_err(failed)?;
    // On stdout, like dev-idp's, for scripts started on port 0.
    println!("echo listening on {local}");
    tracing::info!(target: LOG_TARGET, listen = %local, "echo upstream listening");
    idp_gate::demo::echo::serve(listener, idp_gate::app::wait_for_signal())
        .await
        .map_err(failed)
}
