//! `idp-gate demo`: the development IdP, an echo upstream and the gateway
//! on loopback with the built-in config, serving until Ctrl-C.

use std::process::ExitCode;

use idp_gate::demo::run::{self as demo, DemoPorts};
use idp_gate::logging::{self, LogFormat};
use jsonwebtoken::Algorithm;

use super::{CliError, Threads, block_on, values};

#[derive(clap::Args)]
pub struct Args {
    /// Gateway proxy port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Gateway admin port.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Development IdP port.
    #[arg(long, default_value_t = 9400)]
    idp_port: u16,
    /// Echo upstream port.
    #[arg(long, default_value_t = 9500)]
    upstream_port: u16,
    /// Print the built-in config and exit.
    #[arg(long)]
    print_config: bool,
    /// Signing algorithm of the demo tokens: RS256 or ES256 (both keys are published).
    #[arg(long, default_value = "RS256", value_parser = values::idp_alg("demo"))]
    alg: Algorithm,
}

pub fn execute(args: Args, log_format: LogFormat) -> Result<ExitCode, CliError> {
    let ports = DemoPorts {
        proxy: args.port,
        admin: args.admin_port,
        idp: args.idp_port,
        upstream: args.upstream_port,
    };
    if args.print_config {
        print!("{}", demo::config_text(ports));
        return Ok(ExitCode::SUCCESS);
    }
    let _flush_on_exit = logging::init(log_format);
    block_on(Threads::Workers, async {
        // The guide with the curl commands is the demo's output: stdout.
        let mut out = std::io::stdout();
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        demo::run(ports, args.alg, &mut out, ctrl_c)
            .await
            .map_err(CliError::Demo)
    })?;
    Ok(ExitCode::SUCCESS)
}
