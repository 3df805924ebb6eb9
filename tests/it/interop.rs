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

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
/// The gateway's discovery and first JWKS fetch.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A token with a rotated-in key: the gateway refetches at most once per
/// `minRefetchIntervalSeconds` (1 here), so this is ample.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

const INSTALL_HINT: &str = "run `npm ci --no-audit --no-fund` in tests/interop \
     (the interop tests need Node.js 20+ and the npm packages pinned in tests/interop/package-lock.json)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_mock_server_discovery_organizations_and_key_rotation() {
    let scratch = Scratch::new("oauth2-mock-server");
    let run = async {
        let mut idp = MockServer::start(&scratch).await;
        exercise(&mut idp, &scratch).await;
    };
    within(SCENARIO_TIMEOUT, run, &scratch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_oidc_provider_discovery_organizations_and_key_rotation() {
    let scratch = Scratch::new("oidc-provider");
    let run = async {
        let mut idp = OidcProvider::start(&scratch).await;
        exercise(&mut idp, &scratch).await;
    };
    within(SCENARIO_TIMEOUT, run, &scratch).await;
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

async fn exercise(idp: &mut impl Idp, scratch: &Scratch) {
    let echo = Echo::start().await;
    let gateway = Gateway::start(scratch, idp.issuer(), echo.addr).await;
    gateway.wait_ready().await;

    // Discovery found the provider's JWKS.
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "idp_gate_jwks_keys", idp.issuer()),
        Some(1.0),
        "one key loaded for {}:\n{metrics}",
        idp.issuer()
    );

    // The allowed organization goes through to the upstream.
    let first_kid = idp.signing_kid().to_owned();
    let token = idp.token(ALLOWED_ORG).await;
    assert_eq!(kid_of(&token), first_kid);
    let reply = gateway.get("/api/items?page=2", &token).await;
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
    let seen = reply.json();
    assert_eq!(seen["path"], "/api/items?page=2", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-org"], ALLOWED_ORG, "{seen}");
    assert_eq!(seen["headers"]["x-wso2-organization"], "org1", "{seen}");
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {token}"),
        "{seen}"
    );

    // Another organization's token is valid, but not for this route.
    let other = idp.token(OTHER_ORG).await;
    let reply = gateway.get("/api/items", &other).await;
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
    let fetches_before = jwks_fetches(&gateway.metrics().await);
    let new_kid = idp.rotate().await;
    assert_ne!(new_kid, first_kid);
    let rotated = idp.token(ALLOWED_ORG).await;
    assert_eq!(kid_of(&rotated), new_kid);
    let deadline = Instant::now() + ROTATION_TIMEOUT;
    let reply = loop {
        let reply = gateway.get("/api/items", &rotated).await;
        // Within `minRefetchIntervalSeconds` of the last fetch the gateway may
        // still say unknown_kid; anything else is wrong at once.
        let waiting = reply.status == StatusCode::UNAUTHORIZED
            && reply.json()["error_description"] == "unknown_kid";
        if !waiting || Instant::now() >= deadline {
            break reply;
        }
        gateway.assert_running();
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
    assert_eq!(reply.json()["headers"]["x-forwarded-org"], ALLOWED_ORG);
    gateway.assert_running();

    // The previous key is still published, so its tokens still pass…
    let reply = gateway.get("/api/items", &token).await;
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
    let reply = gateway.get("/api/items", &other).await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "{}",
        why("another organization, new key", &reply, &gateway, idp.log())
    );

    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "idp_gate_jwks_keys", idp.issuer()),
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

fn why(what: &str, reply: &Reply, gateway: &Gateway, provider_log: String) -> String {
    format!(
        "{what}: got {} {}\n--- gateway log ---\n{}\n--- provider log ---\n{provider_log}",
        reply.status,
        reply.text(),
        gateway.log(),
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
    async fn start(scratch: &Scratch) -> Self {
        let (node, hello) = Node::start(scratch, "mock-server.mjs", &["0"]).await;
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
    async fn start(scratch: &Scratch) -> Self {
        let (node, hello) = Node::start(
            scratch,
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

fn access_token(reply: &Reply, node: &Node) -> String {
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
/// Killed on drop.
struct Node {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: PathBuf,
    script: &'static str,
}

impl Node {
    /// Starts `script` and returns it with its first JSON line.
    async fn start(scratch: &Scratch, script: &'static str, args: &[&str]) -> (Node, Value) {
        require_node_packages();
        let dir = interop_dir();
        let stderr = scratch.path.join(format!("{script}.stderr.log"));
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` ({e}); {INSTALL_HINT}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut node = Node {
            child,
            stdin,
            stdout,
            stderr,
            script,
        };
        let hello = node.next_json().await;
        (node, hello)
    }

    async fn next_json(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + NODE_TIMEOUT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = self.child.wait().await;
                    panic!(
                        "{} ended ({status:?}) before answering; {INSTALL_HINT}\n--- its stderr ---\n{}",
                        self.script,
                        self.log()
                    )
                }
                Err(_) => panic!(
                    "{} did not answer within {NODE_TIMEOUT:?}\n--- its stderr ---\n{}",
                    self.script,
                    self.log()
                ),
            };
            // Only JSON lines are answers; anything else is chatter.
            if !line.trim_start().starts_with('{') {
                continue;
            }
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: bad JSON line {line:?}: {e}", self.script));
            if let Some(err) = value.get("error") {
                panic!("{}: {err}\n--- its stderr ---\n{}", self.script, self.log());
            }
            return value;
        }
    }

    async fn command(&mut self, cmd: &str) -> Value {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.next_json().await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
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

/// The real binary with a config written for this scenario. Killed on drop.
struct Gateway {
    child: std::sync::Mutex<Child>,
    log: PathBuf,
    proxy: String,
    admin: String,
}

impl Gateway {
    async fn start(scratch: &Scratch, issuer: &str, upstream: SocketAddr) -> Gateway {
        let proxy = free_port();
        let admin = free_port();
        let config = scratch.path.join("idp-gate.yaml");
        std::fs::write(
            &config,
            format!(
                r#"listen: "127.0.0.1:{proxy}"
admin:
  listen: "127.0.0.1:{admin}"
shutdownGraceSeconds: 1
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
    url: "http://{upstream}"
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
"#
            ),
        )
        .unwrap();
        let log = scratch.path.join("idp-gate.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_idp-gate"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn idp-gate");
        Gateway {
            child: std::sync::Mutex::new(child),
            log,
            proxy: format!("http://127.0.0.1:{proxy}"),
            admin: format!("http://127.0.0.1:{admin}"),
        }
    }

    /// Polls `/readyz` until 200; fails if the gateway exits or the deadline passes.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.admin);
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            self.assert_running();
            if let Ok(reply) = try_send(get_request(&url, None)).await {
                if reply.status == StatusCode::OK {
                    return;
                }
                last = format!("{} {}", reply.status, reply.text());
            }
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "idp-gate not ready within {READY_TIMEOUT:?} (last /readyz: {last})\n--- gateway log ---\n{}",
            self.log()
        );
    }

    fn assert_running(&self) {
        let status = self.child.lock().unwrap().try_wait();
        assert!(
            matches!(status, Ok(None)),
            "idp-gate exited ({status:?})\n--- gateway log ---\n{}",
            self.log()
        );
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        send(get_request(&format!("{}{path}", self.proxy), Some(token))).await
    }

    async fn metrics(&self) -> String {
        send(get_request(&format!("{}/metrics", self.admin), None))
            .await
            .text()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The crate's echo server, in process.
struct Echo {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(idp_gate::demo::echo::serve(listener, async move {
            let _ = stopped.await;
        }));
        Echo {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A directory under target/tmp for the config and the logs; removed after
/// a passing test, kept (and named) after a failing one.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("interop-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("interop: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn within(limit: Duration, run: impl Future<Output = ()>, scratch: &Scratch) {
    if tokio::time::timeout(limit, run).await.is_err() {
        panic!(
            "the scenario took longer than {limit:?}; logs in {}",
            scratch.path.display()
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// HTTP and JSON helpers.

struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn get_request(url: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::get(url);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Full::default()).unwrap()
}

async fn post_form(url: &str, form: &[(&str, &str)], authorization: Option<&str>) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req =
        Request::post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    send(req.body(Full::new(Bytes::from(body))).unwrap()).await
}

async fn try_send(req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let uri = req.uri().clone();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{uri}: no answer within 10 s"))?
}

async fn send(req: Request<Full<Bytes>>) -> Reply {
    let uri = req.uri().clone();
    try_send(req).await.unwrap_or_else(|e| panic!("{uri}: {e}"))
}

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

/// The value of `name{…label…}` in Prometheus text.
fn metric_with(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The value of `name{…issuer="issuer"…}` in Prometheus text.
fn metric(text: &str, name: &str, issuer: &str) -> Option<f64> {
    metric_with(text, name, &format!("issuer=\"{issuer}\""))
}

/// Successful JWKS fetches so far.
fn jwks_fetches(text: &str) -> f64 {
    metric_with(text, "idp_gate_jwks_fetches_total", "result=\"success\"")
        .unwrap_or_else(|| panic!("no idp_gate_jwks_fetches_total{{result=\"success\"}}:\n{text}"))
}
