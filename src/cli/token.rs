//! `idp-gate token`: mint a token offline with a private key file, for
//! scripting tests against a gateway that trusts the key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use idp_gate::demo::keys::SigningKey;
use idp_gate::demo::mint::{self, MintRequest};
use jsonwebtoken::Algorithm;

use super::CliError;
use super::values::{BadValue, parse_duration};

#[derive(clap::Args)]
pub struct Args {
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
    #[arg(long, default_value = "1h", value_parser = ttl)]
    ttl: Duration,
    /// Signature algorithm; default from the key (RSA: RS256).
    #[arg(long, value_parser = alg)]
    alg: Option<Algorithm>,
}

/// Prints only the token, so that `$(idp-gate token ...)` is the token.
pub fn execute(args: Args) -> Result<ExitCode, CliError> {
    let Args {
        key: path,
        issuer,
        audience,
        org,
        user,
        scope: scopes,
        ttl,
        alg,
    } = args;
    let pem = std::fs::read(&path).map_err(|source| CliError::KeyFile {
        path: path.clone(),
        source,
    })?;
    let key = SigningKey::from_pem(&pem, alg).map_err(|source| CliError::Key { path, source })?;
    let request = MintRequest {
        issuer,
        audience,
        org,
        user,
        scopes,
        ttl,
        ..MintRequest::default()
    };
    let token = mint::mint(&key, &request).map_err(CliError::Mint)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn ttl(value: &str) -> Result<Duration, BadValue> {
    parse_duration(value).map_err(|reason| BadValue::new("token", reason))
}

/// Any JWS algorithm name as a JWT header spells it (`RS256`, `EdDSA`);
/// whether the key can sign with it is the key's to say.
fn alg(value: &str) -> Result<Algorithm, BadValue> {
    value
        .parse()
        .map_err(|_| BadValue::new("token", format!("unknown algorithm {value:?}")))
}
