//! The one temp-dir type of the tests.

use std::path::{Path, PathBuf};

/// A fresh directory for one test's files (configs, certificates, key
/// caches). Removed on drop, unless the test is failing: then it is kept,
/// and its path printed, for what was in it.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory named after `tag` under the system's temp dir.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("idp-gate-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` in place; returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).expect("write a temp file");
        path
    }

    /// Replaces `name` the way a Secret or a cert-manager volume does: the
    /// new bytes in another file, renamed over the old one.
    pub fn replace(&self, name: &str, contents: impl AsRef<[u8]>) {
        let tmp = self.write(&format!(".{name}.tmp"), contents);
        std::fs::rename(&tmp, self.join(name)).expect("rename over a temp file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
