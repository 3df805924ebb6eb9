//! `idp-gate probe`: one GET for a container healthcheck, in an image that
//! has no shell or curl to run one.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::values::{BadValue, parse_duration};
use super::{CliError, Threads, block_on};

#[derive(clap::Args)]
pub struct Args {
    /// The URL, e.g. http://127.0.0.1:9901/readyz.
    url: String,
    /// Give up after this long: 3600, 90s, 15m, 1h.
    #[arg(long, default_value = "5s", value_parser = timeout)]
    timeout: Duration,
}

/// Exit 0 on a 2xx answer, 1 on any other answer or none; the status or
/// the reason goes to stdout, where a healthcheck log shows it.
pub fn execute(args: Args) -> Result<ExitCode, CliError> {
    let uri = match args.url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => u,
        _ => return Err(CliError::NotHttpUrl(args.url)),
    };
    let timeout = args.timeout;
    let answer = block_on(Threads::Probe, async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        Ok(tokio::time::timeout(timeout, client.get(uri))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))
            .and_then(|sent| sent.map_err(|e| idp_gate::error::chain(&e))))
    })?;
    let url = &args.url;
    match answer {
        Ok(resp) => {
            println!("{url}: {}", resp.status());
            Ok(if resp.status().is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(reason) => {
            println!("{url}: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn timeout(value: &str) -> Result<Duration, BadValue> {
    parse_duration(value).map_err(|reason| BadValue::new("probe", format!("--timeout: {reason}")))
}
