//! Fine-tune `BertForSequenceClassification`, evaluate, save, predict. See
//! `bert_examples::classify` and `--help`.
//!
//! ```text
//! cargo run --release --example classify                      # MiniLM on polarity, flex CPU
//! cargo run --release --example classify -- --train-file glue/sst2/train.tsv \
//!     --text-column sentence --validation-file glue/sst2/dev.tsv --num-train-epochs 3
//! cargo run --release --example classify -- --model output/final_model --predict "a fine film"
//! ```

use std::process::ExitCode;

use bert_examples::{classify, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| classify::main(classify::Args::parse()))
}
