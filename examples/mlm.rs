//! Train `BertForMaskedLM` on masked-token prediction. See `bert_examples::mlm` and `--help`.
//!
//! ```text
//! cargo run --release --example mlm -- --output-dir output/mlm       # Jargon File, 4L/256H
//! cargo run --release --example fill_mask -- --model output/mlm/final_model "The [MASK] crashed."
//! ```

use std::process::ExitCode;

use bert_examples::{mlm, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| mlm::main(mlm::Args::parse()))
}
