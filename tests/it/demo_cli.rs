//! `idp-gate demo` as a user meets it: start the binary, run the curl
//! commands it printed exactly as printed, and check what they answer.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Starts the demo on free ports and returns it with its printed guide.
async fn start_demo(extra: &[&str]) -> (Proc, Vec<String>) {
    let mut demo = Proc::start(idp_gate(&["demo"]).args(extra).args([
        "--port",
        "0",
        "--admin-port",
        "0",
        "--idp-port",
        "0",
        "--upstream-port",
        "0",
    ]));
    demo.wait_for("the demo's guide", Duration::from_secs(30), |l| {
        l.starts_with("Press Ctrl-C").then_some(())
    })
    .await;
    let lines = demo.stdout();
    (demo, lines)
}

/// The command that follows the comment line starting with `marker`.
fn command_after<'a>(lines: &'a [String], marker: &str) -> &'a str {
    let i = lines
        .iter()
        .position(|l| l.starts_with(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in the guide: {lines:#?}"));
    &lines[i + 1]
}

/// Runs a printed curl command through the shell exactly as printed, asking
/// curl only to report the status code.
fn status_of(command: &str) -> u16 {
    assert!(
        command.starts_with("curl "),
        "not a curl command: {command}"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} -s -o /dev/null -w '%{{http_code}}'"))
        .output()
        .expect("run curl (is curl installed?)");
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a status code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_curls_answer_as_promised() {
    let (mut demo, lines) = start_demo(&[]).await;
    let expectations = [
        ("# 1.", 200),
        ("# 2.", 403),
        ("# 3.", 401),
        ("# 4.", 200),
        ("# 5.", 200),
        ("# 6.", 200),
    ];
    for (marker, want) in expectations {
        let command = command_after(&lines, marker);
        assert_eq!(status_of(command), want, "{marker} {command}");
    }

    // Org-claim routing is visible in the echo: bob's request arrives under /org2.
    let routed = command_after(&lines, "# 4.").replacen("curl -i", "curl -s", 1);
    let out = Command::new("sh").arg("-c").arg(&routed).output().unwrap();
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["path"], "/org2/api/am/admin/settings", "{echo}");

    // The token command prints a token the running demo accepts.
    let token_cmd = lines
        .iter()
        .find(|l| l.starts_with("idp-gate token "))
        .expect("a token command");
    let (out, _) = run(
        Command::new("sh")
            .arg("-c")
            .arg(token_cmd.replacen("idp-gate", BIN, 1)),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let with_minted = command_after(&lines, "# 1.").replace(
        command_after(&lines, "# 1.")
            .split("Bearer ")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap(),
        &token,
    );
    assert_eq!(status_of(&with_minted), 200, "{with_minted}");

    // explain, against the demo's own config and IdP, agrees with the gateway.
    let port_of = |prefix: &str| -> String {
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap();
        line.split("127.0.0.1:")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect()
    };
    let dir = TempDir::new("explain");
    let (printed, _) = run(
        &mut idp_gate(&[
            "demo",
            "--print-config",
            "--idp-port",
            &port_of("dev IdP"),
            "--upstream-port",
            &port_of("echo upstream"),
        ]),
        Duration::from_secs(20),
    );
    let config_file = dir.write("demo.yaml", &printed.stdout);
    let bearer = |marker: &str| -> String {
        command_after(&lines, marker)
            .split("Bearer ")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    let explain = |token: &str| {
        let (out, _) = run(
            idp_gate(&["explain", "--config"]).arg(&config_file).args([
                "--token",
                token,
                "--method",
                "GET",
                "--path",
                "/api/configurator/apis",
            ]),
            Duration::from_secs(20),
        );
        out
    };
    let alice = bearer("# 1.");
    let out = explain(&alice);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{report}");
    assert!(report.contains("route: config-deployer"), "{report}");
    assert!(report.contains("upstream: echo"), "{report}");
    let signature = alice.rsplit('.').next().unwrap();
    assert!(
        !report.contains(signature),
        "explain printed the signature: {report}"
    );
    let out = explain(&bearer("# 2."));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("organization_denied"), "{report}");
    assert!(report.contains("verdict: refused with 403"), "{report}");

    // Ctrl-C ends it cleanly.
    demo.signal("-INT");
    let status = demo.exit_within(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_demo_tokens_work_too() {
    let (_demo, lines) = start_demo(&["--alg", "ES256"]).await;
    let command = command_after(&lines, "# 1.");
    let token = command
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(status_of(command), 200);
    assert_eq!(status_of(command_after(&lines, "# 2.")), 403);
}

#[test]
fn print_config_shows_a_valid_config() {
    let (out, _) = run(
        &mut idp_gate(&["demo", "--print-config", "--port", "18080"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Printed, not bound: the port is only a value in the config.
    assert!(text.contains("listen: \"127.0.0.1:18080\""), "{text}");
    let dir = TempDir::new("demo-config");
    let file = dir.write("demo.yaml", &text);
    let (check, _) = run(
        idp_gate(&["check-config"]).arg(&file),
        Duration::from_secs(20),
    );
    assert!(check.status.success(), "{check:?}");
}
