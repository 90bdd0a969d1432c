//! What every example shares: the `--backend` argument and error reporting.

use std::process::ExitCode;

use bert::backend::Backend;
use burn::tensor::Device;

/// `--backend NAME`: flex (default), ndarray, cpu, wgpu, vulkan, tch, tch-cuda, cuda; GPU
/// backends take an index (`cuda:1`).
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Backend to run on: flex, ndarray, cpu, wgpu, vulkan, tch, tch-cuda, cuda (`cuda:1` for a device index).
    #[arg(long, default_value = "flex", value_parser = parse_backend)]
    pub backend: Backend,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse::<Backend>().map_err(|e| e.to_string())
}

impl BackendArgs {
    /// The device, or an error naming the Cargo feature to enable.
    pub fn device(&self) -> Result<Device, bert::BertError> {
        self.backend.device()
    }
}

/// Runs an example's body; prints the error chain and exits with 1 on failure.
pub fn run(body: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// The real fixtures (`shared/fixtures/fetch.sh` beside the checkout): `$BERT_FIXTURES` when it
/// holds them, else fetched now (idempotent) into the script's cache.
pub fn fixtures_dir() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    if let Ok(dir) = std::env::var("BERT_FIXTURES") {
        let dir = std::path::PathBuf::from(dir);
        if dir
            .join("models/all-MiniLM-L6-v2/model.safetensors")
            .is_file()
        {
            return Ok(dir);
        }
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fetch.sh");
    if !script.is_file() {
        return Err(format!(
            "no fixtures: set BERT_FIXTURES, or keep shared/ beside the checkout ({} is missing)",
            script.display()
        )
        .into());
    }
    eprintln!("fetching fixtures with {} ...", script.display());
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().into())
}
