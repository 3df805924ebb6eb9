//! Child processes: the real `idp-gate` binary (one-shot commands, and
//! `idp-gate run` with a config written for it) and any other program a
//! test starts, each killed and reaped when its guard is dropped.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Ends, TempDir, fetch, with_loopback_listeners};

pub const BIN: &str = env!("CARGO_BIN_EXE_idp-gate");

/// `idp-gate ARGS`, logging at `info` and blind to the test's own
/// `IDP_GATE_CONFIG` and `RUST_LOG`.
pub fn idp_gate(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("IDP_GATE_CONFIG")
        .env("RUST_LOG", "info");
    cmd
}

/// Runs `cmd` to its end (stdin closed, output collected), killing it and
/// failing the test if it outlives `limit`. Its output, and how long it ran.
pub fn run(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out.expect("wait for the process"), started.elapsed()),
        Err(_) => {
            signal(pid, "-KILL");
            panic!("{cmd:?} did not exit within {limit:?}");
        }
    }
}

/// Sends `signal` (`-TERM`, `-HUP`, …) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

// ---------------------------------------------------------------- any child

/// Lines a child wrote to one of its streams.
type Lines = Arc<Mutex<Vec<String>>>;

/// A child process whose stdout and stderr are collected line by line.
/// Killed and reaped when dropped, so a test that fails half-way leaves
/// nothing running.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
    /// Readers still reading.
    reading: Arc<AtomicUsize>,
    /// Dropped with the guard: lets a stalled reader close its pipe.
    _stalled: mpsc::Sender<()>,
}

impl Proc {
    /// Starts `cmd` with stdin closed.
    pub fn start(cmd: &mut Command) -> Proc {
        Proc::spawn(cmd, false, None)
    }

    /// Starts `cmd` with a pipe to its stdin (see [`Proc::send_line`]).
    pub fn start_interactive(cmd: &mut Command) -> Proc {
        Proc::spawn(cmd, true, None)
    }

    /// Starts `cmd`, and stops reading its stderr once a line contains
    /// `stall_after`: the pipe stays open and fills up.
    fn spawn(cmd: &mut Command, stdin: bool, stall_after: Option<String>) -> Proc {
        let mut child = cmd
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (stalled, hold) = mpsc::channel();
        let reading = Arc::new(AtomicUsize::new(2));
        let stdout = Lines::default();
        let stderr = Lines::default();
        read_lines(
            child.stdout.take().unwrap(),
            stdout.clone(),
            None,
            reading.clone(),
        );
        read_lines(
            child.stderr.take().unwrap(),
            stderr.clone(),
            stall_after.map(|s| (s, hold)),
            reading.clone(),
        );
        Proc {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            reading,
            _stalled: stalled,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (`-TERM`, `-HUP`, `-INT`, …).
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Writes `line` to its stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("started interactive");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to the child's stdin");
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Both streams, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout().join("\n"),
            self.stderr().join("\n")
        )
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("the process exited ({status})\n{}", self.output());
        }
    }

    /// Waits for it to exit, at most `limit`; then for the rest of its
    /// output.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("no exit within {limit:?}\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.reading.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        status
    }

    /// SIGTERM, then its exit status and how long it took to exit.
    pub async fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal("-TERM");
        let status = self.exit_within(limit).await;
        (status, started.elapsed())
    }

    /// Waits (at most `within`) for a line on stdout or stderr for which
    /// `found` says something; fails if the process exits first.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut seen = [0, 0];
        loop {
            // Looked at before the lines: once it has exited and its
            // streams are read to their end, the lines are all there.
            let exited = self
                .exited()
                .filter(|_| self.reading.load(Ordering::SeqCst) == 0);
            for (i, lines) in [&self.stdout, &self.stderr].into_iter().enumerate() {
                let lines = lines.lock().unwrap().clone();
                for line in &lines[seen[i]..] {
                    if let Some(t) = found(line) {
                        return t;
                    }
                }
                seen[i] = lines.len();
            }
            if let Some(status) = exited {
                panic!("exited ({status}) before {what}\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects `stream` into `sink` line by line on a thread of its own.
/// With `stall`, stops reading after the first line containing its text
/// and keeps the pipe open until its channel closes.
fn read_lines(
    stream: impl Read + Send + 'static,
    sink: Lines,
    stall: Option<(String, mpsc::Receiver<()>)>,
    reading: Arc<AtomicUsize>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            let stop = stall
                .as_ref()
                .is_some_and(|(s, _)| line.contains(s.as_str()));
            sink.lock().unwrap().push(line);
            if stop {
                reading.fetch_sub(1, Ordering::SeqCst);
                if let Some((_, hold)) = &stall {
                    let _ = hold.recv();
                }
                return;
            }
        }
        reading.fetch_sub(1, Ordering::SeqCst);
    });
}

// ---------------------------------------------------------------- the gateway

/// `idp-gate run` as a child process, serving a config written for it; its
/// listeners on loopback ports it picked itself (`127.0.0.1:0`), read from
/// its "listening" line.
pub struct GateProcess {
    ends: Ends,
    pub proc: Proc,
    /// The file it runs.
    config: PathBuf,
    _dir: TempDir,
}

impl Deref for GateProcess {
    type Target = Ends;

    fn deref(&self) -> &Ends {
        &self.ends
    }
}

/// How to start a [`GateProcess`].
pub struct Launch {
    config: Source,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config_from_env: bool,
    stall_stderr: bool,
}

impl GateProcess {
    /// `idp-gate run` on `yaml`, with `listen`, `admin.listen` and
    /// `shutdownGraceSeconds` filled in unless given (as [`super::Gate`]
    /// does).
    pub fn config(yaml: &str) -> Launch {
        Launch::new(Source::Text(with_loopback_listeners(yaml)))
    }

    /// `idp-gate run` on the file at `path`, as it is.
    pub fn file(path: &Path) -> Launch {
        Launch::new(Source::File(path.to_path_buf()))
    }

    /// Rewrites the file it runs (one written for it, never a shipped one).
    pub fn write_config(&self, yaml: &str) {
        assert!(
            self.config.starts_with(self._dir.path()),
            "not its own config"
        );
        std::fs::write(&self.config, yaml).expect("rewrite the config");
    }

    /// Its stderr lines (its log).
    pub fn logs(&self) -> Vec<String> {
        self.proc.stderr()
    }

    /// Waits (5 s at most) for an access line matching `pred`.
    pub async fn access_line(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.proc
            .wait_for(
                &format!("an access line for {what}"),
                Duration::from_secs(5),
                |l| {
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .filter(|v| v["target"] == "access" && pred(v))
                },
            )
            .await
    }

    /// Polls `/readyz` until it answers 200 `ready`; fails if the process
    /// exits or 20 s pass.
    async fn until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.admin_url("/readyz");
        let mut last = String::from("no answer");
        loop {
            self.proc.assert_running();
            if let Ok(r) = fetch(&url, &[]).await {
                if r.status == 200 && r.json()["status"] == "ready" {
                    return;
                }
                last = format!("{} {}", r.status, r.text());
            }
            assert!(
                Instant::now() < deadline,
                "not ready within 20 s (last /readyz: {last})\n{}",
                self.proc.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The config a [`GateProcess`] runs.
enum Source {
    /// Written into a file of its own.
    Text(String),
    File(PathBuf),
}

impl Launch {
    fn new(config: Source) -> Launch {
        Launch {
            config,
            args: Vec::new(),
            env: Vec::new(),
            config_from_env: false,
            stall_stderr: false,
        }
    }

    /// An argument before `run` (`--log-format json`).
    pub fn arg(mut self, arg: &str) -> Launch {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Names the config in `IDP_GATE_CONFIG` instead of `--config`.
    pub fn config_from_env(mut self) -> Launch {
        self.config_from_env = true;
        self
    }

    /// Stops reading its stderr once it listens: the pipe fills up.
    pub fn stall_stderr(mut self) -> Launch {
        self.stall_stderr = true;
        self
    }

    /// Starts the process; it may not be listening yet.
    pub fn spawn(self) -> Starting {
        let dir = TempDir::new("gate");
        let config = match self.config {
            Source::Text(yaml) => dir.write("gate.yaml", yaml),
            Source::File(path) => path,
        };
        let mut cmd = idp_gate(&[]);
        cmd.args(&self.args).arg("run");
        if self.config_from_env {
            cmd.env("IDP_GATE_CONFIG", &config);
        } else {
            cmd.arg("--config").arg(&config);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let stall = self.stall_stderr.then(|| LISTENING.to_string());
        Starting {
            proc: Proc::spawn(&mut cmd, false, stall),
            config,
            dir,
        }
    }

    /// Starts it and waits until it listens.
    pub async fn start(self) -> GateProcess {
        self.spawn().listening().await
    }

    /// Starts it and waits until it is ready.
    pub async fn ready(self) -> GateProcess {
        let mut gate = self.start().await;
        gate.until_ready().await;
        gate
    }
}

/// What `app::start` logs once both listeners are bound.
const LISTENING: &str = "idp-gate listening";

/// A [`GateProcess`] started, its addresses not known yet.
pub struct Starting {
    pub proc: Proc,
    config: PathBuf,
    dir: TempDir,
}

impl Starting {
    /// Waits (20 s at most) for its "listening" line.
    pub async fn listening(mut self) -> GateProcess {
        let (proxy, admin) = self
            .proc
            .wait_for("its listening line", Duration::from_secs(20), |l| {
                l.contains(LISTENING).then(|| listening_addrs(l)).flatten()
            })
            .await;
        GateProcess {
            ends: Ends::new(proxy, admin),
            proc: self.proc,
            config: self.config,
            _dir: self.dir,
        }
    }
}

/// The proxy and admin addresses of a "listening" line, JSON or text.
fn listening_addrs(line: &str) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let field = |name: &str| -> Option<std::net::SocketAddr> {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            let fields = if v["fields"].is_object() {
                &v["fields"]
            } else {
                &v
            };
            return fields[name].as_str()?.parse().ok();
        }
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))?
            .parse()
            .ok()
    };
    Some((field("proxy")?, field("admin")?))
}
