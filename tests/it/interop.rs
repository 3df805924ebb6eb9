//! Interop: the real `idp-gate` binary against real OIDC providers from the
//! npm registry, over real sockets on 127.0.0.1.
//!
//! - `oauth2-mock-server` (tests/interop/mock-server.mjs)
//! - `oidc-provider`, node-oidc-provider (tests/interop/oidc-provider.mjs)
//!
//! For each: the gateway finds the provider by OIDC discovery, lets a token
//! of the allowed organization through to an upstream (200), refuses one of
//! another organization (403), and accepts a token signed with a key the
//! provider rotated in after the gateway started (unknown `kid` → JWKS
//! refetch), without a gateway restart.
//!
//! Needs Node.js and the pinned packages: `npm ci --no-audit --no-fund` in
//! tests/interop. Without them these tests fail, they never skip.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use serde_json::Value;

use crate::support::*;

/// The API identifier: the `aud` (oauth2-mock-server) or resource indicator
/// (oidc-provider) of the access tokens, and the gateway's audience.
const AUDIENCE: &str = "https://api.example.com";
/// The organization the route allows (`org1` to the platform).
const ALLOWED_ORG: &str = "org_abc";
/// A trusted organization (`org2`) that the route does not allow.
const OTHER_ORG: &str = "org_xyz";
/// The scope the route requires.
const SCOPE: &str = "api:read";
/// The whole scenario of one provider, startup included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(45);
/// Provider start-up and each control answer.
const NODE_TIMEOUT: Duration = Duration::from_secs(20);
/// A token with a rotated-in key: the gateway refetches at most once per
/// `minRefetchIntervalSeconds` (1 here), so this is ample.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

const INSTALL_HINT: &str = "run `npm ci --no-audit --no-fund` in tests/interop \
     (the interop tests need Node.js 20+ and the npm packages pinned in tests/interop/package-lock.json)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_mock_server_discovery_organizations_and_key_rotation() {
    within(SCENARIO_TIMEOUT, async {
        let mut idp = MockServer::start().await;
        exercise(&mut idp).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_oidc_provider_discovery_organizations_and_key_rotation() {
    within(SCENARIO_TIMEOUT, async {
        let mut idp = OidcProvider::start().await;
        exercise(&mut idp).await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// The scenario, the same for every provider.

/// What the scenario needs from a provider.
trait Idp {
    /// `iss` of its tokens, exactly.
    fn issuer(&self) -> &str;
    /// The `kid` it signs with right now.
    fn signing_kid(&self) -> &str;
    /// An access token for `org`, from the provider's token endpoint.
    async fn token(&mut self, org: &str) -> String;
    /// Rotates in a new signing key; returns its `kid`.
    async fn rotate(&mut self) -> String;
    /// stderr of the provider so far, for failure messages.
    fn log(&self) -> String;
}

async fn exercise(idp: &mut impl Idp) {
    let echo = Echo::start().await;
    let mut gateway = GateProcess::config(&gate_config(idp.issuer(), &echo))
        .ready()
        .await;

    // Discovery found the provider's JWKS.
    let metrics = gateway.metrics_text().await;
    assert_eq!(
        keys(&metrics, idp.issuer()),
        Some(1.0),
        "one key loaded for {}:\n{metrics}",
        idp.issuer()
    );

    // The allowed organization goes through to the upstream.
    let first_kid = idp.signing_kid().to_owned();
    let token = idp.token(ALLOWED_ORG).await;
    assert_eq!(kid_of(&token), first_kid);
    let reply = gateway.get("/api/items?page=2", Some(&token)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        why(
            "token of the allowed organization",
            &reply,
            &gateway,
            idp.log()
        )
    );
    assert_eq!(
        reply.json()["path"],
        "/api/items?page=2",
        "{}",
        reply.text()
    );
    reply.assert_upstream(&[
        ("x-forwarded-org", ALLOWED_ORG),
        ("x-wso2-organization", "org1"),
        ("authorization", &format!("Bearer {token}")),
    ]);

    // Another organization's token is valid, but not for this route.
    let other = idp.token(OTHER_ORG).await;
    let reply = gateway.get("/api/items", Some(&other)).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "{}",
        why("token of another organization", &reply, &gateway, idp.log())
    );
    assert_eq!(
        reply.json()["error_description"],
        "organization_denied",
        "{}",
        reply.text()
    );

    // The provider rotates its keys; the gateway keeps running.
    let fetches_before = jwks_fetches(&gateway.metrics_text().await);
    let new_kid = idp.rotate().await;
    assert_ne!(new_kid, first_kid);
    let rotated = idp.token(ALLOWED_ORG).await;
    assert_eq!(kid_of(&rotated), new_kid);
    let deadline = Instant::now() + ROTATION_TIMEOUT;
    let reply = loop {
        let reply = gateway.get("/api/items", Some(&rotated)).await;
        // Within `minRefetchIntervalSeconds` of the last fetch the gateway may
        // still say unknown_kid; anything else is wrong at once.
        let waiting = reply.status == StatusCode::UNAUTHORIZED
            && reply.json()["error_description"] == "unknown_kid";
        if !waiting || Instant::now() >= deadline {
            break reply;
        }
        gateway.proc.assert_running();
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        why(
            &format!("token signed with the rotated-in key {new_kid}"),
            &reply,
            &gateway,
            idp.log()
        )
    );
    reply.assert_upstream(&[("x-forwarded-org", ALLOWED_ORG)]);
    gateway.proc.assert_running();

    // The previous key is still published, so its tokens still pass…
    let reply = gateway.get("/api/items", Some(&token)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        why(
            "token signed with the previous key",
            &reply,
            &gateway,
            idp.log()
        )
    );
    // …and the organization check holds with the new key too.
    let other = idp.token(OTHER_ORG).await;
    assert_eq!(kid_of(&other), new_kid);
    let reply = gateway.get("/api/items", Some(&other)).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "{}",
        why("another organization, new key", &reply, &gateway, idp.log())
    );

    let metrics = gateway.metrics_text().await;
    assert_eq!(
        keys(&metrics, idp.issuer()),
        Some(2.0),
        "both keys loaded after the rotation:\n{metrics}"
    );
    // Exactly one refetch, for the unknown kid (the background refresh is
    // 600 s away and neither provider sends Cache-Control on its JWKS).
    assert_eq!(
        jwks_fetches(&metrics),
        fetches_before + 1.0,
        "one JWKS refetch for the rotated-in kid:\n{metrics}"
    );
    drop(gateway);
    echo.stop().await;
}

fn why(what: &str, reply: &Resp, gateway: &GateProcess, provider_log: String) -> String {
    format!(
        "{what}: got {} {}\n--- gateway log ---\n{}\n--- provider log ---\n{provider_log}",
        reply.status,
        reply.text(),
        gateway.logs().join("\n"),
    )
}

// ---------------------------------------------------------------------------
// Providers.

/// oauth2-mock-server. Tokens from its real token endpoint
/// (client_credentials); `org_id` is added by its `beforeTokenSigning` hook
/// from a form field. It signs round-robin over its keys.
struct MockServer {
    node: Node,
    issuer: String,
    token_endpoint: String,
    kid: String,
}

impl MockServer {
    async fn start() -> Self {
        let (node, hello) = Node::start("mock-server.mjs", &["0"]).await;
        MockServer {
            issuer: string(&hello, "issuer"),
            token_endpoint: string(&hello, "token_endpoint"),
            kid: string(&hello, "kid"),
            node,
        }
    }

    async fn fetch_token(&self, org: &str) -> String {
        let client_id = format!("svc-{org}");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("aud", AUDIENCE),
            ("scope", SCOPE),
            ("org_id", org),
        ];
        let reply = post_form(&self.token_endpoint, &form, None).await;
        access_token(&reply, &self.node)
    }
}

impl Idp for MockServer {
    fn issuer(&self) -> &str {
        &self.issuer
    }
    fn signing_kid(&self) -> &str {
        &self.kid
    }
    async fn token(&mut self, org: &str) -> String {
        // Round-robin signing: ask until the current key signs (at most one
        // token per published key).
        for _ in 0..8 {
            let token = self.fetch_token(org).await;
            if kid_of(&token) == self.kid {
                return token;
            }
        }
        panic!("oauth2-mock-server never signed with {}", self.kid);
    }
    async fn rotate(&mut self) -> String {
        let answer = self.node.command("rotate").await;
        self.kid = string(&answer, "kid");
        self.kid.clone()
    }
    fn log(&self) -> String {
        self.node.log()
    }
}

/// node-oidc-provider: one confidential client per organization,
/// client_credentials with a resource indicator → RFC 9068 JWT access token.
struct OidcProvider {
    node: Node,
    issuer: String,
    token_endpoint: String,
    kid: String,
    clients: Value,
}

impl OidcProvider {
    async fn start() -> Self {
        let (node, hello) = Node::start(
            "oidc-provider.mjs",
            &["0", AUDIENCE, ALLOWED_ORG, OTHER_ORG],
        )
        .await;
        OidcProvider {
            issuer: string(&hello, "issuer"),
            token_endpoint: string(&hello, "token_endpoint"),
            kid: string(&hello, "kid"),
            clients: hello["clients"].clone(),
            node,
        }
    }
}

impl Idp for OidcProvider {
    fn issuer(&self) -> &str {
        &self.issuer
    }
    fn signing_kid(&self) -> &str {
        &self.kid
    }
    async fn token(&mut self, org: &str) -> String {
        let client = &self.clients[org];
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!(
                "{}:{}",
                string(client, "client_id"),
                string(client, "client_secret")
            ))
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("resource", AUDIENCE),
            ("scope", SCOPE),
        ];
        let reply = post_form(&self.token_endpoint, &form, Some(&basic)).await;
        access_token(&reply, &self.node)
    }
    async fn rotate(&mut self) -> String {
        let answer = self.node.command("rotate").await;
        self.kid = string(&answer, "kid");
        self.kid.clone()
    }
    fn log(&self) -> String {
        self.node.log()
    }
}

fn access_token(reply: &Resp, node: &Node) -> String {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "token endpoint: {}\n--- provider log ---\n{}",
        reply.text(),
        node.log()
    );
    string(&reply.json(), "access_token")
}

// ---------------------------------------------------------------------------
// Processes.

/// A Node program from tests/interop, speaking JSON lines on stdin/stdout.
struct Node {
    proc: Proc,
    /// Lines of its stdout already looked at.
    read: usize,
    script: &'static str,
}

impl Node {
    /// Starts `script` and returns it with its first JSON line.
    async fn start(script: &'static str, args: &[&str]) -> (Node, Value) {
        require_node_packages();
        let dir = interop_dir();
        let mut cmd = std::process::Command::new("node");
        cmd.arg(dir.join(script)).args(args).current_dir(&dir);
        let mut node = Node {
            proc: Proc::start_interactive(&mut cmd),
            read: 0,
            script,
        };
        let hello = node.next_json().await;
        (node, hello)
    }

    /// Its next JSON line on stdout (anything else is chatter).
    async fn next_json(&mut self) -> Value {
        let deadline = Instant::now() + NODE_TIMEOUT;
        loop {
            // Looked at before the lines: once it has exited, they are all there.
            let exited = self.proc.exited();
            let lines = self.proc.stdout();
            for line in &lines[self.read..] {
                self.read += 1;
                if !line.trim_start().starts_with('{') {
                    continue;
                }
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: bad JSON line {line:?}: {e}", self.script));
                if let Some(err) = value.get("error") {
                    panic!("{}: {err}\n--- its stderr ---\n{}", self.script, self.log());
                }
                return value;
            }
            if let Some(status) = exited {
                panic!(
                    "{} ended ({status}) before answering; {INSTALL_HINT}\n--- its stderr ---\n{}",
                    self.script,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {NODE_TIMEOUT:?}\n--- its stderr ---\n{}",
                self.script,
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn command(&mut self, cmd: &str) -> Value {
        self.proc.send_line(cmd);
        self.next_json().await
    }

    fn log(&self) -> String {
        self.proc.stderr().join("\n")
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Fails (never skips) when Node.js or the npm packages are missing.
fn require_node_packages() {
    match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}): {}; {INSTALL_HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run `node` ({e}); {INSTALL_HINT}"),
    }
    for package in ["oauth2-mock-server", "oidc-provider"] {
        let manifest = interop_dir()
            .join("node_modules")
            .join(package)
            .join("package.json");
        assert!(
            manifest.is_file(),
            "the npm package {package} is not installed ({} is missing); {INSTALL_HINT}",
            manifest.display()
        );
    }
}

/// The gateway's config for the scenario: discovery from `issuer`, one
/// route to `echo` for the allowed organization and scope.
fn gate_config(issuer: &str, echo: &Echo) -> String {
    format!(
        r#"shutdownGraceSeconds: 1
idp:
  issuer: "{issuer}"
  # no jwksEndpoint: OIDC discovery from the issuer
  organizationClaim: org_id
  audiences: ["{AUDIENCE}"]
  algorithms: [RS256]
  jwks:
    refreshSeconds: 600
    minRefetchIntervalSeconds: 1
upstreams:
  echo:
    url: "{echo}"
routes:
  - name: api
    match:
      pathPrefix: /api
    allow:
      organizations: [{ALLOWED_ORG}]
      scopes: ["{SCOPE}"]
    upstream: echo
organizations:
  {ALLOWED_ORG}: {{ name: org1 }}
  {OTHER_ORG}: {{ name: org2 }}
organizationBinding:
  header: X-WSO2-Organization
"#,
        echo = echo.url()
    )
}

async fn within(limit: Duration, run: impl Future<Output = ()>) {
    if tokio::time::timeout(limit, run).await.is_err() {
        panic!("the scenario took longer than {limit:?}");
    }
}

// ---------------------------------------------------------------------------
// JSON and metrics.

fn string(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {value}"))
        .to_owned()
}

/// The `kid` of a JWT's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header)
            .unwrap_or_else(|e| panic!("not a JWT header ({e}): {header}")),
    )
    .unwrap();
    string(&header, "kid")
}

/// The keys loaded for `issuer` (`None`: no such series).
fn keys(text: &str, issuer: &str) -> Option<f64> {
    metric_series(text, "idp_gate_jwks_keys", &[("issuer", issuer)])
}

/// Successful JWKS fetches so far.
fn jwks_fetches(text: &str) -> f64 {
    metric_series(
        text,
        "idp_gate_jwks_fetches_total",
        &[("result", "success")],
    )
    .unwrap_or_else(|| panic!("no idp_gate_jwks_fetches_total{{result=\"success\"}}:\n{text}"))
}
