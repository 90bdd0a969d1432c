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
