//! `idp-gate demo`: the development IdP, an echo upstream and the gateway on
//! loopback with the built-in config, plus ready-to-paste `curl` commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::idp::{DevClient, DevIdpSettings, DevUser};
use super::keys::KeyRing;
use crate::config::{Config, expand_str};

/// The built-in config, with `${DEMO_*}` port placeholders.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");
/// The API identifier access tokens are issued for.
pub const API_AUDIENCE: &str = "https://apk.example.com/api";
/// The demo application's client id (the audience of its ID tokens).
pub const CLIENT_ID: &str = "demo-client";
/// The demo application's client secret.
pub const CLIENT_SECRET: &str = "demo-client-secret";

/// Ports of the demo's listeners.
#[derive(Debug, Clone, Copy)]
pub struct DemoPorts {
    /// Gateway proxy.
    pub proxy: u16,
    /// Gateway admin.
    pub admin: u16,
    /// Development IdP.
    pub idp: u16,
    /// Echo upstream.
    pub upstream: u16,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A port is taken.
    #[error("cannot listen on 127.0.0.1:{port}: {source} (choose another with the port flags)")]
    Bind {
        /// Port.
        port: u16,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The built-in config did not validate (a bug).
    #[error("built-in config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The gateway could not start.
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    /// Keys could not be made.
    #[error("keys: {0}")]
    Keys(#[from] super::keys::KeyError),
    /// The IdP did not issue the demo tokens.
    #[error("token request failed: {0}")]
    Token(String),
    /// Writing output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The built-in config text with the ports filled in.
pub fn config_text(ports: DemoPorts) -> String {
    let lookup = |name: &str| {
        Some(match name {
            "DEMO_PROXY_PORT" => ports.proxy.to_string(),
            "DEMO_ADMIN_PORT" => ports.admin.to_string(),
            "DEMO_IDP_PORT" => ports.idp.to_string(),
            "DEMO_UPSTREAM_PORT" => ports.upstream.to_string(),
            _ => return None,
        })
    };
    DEMO_CONFIG
        .lines()
        .map(|line| expand_str(line, &lookup).unwrap_or_else(|_| line.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The demo provider's users and client.
pub fn idp_settings(issuer: String) -> DevIdpSettings {
    let all = vec!["apk:api_create".to_string(), "apk:api_view".to_string()];
    DevIdpSettings {
        issuer,
        api_audience: API_AUDIENCE.into(),
        clients: vec![DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            organization: Some("org_abc123".into()),
            scopes: all.clone(),
        }],
        users: vec![
            DevUser {
                username: "alice@org1.example".into(),
                password: "alice-password".into(),
                email: "alice@org1.example".into(),
                sub: "auth0|alice".into(),
                organizations: vec!["org_abc123".into()],
                scopes: all.clone(),
                permissions: all,
            },
            DevUser {
                username: "bob@org2.example".into(),
                password: "bob-password".into(),
                email: "bob@org2.example".into(),
                sub: "auth0|bob".into(),
                organizations: vec!["org_xyz789".into()],
                scopes: vec!["apk:api_view".into()],
                permissions: vec!["apk:api_view".into()],
            },
        ],
        token_ttl: Duration::from_secs(3600),
    }
}

/// The demo provider's keys: an RS256 and an ES256 key, both published,
/// signing with `alg`'s (RS256 or ES256).
pub fn demo_keys(alg: Algorithm) -> Result<KeyRing, super::keys::KeyError> {
    let keys = KeyRing::generate(Algorithm::RS256)?;
    let second = if alg == Algorithm::RS256 {
        Algorithm::ES256
    } else {
        alg
    };
    keys.add(
        super::keys::SigningKey::generate(second)?,
        alg != Algorithm::RS256,
    );
    Ok(keys)
}

async fn bind(port: u16) -> Result<TcpListener, DemoError> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| DemoError::Bind { port, source })
}

/// Runs the demo until `shutdown` resolves, writing the guide to `out`.
/// The IdP publishes an RS256 and an ES256 key and signs with `alg`'s.
pub async fn run(
    ports: DemoPorts,
    alg: Algorithm,
    out: &mut (dyn Write + Send),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    let idp_listener = bind(ports.idp).await?;
    let upstream_listener = bind(ports.upstream).await?;
    // Ask the OS for the real ports, so port 0 works too.
    let ports = DemoPorts {
        idp: idp_listener.local_addr()?.port(),
        upstream: upstream_listener.local_addr()?.port(),
        ..ports
    };
    let issuer = format!("http://127.0.0.1:{}/", ports.idp);
    let keys = Arc::new(demo_keys(alg)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let idp = tokio::spawn(super::idp::serve(
        idp_listener,
        Arc::new(idp_settings(issuer.clone())),
        keys.clone(),
        stopped(stop_rx.clone()),
    ));
    let echo = tokio::spawn(super::echo::serve(
        upstream_listener,
        stopped(stop_rx.clone()),
    ));

    let text = config_text(ports);
    let config = Config::from_yaml(&text, Path::new("demo.yaml"), &|_| None)?;
    let running = crate::app::start(config).await?;
    let ports = DemoPorts {
        proxy: running.proxy_addr.port(),
        admin: running.admin_addr.port(),
        ..ports
    };
    wait_ready(&running.gateway).await;

    let alice = password_token(&issuer, "alice@org1.example", "alice-password").await?;
    let bob = password_token(&issuer, "bob@org2.example", "bob-password").await?;
    let key_file = write_key_file(&keys, ports.idp);
    write_guide(out, ports, &issuer, &alice, &bob, key_file.as_deref())?;
    out.flush()?;

    shutdown.await;
    running.shutdown();
    running.wait().await;
    let _ = stop_tx.send(true);
    let _ = idp.await;
    let _ = echo.await;
    Ok(())
}

async fn wait_ready(gateway: &crate::gateway::Gateway) {
    for _ in 0..200 {
        if gateway.readiness().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An access token from the dev IdP's token endpoint (password grant).
async fn password_token(issuer: &str, user: &str, password: &str) -> Result<String, DemoError> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "password")
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("client_id", CLIENT_ID)
        .append_pair("client_secret", CLIENT_SECRET)
        .append_pair("audience", API_AUDIENCE)
        .append_pair("scope", "openid apk:api_create apk:api_view")
        .finish();
    let req = Request::post(format!("{issuer}oauth/token"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| DemoError::Token(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(req)
        .await
        .map_err(|e| DemoError::Token(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| DemoError::Token(e.to_string()))?
        .to_bytes();
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| DemoError::Token(e.to_string()))?;
    json.get("access_token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            DemoError::Token(format!("{status}: {}", json.get("error").unwrap_or(&json)))
        })
}

/// Saves the signing key so `idp-gate token --key` can mint more tokens
/// that this demo accepts. Best effort: the demo works without it.
fn write_key_file(keys: &KeyRing, idp_port: u16) -> Option<PathBuf> {
    // Named by port, so two demos side by side keep their own keys.
    let path = std::env::temp_dir().join(format!("idp-gate-demo-key-{idp_port}.pem"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .and_then(|mut f| f.write_all(keys.active().private_pem().as_bytes()))
        .ok()
        .map(|()| path)
}

fn write_guide(
    out: &mut (dyn Write + Send),
    ports: DemoPorts,
    issuer: &str,
    alice: &str,
    bob: &str,
    key_file: Option<&Path>,
) -> std::io::Result<()> {
    let gw = format!("http://127.0.0.1:{}", ports.proxy);
    let admin = format!("http://127.0.0.1:{}", ports.admin);
    writeln!(out, "idp-gate demo is running.")?;
    writeln!(out, "  gateway      {gw}")?;
    writeln!(out, "  admin        {admin}   (/metrics /healthz /readyz)")?;
    writeln!(
        out,
        "  dev IdP      {issuer}   (issuer; /.well-known/openid-configuration)"
    )?;
    writeln!(out, "  echo upstream http://127.0.0.1:{}", ports.upstream)?;
    writeln!(out)?;
    writeln!(
        out,
        "Tokens: alice is in org1 (org_abc123) with apk:api_create; bob is in org2 (org_xyz789) with apk:api_view."
    )?;
    writeln!(out, "Paste any of these into another terminal:")?;
    writeln!(out)?;
    writeln!(
        out,
        "# 1. 200: alice (org1) calls org1's config-deployer API; the echo shows the identity headers"
    )?;
    writeln!(
        out,
        "curl -i -H \"Authorization: Bearer {alice}\" {gw}/api/configurator/apis"
    )?;
    writeln!(out)?;
    writeln!(out, "# 2. 403: bob (org2) calls the same org1-only API")?;
    writeln!(
        out,
        "curl -i -H \"Authorization: Bearer {bob}\" {gw}/api/configurator/apis"
    )?;
    writeln!(out)?;
    writeln!(out, "# 3. 401: no token")?;
    writeln!(out, "curl -i {gw}/api/configurator/apis")?;
    writeln!(out)?;
    writeln!(
        out,
        "# 4. 200: bob calls the admin API and is routed to org2's upstream (the echo shows path /org2/...)"
    )?;
    writeln!(
        out,
        "curl -i -H \"Authorization: Bearer {bob}\" {gw}/api/am/admin/settings"
    )?;
    writeln!(out)?;
    writeln!(out, "# 5. 200: a public route, no token needed")?;
    writeln!(out, "curl -i {gw}/health")?;
    writeln!(out)?;
    writeln!(out, "# 6. metrics")?;
    writeln!(out, "curl {admin}/metrics")?;
    writeln!(out)?;
    writeln!(
        out,
        "# A fresh token from the dev IdP (the APK guide's token step; the response has access_token and id_token):"
    )?;
    writeln!(
        out,
        "curl -X POST {issuer}oauth/token -d grant_type=password -d username=alice@org1.example -d password=alice-password -d client_id={CLIENT_ID} -d client_secret={CLIENT_SECRET} -d audience={API_AUDIENCE} -d \"scope=openid apk:api_create apk:api_view\""
    )?;
    if let Some(key) = key_file {
        writeln!(out)?;
        writeln!(out, "# Or mint one offline with the demo's signing key:")?;
        writeln!(
            out,
            "idp-gate token --key {} --issuer {issuer} --audience {API_AUDIENCE} --org org_abc123 --user alice@org1.example --scope apk:api_create --ttl 1h",
            key.display()
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Press Ctrl-C to stop.")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_config_is_valid() {
        let ports = DemoPorts {
            proxy: 8080,
            admin: 9901,
            idp: 9400,
            upstream: 9500,
        };
        let text = config_text(ports);
        assert!(
            text.contains("issuer: \"http://127.0.0.1:9400/\""),
            "{text}"
        );
        let config = Config::from_yaml(&text, Path::new("demo.yaml"), &|_| None).unwrap();
        assert_eq!(config.routes.len(), 3);
    }
}
