//! The tests share one process and run side by side (as many at once as
//! there are cores). Two things follow.
//!
//! Tests that load the machine (thousands of requests, connections or
//! generated cases) take [`heavy`]; tests that assert tight timing take
//! [`timed`]. A heavy test runs beside neither another heavy test nor a
//! timed one, so a deadline is not missed for a neighbour's sake, and two
//! loads do not pile up.
//!
//! A test that measures the whole process (its RSS) runs [`alone`], in a
//! child process of this binary.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOAD: RwLock<()> = RwLock::const_new(());

/// Held by a test that loads the machine, for as long as it does.
pub async fn heavy() -> RwLockWriteGuard<'static, ()> {
    LOAD.write().await
}

/// Held by a test whose assertions are about timing, for as long as they
/// are.
pub async fn timed() -> RwLockReadGuard<'static, ()> {
    LOAD.read().await
}

/// The variable that tells a child process which test it runs alone.
const ALONE: &str = "IDP_GATE_TEST_ALONE";

/// Runs the test called `name` (its full name, `module::test`) again in a
/// child process of this binary, as its only test. In the child this
/// returns `true`: the test goes on and does its work. In the test's own
/// process it waits for the child, fails if the child failed, and returns
/// `false`: the test is done.
pub async fn alone(name: &str) -> bool {
    if std::env::var(ALONE).as_deref() == Ok(name) {
        return true;
    }
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, name)
        .output()
        .await
        .expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name}, alone in a child process, failed:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{name} did not run in the child process:\n{text}"
    );
    false
}

/// This process's resident set size in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}
