//! `idp-gate demo` as a user meets it: start the binary, run the curl
//! commands it printed exactly as printed, and check what they answer.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_idp-gate");

/// Kills the demo if a test fails half-way.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the demo on free ports and returns it with its printed guide.
fn start_demo(extra: &[&str]) -> (Demo, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(extra)
        .args([
            "--port",
            "0",
            "--admin-port",
            "0",
            "--idp-port",
            "0",
            "--upstream-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start idp-gate demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("demo printed no guide in time; got: {lines:#?}"));
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if done {
            return (demo, lines);
        }
    }
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

#[test]
fn printed_curls_answer_as_promised() {
    let (mut demo, lines) = start_demo(&[]);
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
    let out = Command::new("sh")
        .arg("-c")
        .arg(token_cmd.replacen("idp-gate", BIN, 1))
        .output()
        .unwrap();
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
    let dir = std::env::temp_dir().join(format!("idp-gate-explain-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("demo.yaml");
    let printed = Command::new(BIN)
        .args([
            "demo",
            "--print-config",
            "--idp-port",
            &port_of("dev IdP"),
            "--upstream-port",
            &port_of("echo upstream"),
        ])
        .output()
        .unwrap();
    std::fs::write(&config_file, &printed.stdout).unwrap();
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
        Command::new(BIN)
            .arg("explain")
            .arg("--config")
            .arg(&config_file)
            .args([
                "--token",
                token,
                "--method",
                "GET",
                "--path",
                "/api/configurator/apis",
            ])
            .output()
            .unwrap()
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
    let _ = std::fs::remove_dir_all(&dir);

    // Ctrl-C ends it cleanly.
    let pid = demo.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn es256_demo_tokens_work_too() {
    let (_demo, lines) = start_demo(&["--alg", "ES256"]);
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
    let out = Command::new(BIN)
        .args(["demo", "--print-config", "--port", "18080"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen: \"127.0.0.1:18080\""), "{text}");
    let dir = std::env::temp_dir().join(format!("idp-gate-demo-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("demo.yaml");
    std::fs::write(&file, &text).unwrap();
    let check = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let _ = std::fs::remove_dir_all(dir);
}
