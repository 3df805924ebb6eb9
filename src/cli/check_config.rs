//! `idp-gate check-config`: validate a config file the way `run` and a
//! reload do, and list every problem with its YAML path.

use std::path::PathBuf;
use std::process::ExitCode;

use idp_gate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The YAML config file.
    file: PathBuf,
}

/// The problems are this command's answer, not a failure of it: they go to
/// stdout, one per line, and the exit status says whether there were any.
pub fn execute(args: &Args) -> ExitCode {
    let file = args.file.display();
    match Config::load(&args.file) {
        Ok(_) => {
            println!("{file}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.problems {
                println!("{file}: {p}");
            }
            ExitCode::FAILURE
        }
    }
}
