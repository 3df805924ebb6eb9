// Records the git commit for `idp-gate version`. A build without a git
// checkout (a Docker context, a source tarball) can pass the commit in
// IDP_GATE_GIT_COMMIT; otherwise the version says "unknown".
fn main() {
    println!("cargo:rerun-if-env-changed=IDP_GATE_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let given = std::env::var("IDP_GATE_GIT_COMMIT")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let commit = given.or_else(|| {
        std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    if let Some(commit) = commit {
        println!("cargo:rustc-env=IDP_GATE_GIT_COMMIT={commit}");
    }
}
