//! Fine-tune `BertForTokenClassification` on CoNLL/BIO data, report entity P/R/F1, tag text. See `bert_examples::ner` and `--help`.
//!
//! ```text
//! cargo run --release --example ner                 # MiniLM on WNUT-16
//! cargo run --release --example ner -- --model output/final_model --predict "Alice flew to Paris."
//! ```

use std::process::ExitCode;

use bert_examples::{ner, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| ner::main(ner::Args::parse()))
}
