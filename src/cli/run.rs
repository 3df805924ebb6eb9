//! `idp-gate run`: serve with a config file until SIGTERM or SIGINT,
//! reloading it on SIGHUP and when it changes.

use std::path::PathBuf;
use std::process::ExitCode;

use idp_gate::config::Config;
use idp_gate::logging::{self, LogFormat};
use tokio::signal::unix::{SignalKind, signal};

use super::{CliError, LOG_TARGET, Threads, block_on};

#[derive(clap::Args)]
pub struct Args {
    /// The YAML config file.
    #[arg(long, short, env = "IDP_GATE_CONFIG")]
    config: PathBuf,
}

pub fn execute(args: Args, log_format: LogFormat) -> Result<ExitCode, CliError> {
    let _flush_on_exit = logging::init(log_format);
    block_on(Threads::Workers, serve(args.config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(path: PathBuf) -> Result<(), CliError> {
    // Taken before anything else: SIGHUP's default action ends the
    // process, and a reload signal sent during start-up must not.
    let sighup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("idp-gate: cannot handle SIGHUP ({e}); reload by editing the file");
            None
        }
    };
    let config = Config::load(&path).map_err(CliError::InvalidConfig)?;
    tracing::info!(target: LOG_TARGET, version = %idp_gate::version_line(), config = %path.display(), "starting");
    idp_gate::app::run(config, path, sighup)
        .await
        .map_err(CliError::Start)
}
