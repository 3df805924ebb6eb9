//! The `idp-gate` command line.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use idp_gate::config::Config;
use idp_gate::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "idp-gate",
    version,
    about = "JWT-verifying reverse proxy for an API platform's system APIs"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        /// The YAML config file.
        #[arg(long, short, env = "IDP_GATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and print every problem with its YAML path.
    CheckConfig {
        /// The YAML config file.
        file: PathBuf,
    },
    /// Print version, git commit and enabled features.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("{}", idp_gate::version_line());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                for p in &e.problems {
                    println!("{}: {p}", file.display());
                }
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            logging::init(cli.log_format);
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("idp-gate: invalid config: {e}");
                    return ExitCode::FAILURE;
                }
            };
            serve(config)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("idp-gate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(idp_gate::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idp-gate: {e}");
            ExitCode::FAILURE
        }
    }
}
