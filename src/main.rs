//! The `idp-gate` binary: parse the command line, run the command, and on
//! failure print its one-line reason and exit 1.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::Cli::parse_args().and_then(cli::run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
