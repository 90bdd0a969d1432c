//! Top-k predictions for each [MASK] of a text. See `bert_examples::fill_mask` and `--help`.
//!
//! ```text
//! cargo run --release --example fill_mask -- --model output/pretrain/final_model "The [MASK] is a hacker."
//! ```

use std::process::ExitCode;

use bert_examples::{fill_mask, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| fill_mask::main(fill_mask::Args::parse()))
}
