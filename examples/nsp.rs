//! Next sentence prediction: does B follow A? See `bert_examples::nsp` and `--help`.
//!
//! ```text
//! cargo run --release --example nsp -- --model output/pretrain/final_model "A." "B."
//! ```

use std::process::ExitCode;

use bert_examples::{nsp, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| nsp::main(nsp::Args::parse()))
}
