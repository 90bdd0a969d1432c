//! Train `BertLMHeadModel` on next-token prediction. See `bert_examples::clm` and `--help`.
//!
//! ```text
//! cargo run --release --example clm -- --output-dir output/causal_lm    # Jargon File, 4L/256H
//! cargo run --release --example generate -- --model output/causal_lm/final_model "The hacker"
//! ```

use std::process::ExitCode;

use bert_examples::{clm, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| clm::main(clm::Args::parse()))
}
