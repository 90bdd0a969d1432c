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

/// The real fixtures (`shared/fixtures/fetch.sh` beside the checkout), fetched if needed.
pub fn fixtures_dir() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    Ok(bert_datasets::fixtures::dir()?)
}
