//! The command line: the commands and their flags, and [`run`], which hands
//! each command to its module. A command either returns its exit status or
//! a [`CliError`], which `main` prints as the command's one-line reason.
//!
//! The development tools (`demo`, `dev-idp`, `echo`, `token`) exist only in
//! builds with the `dev-tools` feature, like the library's `demo` module
//! they run.

mod check_config;
#[cfg(feature = "dev-tools")]
mod demo;
#[cfg(feature = "dev-tools")]
mod dev_idp;
#[cfg(feature = "dev-tools")]
mod echo;
mod error;
mod explain;
mod probe;
mod run;
#[cfg(feature = "dev-tools")]
mod token;
mod values;

use std::future::Future;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use idp_gate::logging::LogFormat;

pub use error::CliError;

/// The target of the commands' own log lines: the crate's name, which they
/// had before the command line had modules, and which log filters select.
const LOG_TARGET: &str = "idp_gate";

#[derive(Parser)]
#[command(
    name = "idp-gate",
    version,
    about = "JWT-verifying reverse proxy for an API platform's system APIs"
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run(run::Args),
    /// Validate a config file and print every problem with its YAML path.
    CheckConfig(check_config::Args),
    /// The embedded default: a development IdP, an echo upstream and the
    /// gateway on loopback, with ready-to-paste curl commands.
    #[cfg(feature = "dev-tools")]
    Demo(demo::Args),
    /// Mint a token signed with a private key file (PEM); prints only the token.
    #[cfg(feature = "dev-tools")]
    Token(token::Args),
    /// Offline diagnosis: which route matches, which check passes or fails
    /// and why, which upstream would serve the request. Exit 0 if it would
    /// be forwarded, 1 if refused.
    Explain(explain::Args),
    /// The demo's development IdP on its own (Auth0-shaped discovery, JWKS
    /// and token endpoint, with the demo's users and client), serving until
    /// SIGTERM or SIGINT. Not for production.
    #[cfg(feature = "dev-tools")]
    DevIdp(dev_idp::Args),
    /// An upstream that answers every request with the request it received,
    /// as JSON, serving until SIGTERM or SIGINT.
    #[cfg(feature = "dev-tools")]
    Echo(echo::Args),
    /// GET an http:// URL; exit 0 on a 2xx answer, 1 otherwise. For container
    /// healthchecks in an image without a shell or curl.
    Probe(probe::Args),
    /// Print version, git commit and enabled features.
    Version,
}

impl Cli {
    /// Parses the process's arguments. Help, `--version` and usage mistakes
    /// end the process the way clap always has; a flag value refused by one
    /// of our own parsers becomes that command's error, in its own words.
    pub fn parse_args() -> Result<Cli, CliError> {
        Cli::try_parse().map_err(|e| match values::BadValue::from_clap(&e) {
            Some(bad) => CliError::from(bad),
            None => e.exit(),
        })
    }
}

/// Runs the parsed command to its exit status.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Run(args) => run::execute(args, log_format),
        Command::CheckConfig(args) => Ok(check_config::execute(&args)),
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => demo::execute(args, log_format),
        #[cfg(feature = "dev-tools")]
        Command::Token(args) => token::execute(args),
        Command::Explain(args) => explain::execute(args),
        #[cfg(feature = "dev-tools")]
        Command::DevIdp(args) => dev_idp::execute(args, log_format),
        #[cfg(feature = "dev-tools")]
        Command::Echo(args) => echo::execute(args, log_format),
        Command::Probe(args) => probe::execute(args),
        Command::Version => {
            println!("{}", idp_gate::version_line());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The runtime a command needs.
#[derive(Debug, Clone, Copy)]
enum Threads {
    /// The servers and `explain`: a worker per core.
    Workers,
    /// `probe`: one request on the calling thread. A healthcheck runs every
    /// few seconds and should not start a thread per core each time.
    Probe,
}

/// Runs `work` to completion on a fresh runtime; the one place one is built.
fn block_on<T>(
    threads: Threads,
    work: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    let (mut builder, who) = match threads {
        Threads::Workers => (tokio::runtime::Builder::new_multi_thread(), "idp-gate"),
        // The probe's message has always named the command.
        Threads::Probe => (
            tokio::runtime::Builder::new_current_thread(),
            "idp-gate probe",
        ),
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|source| CliError::Runtime { who, source })?;
    runtime.block_on(work)
}

/// Binds a development server's listener.
#[cfg(feature = "dev-tools")]
async fn bind(
    addr: std::net::SocketAddr,
    command: &'static str,
) -> Result<tokio::net::TcpListener, CliError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind {
            command,
            addr,
            source,
        })
}
