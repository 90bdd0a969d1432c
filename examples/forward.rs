//! The parity tool: runs any BERT class of an HF model directory on named inputs and writes
//! HF-named outputs, so that any backend can be compared with HF transformers.
//!
//! ```text
//! cargo run --release --example forward -- --backend flex --model DIR \
//!     [--head BertForSequenceClassification] --inputs IN.safetensors --output OUT.safetensors
//! cargo run --release --example forward -- --model DIR --inputs IN.safetensors \
//!     --output OUT.safetensors --generate 10 [--no-cache]
//! ```
//! Inputs: I64 `input_ids` `[batch, seq]` (`[batch, choices, seq]` for multiple choice),
//! optional `attention_mask`, `token_type_ids`, and labels named as HF's forward arguments.
//! Outputs: F32 tensors named as HF's output fields (`loss` is 0-d); `sequences` (I64) with
//! `--generate`.

use std::path::PathBuf;
use std::process::ExitCode;

use bert::AnyBert;
use bert::tensors_file::{NamedTensors, read_tensors, write_tensors};
use bert_examples::{BackendArgs, run};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Run a BERT model directory on named inputs; write HF-named outputs")]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// HF model directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long)]
    model: PathBuf,
    /// HF class to build (default: `architectures[0]` of config.json).
    #[arg(long)]
    head: Option<String>,
    /// safetensors file of inputs named as HF's forward arguments.
    #[arg(long)]
    inputs: PathBuf,
    /// Where to write the outputs (safetensors).
    #[arg(long)]
    output: PathBuf,
    /// Greedy-generate this many tokens (BertLMHeadModel) and write `sequences`.
    #[arg(long)]
    generate: Option<usize>,
    /// With --generate: re-run the whole prefix at each step instead of using the KV cache.
    #[arg(long)]
    no_cache: bool,
}

fn main() -> ExitCode {
    run(|| {
        let args = Args::parse();
        let device = args.backend.device()?;
        let (model, report) = AnyBert::from_pretrained(&args.model, args.head.as_deref(), &device)?;
        for w in report.warnings() {
            eprintln!("warning: {w}");
        }
        let inputs = read_tensors(&args.inputs)?;
        let outputs = match args.generate {
            Some(n) => {
                let sequences = model.generate(&inputs, n, !args.no_cache, &device)?;
                NamedTensors::from([("sequences".to_string(), sequences)])
            }
            None => model.forward(&inputs, &device)?,
        };
        write_tensors(&args.output, &outputs, &[])?;
        eprintln!("{} on {}:", model.class(), args.backend.backend);
        for (name, t) in &outputs {
            eprintln!("  {name}: {:?}", t.shape);
        }
        eprintln!("wrote {}", args.output.display());
        Ok(())
    })
}
