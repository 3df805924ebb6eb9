//! Binary-level tests: the real `idp-gate` executable, driven through its
//! command line, with a development IdP, an echo upstream and test clients
//! running in-process on 127.0.0.1.
//!
//! Every child process is killed on drop; readiness is awaited by polling the
//! admin `/readyz` in a bounded loop, never by a fixed sleep.

use std::path::Path;
use std::time::{Duration, Instant};

use http::header::WWW_AUTHENTICATE;
use idp_gate::demo::idp::{DevClient, DevIdpSettings};
use idp_gate::demo::mint::{MintRequest, mint};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::*;

const API_AUDIENCE: &str = "https://api.idp-gate.test";
const CLIENT_ID: &str = "gate-test-client";

fn check_config(path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let (out, _) = run(
        idp_gate(&["check-config", path.to_str().unwrap()]).envs(env.iter().copied()),
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

/// `idp-gate --log-format json run` on `yaml`, logging at `debug`.
fn launch(yaml: &str) -> Launch {
    GateProcess::config(yaml)
        .arg("--log-format")
        .arg("json")
        .env("RUST_LOG", "debug")
}

/// The dev IdP with one client of `org_acme` whose secret is `client_secret`.
async fn start_idp(client_secret: &str) -> DevIdp {
    DevIdp::start(Algorithm::RS256, "", |issuer| DevIdpSettings {
        issuer,
        api_audience: API_AUDIENCE.into(),
        clients: vec![DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: client_secret.into(),
            organization: Some("org_acme".into()),
            scopes: vec!["read:items".into()],
        }],
        users: vec![],
        token_ttl: Duration::from_secs(300),
    })
    .await
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
    let dir = TempDir::new("cli");
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
    let dir = TempDir::new("cli");
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
        std::fs::read_to_string(&file)
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
    let dir = TempDir::new("cli");
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
    let dir = TempDir::new("cli");
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
    let dir = TempDir::new("cli");
    let (ok, out) = check_config(&dir.join("nope.yaml"), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("cannot read"), "{out}");
}

// ---------------------------------------------------------------------------
// run / version

#[test]
fn run_with_a_bad_config_exits_quickly_with_one_line() {
    let dir = TempDir::new("cli");
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
    let (out, took) = run(
        &mut idp_gate(&["run", "--config", file.to_str().unwrap()]),
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
    let dir = TempDir::new("cli");
    let file = dir.write(
        "taken.yaml",
        format!(
            r#"
listen: "127.0.0.1:{port}"
admin: {{ listen: "127.0.0.1:0" }}
upstreams: {{ good: {{ url: "http://127.0.0.1:9" }} }}
routes: [ {{ name: a, auth: none, match: {{ pathPrefix: /a }}, upstream: good }} ]
"#
        ),
    );
    let (out, _) = run(
        &mut idp_gate(&["run", "--config", file.to_str().unwrap()]),
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
    let (out, _) = run(&mut idp_gate(&["version"]), Duration::from_secs(10));
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

fn public_config(upstream: &str) -> String {
    format!(
        r#"
shutdownGraceSeconds: 5
upstreams:
  up:
    url: "{upstream}"
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
    let echo = Echo::start().await;
    let mut gate = launch(&public_config(&echo.url()))
        .config_from_env()
        .ready()
        .await;
    let r = gate.get("/public/hello", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/public/hello");
    let (status, _) = gate.proc.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// End to end

fn jwt_config(issuer: &str, jwks_endpoint: Option<&str>, echo: &str) -> String {
    let jwks = jwks_endpoint.map_or(String::new(), |u| format!("  jwksEndpoint: \"{u}\"\n"));
    format!(
        r#"
shutdownGraceSeconds: 5
idp:
  issuer: "{issuer}"
{jwks}  audiences: ["${{GATE_T_AUDIENCE}}"]
  clientSecret: "${{GATE_T_CLIENT_SECRET}}"
  algorithms: [RS256, HS256]
upstreams:
  echo:
    url: "{echo}"
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
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", secret),
        ("audience", API_AUDIENCE),
    ];
    let r = post_form(&idp.token_url(), &form, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The request id of a reply: the header on proxied responses, the body
/// field on the gateway's own.
fn request_id_of(r: &Resp) -> String {
    if let Some(h) = r.header("x-request-id").filter(|h| !h.is_empty()) {
        return h;
    }
    r.json()["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request id in {}", r.text()))
        .to_owned()
}

async fn end_to_end(discovery: bool) {
    let secret = format!("cs-{}", uuid::Uuid::new_v4().simple());
    let idp = start_idp(&secret).await;
    let echo = Echo::start().await;
    let jwks_url = format!("{}.well-known/jwks.json", idp.issuer());
    let yaml = jwt_config(
        &idp.issuer(),
        (!discovery).then_some(jwks_url.as_str()),
        &echo.url(),
    );
    let mut gate = launch(&yaml)
        .env("GATE_T_AUDIENCE", API_AUDIENCE)
        .env("GATE_T_CLIENT_SECRET", &secret)
        .ready()
        .await;

    // Tokens: from the token endpoint, minted offline, HS256 with the
    // client secret, and one with another token's signature.
    let acme = client_credentials_token(&idp, &secret).await;
    let other = mint(
        &idp.keys.active(),
        &MintRequest {
            issuer: idp.issuer(),
            audience: vec![API_AUDIENCE.into()],
            org: Some("org_other".into()),
            user: "mallory@example.com".into(),
            scopes: vec!["read:items".into()],
            ttl: Duration::from_secs(300),
            extra_claims: Default::default(),
        },
    )
    .unwrap();
    let now = now();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &json!({
            "iss": idp.issuer(), "aud": API_AUDIENCE, "sub": "hs-user", "org_id": "org_acme",
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let acme_parts: Vec<&str> = acme.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    assert_eq!(acme_parts.len(), 3);
    let forged = format!("{}.{}.{}", acme_parts[0], acme_parts[1], other_parts[2]);

    let mut sent: Vec<(String, u16)> = Vec::new();

    let ok = gate.get("/api/items?x=1", Some(&acme)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let echoed = ok.json();
    assert_eq!(echoed["path"], "/api/items?x=1");
    ok.assert_upstream(&[
        ("x-forwarded-org", "org_acme"),
        ("x-forwarded-sub", "gate-test-client@clients"),
    ]);
    sent.push((request_id_of(&ok), 200));

    let hs_ok = gate.get("/api/items", Some(&hs)).await;
    assert_eq!(hs_ok.status, 200, "{}", hs_ok.text());
    sent.push((request_id_of(&hs_ok), 200));

    let denied = gate.get("/api/items", Some(&other)).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.json()["error_description"], "organization_denied");
    sent.push((request_id_of(&denied), 403));

    let missing = gate.get("/api/items", None).await;
    assert_eq!(missing.status, 401, "{}", missing.text());
    let challenge = missing
        .header(WWW_AUTHENTICATE.as_str())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && !challenge.contains("error="),
        "{challenge}"
    );
    sent.push((request_id_of(&missing), 401));

    let bad = gate.get("/api/items", Some(&forged)).await;
    assert_eq!(bad.status, 401, "{}", bad.text());
    assert!(
        bad.header(WWW_AUTHENTICATE.as_str())
            .unwrap_or_default()
            .contains("invalid_token")
    );
    assert!(!bad.text().contains(&forged));
    sent.push((request_id_of(&bad), 401));

    let public = gate.get("/public", None).await;
    assert_eq!(public.status, 200, "{}", public.text());
    sent.push((request_id_of(&public), 200));

    let (status, took) = gate.proc.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let logs = gate.logs();

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
    let _load = timed().await;
    let grace = Duration::from_secs(5);
    let slow = SlowUpstream::start(Duration::from_secs(1)).await;
    let mut gate = launch(&public_config(&slow.url())).ready().await;

    let url = gate.url("/public/slow");
    let inflight = tokio::spawn(async move { fetch(&url, &[]).await });
    slow.arrived("/public/slow").await;

    let start = Instant::now();
    gate.proc.signal("-TERM");

    // Not ready any more (503), or the admin port is already closed.
    let mut not_ready = false;
    for _ in 0..100 {
        match fetch(&gate.admin_url("/readyz"), &[]).await {
            Ok(r) if r.status == 200 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(r) => {
                assert_eq!(r.status, 503, "{}", r.text());
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
    if let Ok(r) = fetch(&gate.url("/public/new"), &[]).await {
        assert_eq!(r.status, 503, "{}", r.text());
    }

    let r = inflight.await.unwrap().expect("the in-flight request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slow");

    let status = gate.proc.exit_within(grace + Duration::from_secs(5)).await;
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < grace, "exit took {took:?}, grace {grace:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_kills_the_gateway() {
    let echo = Echo::start().await;
    let mut gate = launch(&public_config(&echo.url())).ready().await;

    let garbage = raw(gate.proxy, b"GARBAGE\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    let binary = raw(gate.proxy, &[0u8, 0xff, 0xfe, 0x13, 0x37, b'\n', 0, 0]).await;
    assert!(binary.starts_with("HTTP/1.1 400"), "{binary}");

    let mut huge = b"GET /public HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 200 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    // 431, or a reset if the server closed while the client was still writing.
    let big = raw(gate.proxy, &huge).await;
    assert!(big.is_empty() || big.starts_with("HTTP/1.1 431"), "{big}");

    // A body cut off half-way: the client goes away mid-request.
    let mut cut = TcpStream::connect(gate.proxy).await.expect("connect");
    cut.write_all(b"POST /public HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nshort")
        .await
        .expect("write");
    drop(cut);

    let r = gate.get("/public/after", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/public/after");
    gate.proc.assert_running();
    assert_eq!(gate.readyz().await.status, 200);

    let (status, _) = gate.proc.terminate(Duration::from_secs(10)).await;
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
        let check = || idp_gate(&["check-config", path.to_str().unwrap()]);
        let (out, _) = run(check().envs(env.iter().copied()), Duration::from_secs(20));
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Without them, the missing variables are named.
        let (out, _) = run(check().env_remove("IDP_CLIENT_ID"), Duration::from_secs(20));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("IDP_CLIENT_ID"));
    }
}
