//! Fine-tune `BertForMultipleChoice` on SWAG-style data, report accuracy. See `bert_examples::multiple_choice` and `--help`.
//!
//! ```text
//! cargo run --release --example multiple_choice     # generated SWAG-style items
//! cargo run --release --example multiple_choice -- --train-file swag/train.csv --validation-file swag/val.csv
//! ```

use std::process::ExitCode;

use bert_examples::{multiple_choice, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| multiple_choice::main(multiple_choice::Args::parse()))
}
