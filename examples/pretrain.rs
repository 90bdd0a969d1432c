//! Pretrain `BertForPreTraining` (MLM + NSP) on a text corpus. See `bert_examples::pretrain` and `--help`.
//!
//! ```text
//! cargo run --release --example pretrain -- --output-dir output/pretrain      # Jargon File, 4L/256H
//! cargo run --release --example pretrain -- --output-dir output/pretrain --resume
//! ```

use std::process::ExitCode;

use bert_examples::{pretrain, run};
use clap::Parser;

fn main() -> ExitCode {
    run(|| pretrain::main(pretrain::Args::parse()))
}
