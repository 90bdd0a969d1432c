//! The real fixtures (weights and data from `shared/fixtures/fetch.sh`, see its README):
//! `$BERT_FIXTURES` when it holds them, else fetched now (idempotent) into the script's cache.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::BertError;

/// The fixtures folder (`models/all-MiniLM-L6-v2/`, `data/…`), fetching it if needed.
pub fn dir() -> Result<PathBuf, BertError> {
    if let Ok(dir) = std::env::var("BERT_FIXTURES") {
        let dir = PathBuf::from(dir);
        if dir
            .join("models/all-MiniLM-L6-v2/model.safetensors")
            .is_file()
        {
            return Ok(dir);
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fetch.sh");
    let fail = |message: String| BertError::Input(format!("{}: {message}", script.display()));
    if !script.is_file() {
        return Err(fail(
            "missing: set BERT_FIXTURES, or keep shared/ beside the checkout".into(),
        ));
    }
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "failed ({}); the fixtures could not be fetched",
            out.status
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// For tests: asserts that `result` is an error whose message contains every one of `parts`
/// (the file, the line, the problem: what a user needs to fix the input).
#[track_caller]
pub fn assert_err<T>(result: Result<T, impl std::fmt::Display>, parts: &[&str]) {
    let e = match result {
        Ok(_) => panic!("expected an error containing {parts:?}, got Ok"),
        Err(e) => e.to_string(),
    };
    let missing: Vec<_> = parts.iter().filter(|p| !e.contains(**p)).collect();
    assert!(missing.is_empty(), "{e}\n(lacks {missing:?})");
}

/// A scratch folder for tests, examples' smoke runs and benchmarks: under the system's temp
/// folder, unique to this process and call, removed when dropped. A thread that is panicking
/// keeps it (and says where), so a failing test leaves its files to look at.
///
/// It derefs to the folder, or to the one file [`Scratch::file`] wrote into it.
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
    path: PathBuf,
}

impl Scratch {
    /// An empty folder named after `tag`.
    pub fn dir(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("bert-{tag}-{}-{n}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("scratch folder {}: {e}", root.display()));
        Self {
            path: root.clone(),
            root,
        }
    }

    /// A folder named after `tag` holding one file, `name` (it may have folders), with
    /// `contents`; the value derefs to that file.
    pub fn file(tag: &str, name: &str, contents: impl AsRef<[u8]>) -> Self {
        let mut scratch = Self::dir(tag);
        scratch.path = scratch.root.join(name);
        if let Some(parent) = scratch.path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&scratch.path, contents)
            .unwrap_or_else(|e| panic!("scratch file {}: {e}", scratch.path.display()));
        scratch
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.root.display());
        } else {
            std::fs::remove_dir_all(&self.root).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn scratch_folders_are_distinct_and_removed_on_drop() {
        let (a, b) = (Scratch::dir("t"), Scratch::file("t", "x/y.txt", "hi"));
        assert_ne!(a.to_path_buf(), b.parent().unwrap().parent().unwrap());
        assert_eq!(std::fs::read_to_string(&*b).unwrap(), "hi");
        let (root, file) = (a.to_path_buf(), b.to_path_buf());
        assert!(root.is_dir());
        drop((a, b));
        assert!(!root.exists() && !file.exists());
    }
}
