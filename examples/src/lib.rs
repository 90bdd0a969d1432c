//! What the examples share: the `--backend` argument, the trainer's arguments ([`cli`]),
//! loading and saving HF model directories with their tokenizer, and error reporting. Each
//! example's body is a module here (`classify`, `ner`, …) so that the tests can run it; the
//! files in `examples/` only parse the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bert::backend::{Backend, Precision};
use bert::{BertConfig, BertPretrained, Checkpoint};
use bert_datasets::BertTokenizer;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

pub mod classify;
pub mod cli;
pub mod fill_mask;
pub mod generate;
pub mod multiple_choice;
pub mod ner;
pub mod nsp;
pub mod pretrain;
pub mod qa;

pub use cli::{TrainArgs, TrainDefaults};

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

/// The fixtures' pretrained all-MiniLM-L6-v2 (`BertModel` weights and tokenizer).
pub fn default_model_dir() -> Result<PathBuf, Error> {
    Ok(fixtures_dir()?.join("models/all-MiniLM-L6-v2"))
}

/// Loads class `M` from an HF model directory after `configure` adapts its config (labels,
/// dropout), printing HF's warnings: a head missing from the checkpoint (a `BertModel`
/// checkpoint such as all-MiniLM-L6-v2) is newly initialised and reported as HF does.
pub fn load_model<M: BertPretrained>(
    dir: &Path,
    configure: impl FnOnce(&mut BertConfig),
    device: &Device,
    quiet: bool,
) -> Result<M, Error> {
    let mut config = BertConfig::from_file(dir)?;
    configure(&mut config);
    let (model, report) = M::from_checkpoint(config, Checkpoint::read(dir)?, device)?;
    if !quiet {
        for w in report.warnings() {
            eprintln!("warning: {w}");
        }
    }
    Ok(model)
}

/// Writes the model and its tokenizer (`tokenizer.json`, and `vocab.txt` for WordPiece) as an
/// HF model directory.
pub fn save_pretrained_with_tokenizer<M: BertPretrained>(
    model: &M,
    tokenizer: &BertTokenizer,
    dir: &Path,
) -> Result<(), bert::BertError> {
    model.save_pretrained(dir)?;
    let err = |e: &dyn std::fmt::Display| bert::BertError::Input(format!("{}: {e}", dir.display()));
    tokenizer
        .inner
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| err(&e))?;
    use tokenizers::Model;
    tokenizer
        .inner
        .get_model()
        .save(dir, None)
        .map_err(|e| err(&e))?;
    Ok(())
}

/// A fixed split of `n` items: `(train, eval)` indices, `eval_fraction` of them shuffled out
/// by `seed`. Both lists stay in the shuffled order, as HF's `train_test_split`, so that
/// `--max-train-samples N` (the first N, as HF's `select(range(N))`) is a random subset even of
/// a file sorted by label, such as the polarity sentences.
pub fn split_indices(n: usize, eval_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_eval = ((n as f64) * eval_fraction).round() as usize;
    let train = order.split_off(n_eval);
    (train, order)
}

/// Parses a column argument: a number is a 0-based position, anything else a header name.
pub fn column(s: &str) -> bert_datasets::tasks::classification::Column {
    match s.parse::<usize>() {
        Ok(i) => i.into(),
        Err(_) => s.into(),
    }
}

/// A float tensor's values on the host.
pub fn to_vec(t: burn::tensor::Tensor<2>) -> Result<Vec<f32>, Error> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}").into())
}

/// Softmax of one row of logits.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// An error with the command that makes the missing model directory.
pub fn model_dir_or_hint(dir: &Path, example: &str) -> Result<(), Error> {
    if dir.join("config.json").is_file() {
        return Ok(());
    }
    Err(format!(
        "{}: no model here (no config.json). Make one first, e.g. `cargo run --release --example {example} -- --output-dir output/{example}`, then pass --model output/{example}/final_model",
        dir.display()
    )
    .into())
}

/// Padded texts as the model's input (ids, attention mask, token types), with the ids' ranges
/// taken on the host (checked against the config without a device read).
pub fn text_input(t: bert_datasets::collate::TextBatch) -> bert::BertInput {
    let [ids, types] = t.id_bounds;
    bert::BertInput::new(t.input_ids)
        .with_attention_mask(t.attention_mask)
        .with_token_type_ids(t.token_type_ids)
        .with_host_bounds(bert::HostBounds {
            input_ids: Some(ids),
            token_type_ids: Some(types),
            ..Default::default()
        })
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

/// The first and last optimizer-step losses of a run (NaN when none).
pub fn loss_range(step_losses: &[(usize, f64)]) -> (f64, f64) {
    let at = |s: Option<&(usize, f64)>| s.map_or(f64::NAN, |s| s.1);
    (at(step_losses.first()), at(step_losses.last()))
}

#[cfg(test)]
mod tests {
    use super::split_indices;

    #[test]
    fn split_is_fixed_disjoint_and_keeps_the_shuffled_order() {
        let (train, eval) = split_indices(4000, 0.2, 42);
        assert_eq!((train.len(), eval.len()), (3200, 800));
        let mut all: Vec<usize> = train.iter().chain(&eval).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..4000).collect::<Vec<_>>());
        assert_eq!((train.clone(), eval.clone()), split_indices(4000, 0.2, 42));
        // A file sorted by label (2000 of each, as the polarity sentences): the first 24
        // training items hold both halves.
        let first = &train[..24];
        assert!(first.iter().any(|&i| i < 2000) && first.iter().any(|&i| i >= 2000));
    }
}
