//! Fine-tune `BertForQuestionAnswering` on SQuAD JSON, report EM/F1, answer questions. See `bert_examples::qa` and `--help`.
//!
//! ```text
//! cargo run --release --example qa                  # generated questions + SQuAD sample
//! cargo run --release --example qa -- --train-file train-v1.1.json --validation-file dev-v1.1.json
//! ```

use std::process::ExitCode;

use bert_examples::{qa, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| qa::main(qa::Args::parse()))
}
