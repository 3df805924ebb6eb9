//! The `idp-gate` command line.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use idp_gate::config::Config;
use idp_gate::demo::{
    self,
    keys::SigningKey,
    mint::{self, MintRequest},
    run::DemoPorts,
};
use idp_gate::logging::{self, LogFormat};
use jsonwebtoken::Algorithm;

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
    /// The embedded default: a development IdP, an echo upstream and the
    /// gateway on loopback, with ready-to-paste curl commands.
    Demo {
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
        #[arg(long, default_value = "RS256")]
        alg: String,
    },
    /// Mint a token signed with a private key file (PEM); prints only the token.
    Token {
        /// PKCS#8 (or PKCS#1/SEC1) private key PEM: RSA, EC P-256/P-384 or Ed25519.
        #[arg(long)]
        key: PathBuf,
        /// `iss`, exactly as the gateway expects it (Auth0: trailing slash).
        #[arg(long)]
        issuer: String,
        /// `aud`; repeat for several.
        #[arg(long, required = true)]
        audience: Vec<String>,
        /// `org_id`.
        #[arg(long)]
        org: Option<String>,
        /// `sub` (and `email` if it contains @).
        #[arg(long)]
        user: String,
        /// A scope; repeat for several (also written to `permissions`).
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime: 3600, 90s, 15m, 1h, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Signature algorithm; default from the key (RSA: RS256).
        #[arg(long)]
        alg: Option<String>,
    },
    /// Offline diagnosis: which route matches, which check passes or fails
    /// and why, which upstream would serve the request. Exit 0 if it would
    /// be forwarded, 1 if refused.
    Explain {
        /// The YAML config file.
        #[arg(long, short, env = "IDP_GATE_CONFIG")]
        config: PathBuf,
        /// The bearer token (never printed back).
        #[arg(long)]
        token: Option<String>,
        /// Request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request path, with its query if any (a token parameter in it is
        /// read as the gateway reads it, and printed as `[redacted]`).
        #[arg(long)]
        path: String,
        /// Request host, for routes that match on it.
        #[arg(long)]
        host: Option<String>,
    },
    /// The demo's development IdP on its own (Auth0-shaped discovery, JWKS
    /// and token endpoint, with the demo's users and client), serving until
    /// SIGTERM or SIGINT. Not for production.
    DevIdp {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: SocketAddr,
        /// Issuer URL as clients reach it, e.g. http://dev-idp:9400/ in a
        /// container network. Default: http://127.0.0.1:PORT/.
        #[arg(long)]
        issuer: Option<String>,
        /// API identifier that access tokens are issued for.
        #[arg(long, default_value = demo::run::API_AUDIENCE)]
        audience: String,
        /// Signing algorithm: RS256 or ES256 (both keys are published).
        #[arg(long, default_value = "RS256")]
        alg: String,
    },
    /// An upstream that answers every request with the request it received,
    /// as JSON, serving until SIGTERM or SIGINT.
    Echo {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9500")]
        listen: SocketAddr,
    },
    /// GET an http:// URL; exit 0 on a 2xx answer, 1 otherwise. For container
    /// healthchecks in an image without a shell or curl.
    Probe {
        /// The URL, e.g. http://127.0.0.1:9901/readyz.
        url: String,
        /// Give up after this long: 3600, 90s, 15m, 1h.
        #[arg(long, default_value = "5s")]
        timeout: String,
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
        Command::Demo {
            port,
            admin_port,
            idp_port,
            upstream_port,
            print_config,
            alg,
        } => {
            let ports = DemoPorts {
                proxy: port,
                admin: admin_port,
                idp: idp_port,
                upstream: upstream_port,
            };
            if print_config {
                print!("{}", demo::run::config_text(ports));
                return ExitCode::SUCCESS;
            }
            let Some(alg) = demo_alg(&alg, "demo") else {
                return ExitCode::FAILURE;
            };
            let _flush_on_exit = logging::init(cli.log_format);
            demo_main(ports, alg)
        }
        Command::Token {
            key,
            issuer,
            audience,
            org,
            user,
            scope,
            ttl,
            alg,
        } => match mint_token(
            &key,
            issuer,
            audience,
            org,
            user,
            scope,
            &ttl,
            alg.as_deref(),
        ) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("idp-gate token: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Explain {
            config,
            token,
            method,
            path,
            host,
        } => explain_main(&config, token.as_deref(), &method, &path, host.as_deref()),
        Command::DevIdp {
            listen,
            issuer,
            audience,
            alg,
        } => {
            let Some(alg) = demo_alg(&alg, "dev-idp") else {
                return ExitCode::FAILURE;
            };
            let _flush_on_exit = logging::init(cli.log_format);
            dev_idp_main(listen, issuer, audience, alg)
        }
        Command::Echo { listen } => {
            let _flush_on_exit = logging::init(cli.log_format);
            echo_main(listen)
        }
        Command::Probe { url, timeout } => probe_main(&url, &timeout),
        Command::Run { config } => {
            let _flush_on_exit = logging::init(cli.log_format);
            serve(config)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn mint_token(
    key: &Path,
    issuer: String,
    audience: Vec<String>,
    org: Option<String>,
    user: String,
    scopes: Vec<String>,
    ttl: &str,
    alg: Option<&str>,
) -> Result<String, String> {
    let pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let alg = alg
        .map(|a| {
            a.parse::<Algorithm>()
                .map_err(|_| format!("unknown algorithm {a:?}"))
        })
        .transpose()?;
    let key = SigningKey::from_pem(&pem, alg).map_err(|e| format!("{}: {e}", key.display()))?;
    let request = MintRequest {
        issuer,
        audience,
        org,
        user,
        scopes,
        ttl: mint::parse_ttl(ttl)?,
        ..MintRequest::default()
    };
    mint::mint(&key, &request).map_err(|e| e.to_string())
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("idp-gate: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn demo_main(ports: DemoPorts, alg: Algorithm) -> ExitCode {
    let runtime = match tokio_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let mut out = std::io::stdout();
        demo::run::run(ports, alg, &mut out, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idp-gate demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The development IdP's signing algorithm, or `None` after saying why not.
fn demo_alg(alg: &str, command: &str) -> Option<Algorithm> {
    match alg.to_ascii_uppercase().as_str() {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        other => {
            eprintln!("idp-gate {command}: --alg must be RS256 or ES256, not {other}");
            None
        }
    }
}

async fn bind(listen: SocketAddr, command: &str) -> Result<tokio::net::TcpListener, ExitCode> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        eprintln!("idp-gate {command}: cannot listen on {listen}: {e}");
        ExitCode::FAILURE
    })
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

fn dev_idp_main(
    listen: SocketAddr,
    issuer: Option<String>,
    audience: String,
    alg: Algorithm,
) -> ExitCode {
    let runtime = match tokio_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let listener = match bind(listen, "dev-idp").await {
            Ok(l) => l,
            Err(code) => return code,
        };
        let local = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("idp-gate dev-idp: {e}");
                return ExitCode::FAILURE;
            }
        };
        let issuer = issuer.unwrap_or_else(|| format!("http://{}/", reachable(local)));
        let keys = match demo::run::demo_keys(alg) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                eprintln!("idp-gate dev-idp: keys: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut settings = demo::run::idp_settings(issuer.clone());
        settings.api_audience = audience;
        // Printed on stdout (not only logged) so scripts started on port 0
        // can read the address.
        println!("dev-idp listening on {local}, issuer {issuer}");
        tracing::info!(listen = %local, issuer = %issuer, "dev idp listening");
        let served = demo::idp::serve(
            listener,
            Arc::new(settings),
            keys,
            idp_gate::app::wait_for_signal(),
        )
        .await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("idp-gate dev-idp: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn echo_main(listen: SocketAddr) -> ExitCode {
    let runtime = match tokio_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let listener = match bind(listen, "echo").await {
            Ok(l) => l,
            Err(code) => return code,
        };
        match listener.local_addr() {
            Ok(local) => {
                println!("echo listening on {local}");
                tracing::info!(listen = %local, "echo upstream listening");
            }
            Err(e) => {
                eprintln!("idp-gate echo: {e}");
                return ExitCode::FAILURE;
            }
        }
        match demo::echo::serve(listener, idp_gate::app::wait_for_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("idp-gate echo: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn probe_main(url: &str, timeout: &str) -> ExitCode {
    let timeout = match mint::parse_ttl(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("idp-gate probe: --timeout: {e}");
            return ExitCode::FAILURE;
        }
    };
    let uri = match url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => u,
        _ => {
            eprintln!("idp-gate probe: {url:?} is not an http:// URL");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("idp-gate probe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let answer = runtime.block_on(async {
        tokio::time::timeout(timeout, client.get(uri))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| idp_gate::error::chain(&e))
    });
    match answer {
        Ok(resp) if resp.status().is_success() => {
            println!("{url}: {}", resp.status());
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            println!("{url}: {}", resp.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain_main(
    config: &Path,
    token: Option<&str>,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("idp-gate: invalid config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(method) = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
        eprintln!("idp-gate explain: invalid method {method:?}");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    idp_gate::install_crypto_provider();
    let request = idp_gate::explain::ExplainRequest {
        token,
        method,
        path,
        host,
    };
    let explanation = runtime.block_on(idp_gate::explain::explain(config, request));
    print!("{}", explanation.report);
    if explanation.refusal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve(path: PathBuf) -> ExitCode {
    let runtime = match tokio_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        // Taken before anything else: SIGHUP's default action ends the
        // process, and a reload signal sent during start-up must not.
        let sighup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("idp-gate: cannot handle SIGHUP ({e}); reload by editing the file");
                None
            }
        };
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("idp-gate: invalid config: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(version = %idp_gate::version_line(), config = %path.display(), "starting");
        match idp_gate::app::run(config, path, sighup).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("idp-gate: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
