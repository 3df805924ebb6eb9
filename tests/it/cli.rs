//! Binary-level tests: the real `idp-gate` executable, driven through its
//! command line, with a development IdP, an echo upstream and test clients
//! running in-process on 127.0.0.1.
//!
//! Every child process is killed on drop; readiness is awaited by polling the
//! admin `/readyz` in a bounded loop, never by a fixed sleep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use idp_gate::demo::keys::KeyRing;
use idp_gate::demo::mint::{MintRequest, mint};
use idp_gate::demo::{echo, idp};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_idp-gate");
const API_AUDIENCE: &str = "https://api.idp-gate.test";
const CLIENT_ID: &str = "gate-test-client";

// ---------------------------------------------------------------------------
// Helpers: temp dirs, one-shot commands, free ports.

/// A private directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("idp-gate-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary to completion, killing it if it outlives `limit`.
fn run_bounded(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("IDP_GATE_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn idp-gate");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out.expect("wait for idp-gate"), start.elapsed()),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!(
                "`idp-gate {}` did not exit within {limit:?}",
                args.join(" ")
            );
        }
    }
}

fn check_config(path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let (out, _) = run_bounded(
        &["check-config", path.to_str().unwrap()],
        env,
        Duration::from_secs(20),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => (true, text),
        Some(1) => (false, text),
        other => panic!("check-config exited with {other:?}:\n{text}"),
    }
}

/// A port that was free a moment ago (the listener is dropped at once).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

// ---------------------------------------------------------------------------
// Helpers: a minimal HTTP/1.1 client.

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Result<Reply, String> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string());
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let data = match body {
            Some((content_type, data)) => {
                builder = builder.header(CONTENT_TYPE, content_type);
                data
            }
            None => String::new(),
        };
        let req = builder
            .body(Full::new(Bytes::from(data)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| format!("{method} {path} on {addr} timed out"))?
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, "GET", path, headers, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

// ---------------------------------------------------------------------------
// Helpers: the gateway as a child process.

/// A running `idp-gate run`, killed on drop.
struct Gate {
    child: tokio::process::Child,
    pid: u32,
    proxy: SocketAddr,
    admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// How `run` finds its config.
#[derive(Clone, Copy)]
enum ConfigVia {
    Flag,
    Env,
}

impl Gate {
    /// Starts `idp-gate run` with the config `yaml(proxy, admin)` and waits
    /// until `/readyz` says 200. Retries with new ports if one was taken in
    /// the meantime.
    async fn start(
        yaml: impl Fn(SocketAddr, SocketAddr) -> String,
        env: &[(&str, &str)],
        via: ConfigVia,
    ) -> Gate {
        for attempt in 0..3 {
            let (proxy, admin) = (free_addr(), free_addr());
            if proxy == admin {
                continue;
            }
            let dir = TempDir::new();
            let path = dir.write("gate.yaml", &yaml(proxy, admin));
            let mut cmd = tokio::process::Command::new(BIN);
            cmd.arg("--log-format")
                .arg("json")
                .arg("run")
                .env_remove("IDP_GATE_CONFIG")
                .env("RUST_LOG", "debug")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            match via {
                ConfigVia::Flag => {
                    cmd.arg("--config").arg(&path);
                }
                ConfigVia::Env => {
                    cmd.env("IDP_GATE_CONFIG", &path);
                }
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("spawn idp-gate run");
            let pid = child.id().expect("pid");
            let stderr = child.stderr.take().expect("stderr");
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let reader = tokio::spawn(async move {
                let mut it = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = it.next_line().await {
                    sink.lock().unwrap().push(line);
                }
            });
            let mut gate = Gate {
                child,
                pid,
                proxy,
                admin,
                lines,
                reader: Some(reader),
                _dir: dir,
            };
            match gate.wait_ready().await {
                Ok(()) => return gate,
                Err(exited) => {
                    let logs = gate.logs().await.join("\n");
                    if exited && attempt < 2 && logs.contains("cannot listen") {
                        continue;
                    }
                    panic!("idp-gate did not become ready (exited: {exited}):\n{logs}");
                }
            }
        }
        unreachable!("three attempts either returned or panicked")
    }

    /// Polls `/readyz` (100 × 50 ms). `Err(true)` if the process exited.
    async fn wait_ready(&mut self) -> Result<(), bool> {
        for _ in 0..100 {
            if self.child.try_wait().expect("try_wait").is_some() {
                return Err(true);
            }
            // Until this gate logs that it has bound both ports, another
            // test's server could hold the admin port it was given.
            let listening = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("idp-gate listening"));
            if listening
                && let Ok(r) = send(self.admin, "GET", "/readyz", &[], None).await
                && r.status == 200
                && serde_json::from_str::<Value>(&r.body).is_ok_and(|v| v["status"] == "ready")
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(false)
    }

    fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit, at most `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!(
                    "idp-gate did not exit within {limit:?}:\n{}",
                    self.lines.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// SIGTERM, then the exit status and how long it took.
    async fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        self.sigterm();
        let status = self.wait_exit(limit).await;
        (status, start.elapsed())
    }

    /// Every stderr line; complete once the process has exited.
    async fn logs(&mut self) -> Vec<String> {
        if self.child.try_wait().ok().flatten().is_some()
            && let Some(reader) = self.reader.take()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        self.lines.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// Helpers: in-process IdP and upstreams.

async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo::serve(listener, std::future::pending()));
    addr
}

struct DevIdp {
    issuer: String,
    keys: Arc<KeyRing>,
    token_url: SocketAddr,
}

async fn start_idp(client_secret: &str) -> DevIdp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}/");
    let keys = Arc::new(KeyRing::generate(Algorithm::RS256).unwrap());
    let settings = idp::DevIdpSettings {
        issuer: issuer.clone(),
        api_audience: API_AUDIENCE.into(),
        clients: vec![idp::DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: client_secret.into(),
            organization: Some("org_acme".into()),
            scopes: vec!["read:items".into()],
        }],
        users: vec![],
        token_ttl: Duration::from_secs(300),
    };
    tokio::spawn(idp::serve(
        listener,
        Arc::new(settings),
        keys.clone(),
        std::future::pending(),
    ));
    DevIdp {
        issuer,
        keys,
        token_url: addr,
    }
}

/// An upstream that answers `slow` after `delay`, and reports on `seen`
/// each request for `path` it has received (only those: a stray connection
/// from another test must not look like the gateway's request).
async fn start_slow_upstream(
    delay: Duration,
    path: &'static str,
    seen: tokio::sync::mpsc::Sender<()>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 1 << 20 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(format!("GET {path} ").as_bytes()) {
                    let _ = seen.send(()).await;
                }
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// check-config

/// Shaped like the design's example config, with env expansion in it.
const EXAMPLE: &str = r#"
listen: "0.0.0.0:8080"
shutdownGraceSeconds: 20
admin:
  listen: "127.0.0.1:9901"
idp:
  issuer: "https://tenant.us.auth0.com/"
  jwksEndpoint: "https://tenant.us.auth0.com/.well-known/jwks.json"
  usernameClaim: "email"
  organizationClaim: "org_id"
  audiences: ["${IDP_GATE_T_CLIENT_ID}"]
  clientSecret: "${IDP_GATE_T_CLIENT_SECRET:-}"
  algorithms: [RS256]
  clockSkewSeconds: 30
  jwks:
    refreshSeconds: 600
    minRefetchIntervalSeconds: 30
    maxStaleSeconds: 86400
    cacheFile: ""
  tokenSources:
    - header: Authorization
upstreams:
  config-deployer:
    url: "${IDP_GATE_T_UPSTREAM_URL:-http://127.0.0.1:9443}"
    connectTimeoutMs: 2000
    requestTimeoutMs: 30000
  config-deployer-eu:
    url: "http://127.0.0.1:9444"
routes:
  - name: health
    match: { path: /health }
    auth: none
    upstream: config-deployer
  - name: config-deployer
    match:
      pathPrefix: /api/configurator
      methods: [GET, POST, PUT, DELETE]
      host: "apk.example.com"
    allow:
      organizations: ["org_abc123"]
      scopes: ["apk:api_create"]
    upstream: config-deployer
    organizationUpstreams:
      org_xyz789: config-deployer-eu
    stripPrefix: false
organizations:
  org_abc123: { name: org1 }
  org_xyz789: { name: org2 }
organizationBinding:
  header: X-WSO2-Organization
  queryParam: organization
forwarding:
  identityHeaders:
    user: X-Forwarded-User
    organization: X-Forwarded-Org
    subject: X-Forwarded-Sub
  claimsHeaders: {}
  forwardAuthorization: true
metrics:
  organizationLabel: false
"#;

/// Lines of `check-config` output that mention `path` as a YAML path.
fn mentions(out: &str, path: &str) -> bool {
    out.lines().any(|l| l.contains(&format!(" {path}: ")))
}

#[test]
fn check_config_accepts_an_example_config_with_env_expansion() {
    let dir = TempDir::new();
    let file = dir.write("example.yaml", EXAMPLE);

    // `${VAR}` set through the child's env; `${VAR:-default}` unset → default.
    let (ok, out) = check_config(&file, &[("IDP_GATE_T_CLIENT_ID", "client-123")]);
    assert!(ok, "expected ok:\n{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");

    // The `${VAR}` really is required: without it, the variable is named at its path.
    let (ok, out) = check_config(&file, &[]);
    assert!(!ok, "{out}");
    assert!(mentions(&out, "idp.audiences[0]"), "{out}");
    assert!(out.contains("IDP_GATE_T_CLIENT_ID"), "{out}");

    // The variable's value wins over the default: a bad value is reported.
    let (ok, out) = check_config(
        &file,
        &[
            ("IDP_GATE_T_CLIENT_ID", "client-123"),
            ("IDP_GATE_T_UPSTREAM_URL", "not a url"),
        ],
    );
    assert!(!ok, "{out}");
    assert!(mentions(&out, "upstreams.config-deployer.url"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn check_config_reports_every_problem_with_its_path_in_one_run() {
    let dir = TempDir::new();
    let file = dir.write(
        "bad.yaml",
        r#"
listen: "127.0.0.1:8080"
admin:
  listen: "127.0.0.1:9901"
idp:
  issuer: "https://tenant.example.com/"
  audiences: ["${IDP_GATE_T_SURELY_UNSET}"]
  algorithms: [RS256, none]
upstreams:
  x:
    url: "not a url"
  good:
    url: "http://127.0.0.1:9"
routes:
  - name: a
    match: { pathPrefix: /a }
    upstream: good
  - name: b
    match: { pathPrefix: /b }
    upstream: nowhere
  - name: a
    match: { pathPrefix: /c }
    upstream: good
"#,
    );
    let (ok, out) = check_config(&file, &[]);
    assert!(!ok, "{out}");
    for path in [
        "routes[1].upstream",
        "routes[2].name",
        "upstreams.x.url",
        "idp.algorithms[1]",
        "idp.audiences[0]",
    ] {
        assert!(mentions(&out, path), "{path} missing from:\n{out}");
    }
    assert!(out.contains("IDP_GATE_T_SURELY_UNSET"), "{out}");
    assert!(out.contains("nowhere"), "{out}");
    assert_eq!(out.lines().count(), 5, "one line per problem:\n{out}");
    for line in out.lines() {
        assert!(line.starts_with(file.to_str().unwrap()), "{line}");
    }

    // An empty allow-list is its own problem, reported beside the others.
    let file = dir.write(
        "empty-algs.yaml",
        &std::fs::read_to_string(&file)
            .unwrap()
            .replace("[RS256, none]", "[]"),
    );
    let (ok, out) = check_config(&file, &[]);
    assert!(!ok, "{out}");
    for path in [
        "idp.algorithms",
        "routes[1].upstream",
        "routes[2].name",
        "upstreams.x.url",
        "idp.audiences[0]",
    ] {
        assert!(mentions(&out, path), "{path} missing from:\n{out}");
    }
}

#[test]
fn check_config_names_an_unknown_key_and_its_path() {
    let dir = TempDir::new();
    let file = dir.write(
        "typo.yaml",
        r#"
idp:
  isuer: "https://tenant.example.com/"
  audiences: [api]
upstreams: { good: { url: "http://127.0.0.1:9" } }
routes: [ { name: a, match: { pathPrefix: /a }, upstream: good } ]
"#,
    );
    let (ok, out) = check_config(&file, &[]);
    assert!(!ok, "{out}");
    assert!(mentions(&out, "idp.isuer"), "{out}");
    assert!(out.contains("unknown field `isuer`"), "{out}");

    // Deeper: a typo inside a route.
    let file = dir.write(
        "typo2.yaml",
        r#"
upstreams: { good: { url: "http://127.0.0.1:9" } }
routes: [ { name: a, auth: none, match: { pathPrefx: /a }, upstream: good } ]
"#,
    );
    let (ok, out) = check_config(&file, &[]);
    assert!(!ok, "{out}");
    assert!(mentions(&out, "routes[0].match.pathPrefx"), "{out}");
}

#[test]
fn check_config_names_gateway_headers_and_shared_cache_files_by_path() {
    let dir = TempDir::new();
    let file = dir.write(
        "headers.yaml",
        r#"
idps:
  - name: tenant
    issuer: "https://tenant.example.com/"
    audiences: [api]
    jwks: { cacheFile: /var/cache/idp-gate/keys.json }
  - name: custom-domain
    issuer: "https://login.example.com/"
    audiences: [api]
    jwks: { cacheFile: /var/cache/idp-gate/./old/../keys.json }
upstreams: { good: { url: "http://127.0.0.1:9" } }
routes: [ { name: a, match: { pathPrefix: /a }, upstream: good } ]
organizationBinding: { header: X-Forwarded-For }
forwarding:
  identityHeaders: { user: X-User }
  claimsHeaders:
    "https://example.com/roles": Authorization
    team: X_User
    tier: X-Tier
"#,
    );
    let (ok, out) = check_config(&file, &[]);
    assert!(!ok, "{out}");
    for path in [
        r#"forwarding.claimsHeaders."https://example.com/roles""#,
        "forwarding.claimsHeaders.team",
        "organizationBinding.header",
        "idps[1].jwks.cacheFile",
    ] {
        assert!(mentions(&out, path), "{path} missing from:\n{out}");
    }
    assert!(
        out.contains("x_user is also forwarding.identityHeaders.user"),
        "{out}"
    );
    // Both providers' paths, as written.
    assert!(
        out.contains("/var/cache/idp-gate/./old/../keys.json"),
        "{out}"
    );
    assert!(
        out.contains("idps[0].jwks.cacheFile (\"/var/cache/idp-gate/keys.json\")"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 4, "one line per problem:\n{out}");
}

#[test]
fn check_config_on_a_missing_file_fails() {
    let dir = TempDir::new();
    let (ok, out) = check_config(&dir.0.join("nope.yaml"), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("cannot read"), "{out}");
}

// ---------------------------------------------------------------------------
// run / version

#[test]
fn run_with_a_bad_config_exits_quickly_with_one_line() {
    let dir = TempDir::new();
    let file = dir.write(
        "bad.yaml",
        r#"
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
upstreams: { good: { url: "http://127.0.0.1:9" } }
routes:
  - { name: a, auth: none, match: { pathPrefix: /a }, upstream: good }
  - { name: b, auth: none, match: { pathPrefix: /b }, upstream: nowhere }
"#,
    );
    let (out, took) = run_bounded(
        &["run", "--config", file.to_str().unwrap()],
        &[],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("routes[1].upstream"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn run_fails_with_a_reason_when_its_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let file = dir.write(
        "taken.yaml",
        &format!(
            r#"
listen: "127.0.0.1:{port}"
admin: {{ listen: "127.0.0.1:0" }}
upstreams: {{ good: {{ url: "http://127.0.0.1:9" }} }}
routes: [ {{ name: a, auth: none, match: {{ pathPrefix: /a }}, upstream: good }} ]
"#
        ),
    );
    let (out, _) = run_bounded(
        &["run", "--config", file.to_str().unwrap()],
        &[],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot listen") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

#[test]
fn version_prints_version_and_commit() {
    let (out, _) = run_bounded(&["version"], &[], Duration::from_secs(10));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!("idp-gate {} ", env!("CARGO_PKG_VERSION"));
    assert!(stdout.starts_with(&expected), "{stdout}");
    let commit = stdout
        .split("commit ")
        .nth(1)
        .and_then(|rest| rest.split([',', ')', ' ']).next())
        .unwrap_or_else(|| panic!("no commit in {stdout}"));
    assert!(
        commit == "unknown"
            || (!commit.is_empty() && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{stdout}"
    );
}

fn public_config(listen: SocketAddr, admin: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"
listen: "{listen}"
shutdownGraceSeconds: 5
admin:
  listen: "{admin}"
upstreams:
  up:
    url: "http://{upstream}"
routes:
  - name: public
    match: {{ pathPrefix: /public }}
    auth: none
    upstream: up
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_its_config_from_idp_gate_config() {
    let echo = start_echo().await;
    let mut gate = Gate::start(|l, a| public_config(l, a, echo), &[], ConfigVia::Env).await;
    let r = get(gate.proxy, "/public/hello", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["path"], "/public/hello");
    let (status, _) = gate.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// End to end

fn jwt_config(
    listen: SocketAddr,
    admin: SocketAddr,
    issuer: &str,
    jwks_endpoint: Option<&str>,
    echo: SocketAddr,
) -> String {
    let jwks = jwks_endpoint.map_or(String::new(), |u| format!("  jwksEndpoint: \"{u}\"\n"));
    format!(
        r#"
listen: "{listen}"
shutdownGraceSeconds: 5
admin:
  listen: "{admin}"
idp:
  issuer: "{issuer}"
{jwks}  audiences: ["${{GATE_T_AUDIENCE}}"]
  clientSecret: "${{GATE_T_CLIENT_SECRET}}"
  algorithms: [RS256, HS256]
upstreams:
  echo:
    url: "http://{echo}"
routes:
  - name: public
    match: {{ path: /public }}
    auth: none
    upstream: echo
  - name: acme-api
    match: {{ pathPrefix: /api }}
    allow:
      organizations: [org_acme]
    upstream: echo
"#
    )
}

async fn client_credentials_token(idp: &DevIdp, secret: &str) -> String {
    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={secret}&audience={}",
        url::form_urlencoded::byte_serialize(API_AUDIENCE.as_bytes()).collect::<String>()
    );
    let r = send(
        idp.token_url,
        "POST",
        "/oauth/token",
        &[],
        Some(("application/x-www-form-urlencoded", form)),
    )
    .await
    .expect("token request");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The request id of a reply: the header on proxied responses, the body
/// field on the gateway's own.
fn request_id_of(r: &Reply) -> String {
    let h = r.header("x-request-id");
    if !h.is_empty() {
        return h.to_owned();
    }
    r.json()["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request id in {}", r.body))
        .to_owned()
}

async fn end_to_end(discovery: bool) {
    let secret = format!("cs-{}", uuid::Uuid::new_v4().simple());
    let idp = start_idp(&secret).await;
    let echo = start_echo().await;
    let jwks_url = format!("{}.well-known/jwks.json", idp.issuer);
    let issuer = idp.issuer.clone();
    let mut gate = Gate::start(
        |l, a| {
            jwt_config(
                l,
                a,
                &issuer,
                (!discovery).then_some(jwks_url.as_str()),
                echo,
            )
        },
        &[
            ("GATE_T_AUDIENCE", API_AUDIENCE),
            ("GATE_T_CLIENT_SECRET", &secret),
        ],
        ConfigVia::Flag,
    )
    .await;

    // Tokens: from the token endpoint, minted offline, HS256 with the
    // client secret, and one with another token's signature.
    let acme = client_credentials_token(&idp, &secret).await;
    let other = mint(
        &idp.keys.active(),
        &MintRequest {
            issuer: idp.issuer.clone(),
            audience: vec![API_AUDIENCE.into()],
            org: Some("org_other".into()),
            user: "mallory@example.com".into(),
            scopes: vec!["read:items".into()],
            ttl: Duration::from_secs(300),
            extra_claims: Default::default(),
        },
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &json!({
            "iss": idp.issuer, "aud": API_AUDIENCE, "sub": "hs-user", "org_id": "org_acme",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let acme_parts: Vec<&str> = acme.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    assert_eq!(acme_parts.len(), 3);
    let forged = format!("{}.{}.{}", acme_parts[0], acme_parts[1], other_parts[2]);
    let bearer = |t: &str| format!("Bearer {t}");

    let mut sent: Vec<(String, u16)> = Vec::new();

    let ok = get(
        gate.proxy,
        "/api/items?x=1",
        &[("authorization", &bearer(&acme))],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let echoed = ok.json();
    assert_eq!(echoed["path"], "/api/items?x=1");
    assert_eq!(echoed["headers"]["x-forwarded-org"], "org_acme");
    assert_eq!(
        echoed["headers"]["x-forwarded-sub"],
        "gate-test-client@clients"
    );
    sent.push((request_id_of(&ok), 200));

    let hs_ok = get(gate.proxy, "/api/items", &[("authorization", &bearer(&hs))]).await;
    assert_eq!(hs_ok.status, 200, "{}", hs_ok.body);
    sent.push((request_id_of(&hs_ok), 200));

    let denied = get(
        gate.proxy,
        "/api/items",
        &[("authorization", &bearer(&other))],
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(denied.json()["error_description"], "organization_denied");
    sent.push((request_id_of(&denied), 403));

    let missing = get(gate.proxy, "/api/items", &[]).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    let challenge = missing.header(WWW_AUTHENTICATE.as_str());
    assert!(
        challenge.starts_with("Bearer") && !challenge.contains("error="),
        "{challenge}"
    );
    sent.push((request_id_of(&missing), 401));

    let bad = get(
        gate.proxy,
        "/api/items",
        &[("authorization", &bearer(&forged))],
    )
    .await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert!(
        bad.header(WWW_AUTHENTICATE.as_str())
            .contains("invalid_token")
    );
    assert!(!bad.body.contains(&forged));
    sent.push((request_id_of(&bad), 401));

    let public = get(gate.proxy, "/public", &[]).await;
    assert_eq!(public.status, 200, "{}", public.body);
    sent.push((request_id_of(&public), 200));

    let (status, took) = gate.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let logs = gate.logs().await;

    // Every line is JSON.
    let parsed: Vec<Value> = logs
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!parsed.is_empty());

    // One access line per request, with id, route, status and latency.
    let access: Vec<&Value> = parsed.iter().filter(|v| v["target"] == "access").collect();
    assert_eq!(access.len(), sent.len(), "{access:#?}");
    for (id, status) in &sent {
        let line = access
            .iter()
            .find(|v| v["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no access line for {id}: {access:#?}"));
        assert_eq!(line["status"], *status, "{line}");
        assert!(line["route"].is_string(), "{line}");
        assert!(line["latency_ms"].is_number(), "{line}");
    }
    assert!(
        access
            .iter()
            .any(|v| v["route"] == "acme-api" && v["reason"] == "organization_denied"),
        "{access:#?}"
    );
    assert!(
        access.iter().any(|v| v["reason"] == "missing_token"),
        "{access:#?}"
    );

    // Nothing secret in any line: tokens, their parts, the client secret.
    let all = logs.join("\n");
    let mut secrets = vec![secret.clone(), acme.clone(), other.clone(), hs.clone()];
    secrets.extend(
        [&acme, &other, &hs]
            .iter()
            .flat_map(|t| t.split('.').map(str::to_owned)),
    );
    for s in &secrets {
        assert!(
            !all.contains(s.as_str()),
            "the logs contain a secret or token part {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_a_jwks_endpoint() {
    end_to_end(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_discovery() {
    end_to_end(true).await;
}

// ---------------------------------------------------------------------------
// Shutdown and robustness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let grace = Duration::from_secs(5);
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(4);
    let slow = start_slow_upstream(Duration::from_secs(1), "/public/slow", seen_tx).await;
    let mut gate = Gate::start(|l, a| public_config(l, a, slow), &[], ConfigVia::Flag).await;

    let proxy = gate.proxy;
    let inflight = tokio::spawn(async move { send(proxy, "GET", "/public/slow", &[], None).await });
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the request reached the upstream")
        .expect("upstream channel open");

    let start = Instant::now();
    gate.sigterm();

    // Not ready any more (503), or the admin port is already closed.
    let mut not_ready = false;
    for _ in 0..100 {
        match send(gate.admin, "GET", "/readyz", &[], None).await {
            Ok(r) if r.status == 200 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => {
                assert_eq!(r.status, 503, "{}", r.body);
                not_ready = true;
                break;
            }
            Err(_) => {
                not_ready = true;
                break;
            }
        }
    }
    assert!(not_ready, "/readyz stayed 200 after SIGTERM");
    // New requests are refused or answered 503 while draining.
    if let Ok(r) = send(gate.proxy, "GET", "/public/new", &[], None).await {
        assert_eq!(r.status, 503, "{}", r.body);
    }

    let r = inflight.await.unwrap().expect("the in-flight request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "slow");

    let status = gate.wait_exit(grace + Duration::from_secs(5)).await;
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < grace, "exit took {took:?}, grace {grace:?}");
}

async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything; that is fine.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_kills_the_gateway() {
    let echo = start_echo().await;
    let mut gate = Gate::start(|l, a| public_config(l, a, echo), &[], ConfigVia::Flag).await;

    let garbage = raw_exchange(gate.proxy, b"GARBAGE\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    let binary = raw_exchange(gate.proxy, &[0u8, 0xff, 0xfe, 0x13, 0x37, b'\n', 0, 0]).await;
    assert!(binary.starts_with("HTTP/1.1 400"), "{binary}");

    let mut huge = b"GET /public HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 200 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    // 431, or a reset if the server closed while the client was still writing.
    let big = raw_exchange(gate.proxy, &huge).await;
    assert!(big.is_empty() || big.starts_with("HTTP/1.1 431"), "{big}");

    // A body cut off half-way: the client goes away mid-request.
    let mut cut = TcpStream::connect(gate.proxy).await.expect("connect");
    cut.write_all(b"POST /public HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nshort")
        .await
        .expect("write");
    drop(cut);

    let r = get(gate.proxy, "/public/after", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["path"], "/public/after");
    assert!(
        gate.child.try_wait().unwrap().is_none(),
        "the gateway exited"
    );
    let ready = get(gate.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200);

    let (status, _) = gate.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

/// The shipped example configs validate once their variables are set.
#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let cases: [(&str, &[(&str, &str)]); 2] = [
        (
            "example.yaml",
            &[
                ("IDP_ISSUER", "https://tenant.us.auth0.com/"),
                ("IDP_CLIENT_ID", "client-id"),
            ],
        ),
        (
            "apk-auth0.yaml",
            &[
                ("AUTH0_DOMAIN", "tenant.us.auth0.com"),
                ("IDP_CLIENT_ID", "client-id"),
            ],
        ),
    ];
    for (file, env) in cases {
        let path = root.join(file);
        let out = std::process::Command::new(BIN)
            .arg("check-config")
            .arg(&path)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Without them, the missing variables are named.
        let out = std::process::Command::new(BIN)
            .arg("check-config")
            .arg(&path)
            .env_remove("IDP_CLIENT_ID")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("IDP_CLIENT_ID"));
    }
}
