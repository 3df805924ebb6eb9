//! The pieces of the docker-compose stack as separate processes:
//! `idp-gate dev-idp`, `idp-gate echo`, `idp-gate probe`, and the gateway
//! running `config/compose.yaml` pointed at them through its variables.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_idp-gate");

/// A child process, killed on drop if a test fails half-way.
struct Proc(Child);

impl Proc {
    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `idp-gate ARGS` and returns it with its first stdout line.
fn start(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn idp-gate");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no start-up line in time");
    (proc, line.trim().to_string())
}

/// The address after "listening on ".
fn listening_addr(line: &str) -> SocketAddr {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// One HTTP/1.1 request with `Connection: close`; (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn probe(url: &str) -> bool {
    Command::new(BIN)
        .args(["probe", url, "--timeout", "2s"])
        .stdout(Stdio::null())
        .status()
        .expect("run probe")
        .success()
}

/// The README's token request: alice's access token from the dev IdP.
fn alice_token(idp: SocketAddr) -> String {
    let form = "grant_type=password&username=alice%40org1.example&password=alice-password\
                &client_id=demo-client&client_secret=demo-client-secret\
                &audience=https%3A%2F%2Fapk.example.com%2Fapi\
                &scope=openid%20apk%3Aapi_create%20apk%3Aapi_view";
    let (status, body) = http(
        idp,
        "POST",
        "/oauth/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    );
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).expect("token JSON");
    json["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

#[test]
fn dev_idp_echo_and_gateway_as_separate_processes() {
    let (idp, line) = start(&["dev-idp", "--listen", "127.0.0.1:0"]);
    let idp_addr = listening_addr(&line);
    let issuer = format!("http://{idp_addr}/");
    assert!(line.ends_with(&format!("issuer {issuer}")), "{line}");
    let (echo, line) = start(&["echo", "--listen", "127.0.0.1:0"]);
    let echo_addr = listening_addr(&line);

    assert!(probe(&format!("{issuer}.well-known/openid-configuration")));
    assert!(
        !probe(&format!("{issuer}no-such-endpoint")),
        "404 is not healthy"
    );

    let (status, body) = http(echo_addr, "GET", "/any/path?q=1", &[], "");
    assert_eq!(status, 200);
    let echoed: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echoed["path"], "/any/path?q=1");

    let token = alice_token(idp_addr);

    // The compose config, its addresses moved to loopback by its variables.
    let (proxy, admin) = (free_addr(), free_addr());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.yaml");
    let gate = Proc(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("IDP_ISSUER", &issuer)
            .env("ECHO_URL", format!("http://{echo_addr}"))
            .env("IDP_GATE_LISTEN", proxy.to_string())
            .env("IDP_GATE_ADMIN_LISTEN", admin.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn idp-gate run"),
    );
    let readyz = format!("http://{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe(&readyz) {
        assert!(Instant::now() < deadline, "gateway not ready in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    let bearer = format!("Bearer {token}");
    let (status, body) = http(
        proxy,
        "GET",
        "/api/configurator/apis",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echoed["headers"]["x-wso2-organization"], "org1");
    let (status, _) = http(proxy, "GET", "/api/configurator/apis", &[], "");
    assert_eq!(status, 401);

    for p in [gate, echo, idp] {
        let status = p.terminate(Duration::from_secs(15));
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn probe_refuses_what_it_cannot_check() {
    for url in [
        "https://127.0.0.1:1/readyz",
        "not a url",
        "127.0.0.1:9901/readyz",
    ] {
        assert!(!probe(url), "{url}");
    }
    let out = Command::new(BIN)
        .args(["probe", "http://127.0.0.1:9/readyz", "--timeout", "soon"])
        .output()
        .expect("run probe");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
}

#[test]
fn dev_idp_reports_a_taken_port() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(BIN)
        .args(["dev-idp", "--listen", &addr])
        .output()
        .expect("run dev-idp");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
