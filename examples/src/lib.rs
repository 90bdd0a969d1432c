//! What the examples share: the `--backend` argument, the trainer's arguments ([`cli`]),
//! loading and saving HF model directories with their tokenizer, and error reporting. Each
//! example's body is a module here (`classify`, `ner`, …) so that the tests can run it; the
//! files in `examples/` only parse the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bert::backend::{Backend, Precision};
use bert::{BertConfig, BertPretrained};
use burn::tensor::Device;

pub mod classify;
pub mod cli;
pub mod clm;
pub mod fill_mask;
pub mod generate;
pub mod lm;
pub mod mlm;
pub mod multiple_choice;
pub mod ner;
pub mod nsp;
pub mod pretrain;
pub mod qa;
pub mod range;

pub use cli::{Setup, TaskArgs, TrainArgs, TrainDefaults};

/// The README's Rust programs, compiled (not run: they train) by `cargo test`'s doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Errors of an example's body.
pub type Error = Box<dyn std::error::Error>;

/// `--backend NAME` (the names of `bert::backend::BACKENDS`); GPU backends take an index
/// (`cuda:1`).
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    #[arg(long, default_value = "flex", value_parser = parse_backend,
          help = format!("Backend to run on: {} (`cuda:1` for a device index)", bert::backend::names()))]
    pub backend: Backend,
    /// Float precision of every tensor on the device: f32, f16 or bf16 (where the backend takes it).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub dtype: Precision,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse::<Backend>().map_err(|e| e.to_string())
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse::<Precision>().map_err(|e| e.to_string())
}

impl BackendArgs {
    /// The device in the chosen precision, or an error naming the Cargo feature to enable or
    /// the precision the backend does not take.
    pub fn device(&self) -> Result<Device, bert::BertError> {
        self.backend.device_with(self.dtype)
    }
}

/// Runs an example's body; prints the error chain and exits with 1 on failure.
pub fn run(body: impl FnOnce() -> Result<(), Error>) -> ExitCode {
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
pub fn fixtures_dir() -> Result<PathBuf, Error> {
    Ok(bert_datasets::fixtures::dir()?)
}

/// Loads class `M` from an HF model directory after `configure` adapts its config (labels,
/// dropout), printing HF's warnings unless `quiet`: a head missing from the checkpoint (a
/// `BertModel` checkpoint such as all-MiniLM-L6-v2) is newly initialised and reported as HF does.
pub fn load_model<M: BertPretrained>(
    dir: &Path,
    configure: impl FnOnce(&mut BertConfig),
    device: &Device,
    quiet: bool,
) -> Result<M, Error> {
    let (model, report) = M::from_pretrained_with_config(dir, configure, device)?;
    if !quiet {
        for w in report.warnings() {
            eprintln!("warning: {w}");
        }
    }
    Ok(model)
}

/// The fixtures' pretrained all-MiniLM-L6-v2 (`BertModel` weights and tokenizer).
pub fn default_model_dir() -> Result<PathBuf, Error> {
    Ok(fixtures_dir()?.join("models/all-MiniLM-L6-v2"))
}

/// Parses a column argument: a number is a 0-based position, anything else a header name.
pub fn column(s: &str) -> bert_datasets::tasks::classification::Column {
    match s.parse::<usize>() {
        Ok(i) => i.into(),
        Err(_) => s.into(),
    }
}

/// An error with the command that makes the missing model directory.
pub fn model_dir_or_hint(dir: &Path, example: &str) -> Result<(), Error> {
    if bert::hub::resolve_model(dir).is_ok_and(|d| d.join("config.json").is_file()) {
        return Ok(());
    }
    Err(format!(
        "{}: no model here (no config.json). Make one first, e.g. `cargo run --release --example {example} -- --output-dir output/{example}`, then pass --model output/{example}/final_model",
        dir.display()
    )
    .into())
}

/// `--model`, or the fixtures' all-MiniLM-L6-v2.
pub fn model_or_default(model: &Option<PathBuf>) -> Result<PathBuf, Error> {
    match model {
        Some(d) => Ok(d.clone()),
        None => default_model_dir(),
    }
}

/// The newest log entry that holds `key` (the last evaluation), or `{}`.
pub fn last_logged(history: &[serde_json::Value], key: &str) -> serde_json::Value {
    history
        .iter()
        .rev()
        .find(|e| e.get(key).is_some())
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}))
}

/// Keeps the first `n` items (`--max-train-samples N`, HF's `select(range(N))`).
pub fn truncate<T>(items: &mut Vec<T>, n: Option<usize>) {
    if let Some(n) = n {
        items.truncate(n);
    }
}

/// The evaluation metrics of the last evaluation (`eval_*` of the newest log entry with
/// `eval_loss`).
pub fn last_eval(history: &[serde_json::Value]) -> BTreeMap<String, f64> {
    last_logged(history, "eval_loss")
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.starts_with("eval_"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Prints a finished run: steps, first → last loss, the last evaluation, where the model is
/// (as one JSON line with `--json`).
pub fn report<M>(out: &bert_train::TrainOutput<M>, output_dir: &Path, as_json: bool) {
    let eval = last_eval(&out.state.log_history);
    let final_dir = output_dir.join("final_model");
    if as_json {
        println!(
            "{}",
            serde_json::json!({
                "steps": out.state.global_step, "step_losses": out.step_losses,
                "eval": eval, "output_dir": final_dir,
            })
        );
        return;
    }
    let (first, last) = loss_range(&out.step_losses);
    println!(
        "trained {} steps: loss {first:.4} → {last:.4}",
        out.state.global_step
    );
    for (k, v) in &eval {
        println!("  {k} = {v:.4}");
    }
    println!("model saved to {}", final_dir.display());
}

/// Prints each result: a JSON line with `--json`, else its text form after a blank line.
pub fn print_all<T: serde::Serialize + std::fmt::Display>(
    results: impl IntoIterator<Item = T>,
    as_json: bool,
) {
    for r in results {
        match as_json {
            true => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
            false => println!("\n{r}"),
        }
    }
}

/// The first and last optimizer-step losses of a run (NaN when none).
pub fn loss_range(step_losses: &[(usize, f64)]) -> (f64, f64) {
    let at = |s: Option<&(usize, f64)>| s.map_or(f64::NAN, |s| s.1);
    (at(step_losses.first()), at(step_losses.last()))
}
