//! The pieces of the docker-compose stack as separate processes:
//! `idp-gate dev-idp`, `idp-gate echo`, `idp-gate probe`, and the gateway
//! running `config/compose.yaml` pointed at them through its variables.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::{Request, header};

use crate::support::*;

/// Starts `idp-gate ARGS` and returns it with the line where it says it
/// listens.
async fn start(args: &[&str]) -> (Proc, String) {
    let mut proc = Proc::start(&mut idp_gate(args));
    let line = proc
        .wait_for("a start-up line", Duration::from_secs(20), |l| {
            l.contains(" listening on ").then(|| l.trim().to_string())
        })
        .await;
    (proc, line)
}

/// The address after "listening on ".
fn listening_addr(line: &str) -> SocketAddr {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

fn probe(url: &str) -> bool {
    run(
        &mut idp_gate(&["probe", url, "--timeout", "2s"]),
        Duration::from_secs(20),
    )
    .0
    .status
    .success()
}

/// The README's token request: alice's access token from the dev IdP.
async fn alice_token(idp: SocketAddr) -> String {
    let form = "grant_type=password&username=alice%40org1.example&password=alice-password\
                &client_id=demo-client&client_secret=demo-client-secret\
                &audience=https%3A%2F%2Fapk.example.com%2Fapi\
                &scope=openid%20apk%3Aapi_create%20apk%3Aapi_view";
    let r = send(
        &client(),
        Request::post(format!("http://{idp}/oauth/token"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(full(form))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_idp_echo_and_gateway_as_separate_processes() {
    let (idp, line) = start(&["dev-idp", "--listen", "127.0.0.1:0"]).await;
    let idp_addr = listening_addr(&line);
    let issuer = format!("http://{idp_addr}/");
    assert!(line.ends_with(&format!("issuer {issuer}")), "{line}");
    let (echo, line) = start(&["echo", "--listen", "127.0.0.1:0"]).await;
    let echo_addr = listening_addr(&line);

    assert!(probe(&format!("{issuer}.well-known/openid-configuration")));
    assert!(
        !probe(&format!("{issuer}no-such-endpoint")),
        "404 is not healthy"
    );

    let r = fetch(&format!("http://{echo_addr}/any/path?q=1"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/any/path?q=1");

    let token = alice_token(idp_addr).await;

    // The compose config, its addresses moved to loopback by its variables.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.yaml");
    let gate = GateProcess::file(&config)
        .env("IDP_ISSUER", &issuer)
        .env("ECHO_URL", &format!("http://{echo_addr}"))
        .env("IDP_GATE_LISTEN", "127.0.0.1:0")
        .env("IDP_GATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let readyz = gate.admin_url("/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe(&readyz) {
        assert!(Instant::now() < deadline, "gateway not ready in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let r = gate.get("/api/configurator/apis", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.assert_upstream(&[("x-wso2-organization", "org1")]);
    assert_eq!(gate.get("/api/configurator/apis", None).await.status, 401);

    for mut p in [gate.proc, echo, idp] {
        let (status, _) = p.terminate(Duration::from_secs(15)).await;
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
    let (out, _) = run(
        &mut idp_gate(&["probe", "http://127.0.0.1:9/readyz", "--timeout", "soon"]),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
}

#[test]
fn dev_idp_reports_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (out, _) = run(
        &mut idp_gate(&["dev-idp", "--listen", &addr]),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
