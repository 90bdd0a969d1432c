//! Greedy or sampled generation with a `BertLMHeadModel`. See `bert_examples::generate` and `--help`.
//!
//! ```text
//! cargo run --release --example clm -- --output-dir output/causal_lm
//! cargo run --release --example generate -- --model output/causal_lm/final_model --do-sample "The hacker"
//! ```

use std::process::ExitCode;

use bert_examples::{generate, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| generate::main(generate::Args::parse()))
}
