//! `clm`: train a decoder (`BertLMHeadModel`, `is_decoder = true`) on next-token prediction
//! over contiguous blocks of a text corpus (HF `run_clm.py`: `group_texts` into blocks of
//! `--max-seq-length`), reporting held-out loss and perplexity; the `generate` example samples
//! from what it saves.
//!
//! With no arguments it trains a small decoder (4 layers, hidden 256) on the Jargon File.

use bert::BertLMHeadModel;
use bert_datasets::collate::CausalLmBatcher;
use bert_train::tasks::{CausalLmTask, eval_batches};
use clap::Parser;

use crate::lm::{Blocks, LmArgs};
use crate::{Error, TrainDefaults};

/// Train BertLMHeadModel on next-token prediction over a text corpus.
#[derive(Debug, Clone, Parser)]
#[command(name = "clm")]
pub struct Args {
    #[command(flatten)]
    pub lm: LmArgs,
}

pub const DEFAULTS: TrainDefaults = crate::pretrain::DEFAULTS;

pub fn main(args: Args) -> Result<(), Error> {
    let args = args.lm;
    let device = args.backend.device()?;
    let Blocks {
        train: train_blocks,
        eval: eval_blocks,
        tokenizer,
    } = args.blocks("clm", false)?;
    let ids = tokenizer.special_ids()?;
    let train_device = args.train.autodiff(&device);
    let model: BertLMHeadModel = args
        .model
        .model(&tokenizer, true, &train_device, args.json)?;
    let batcher = CausalLmBatcher { pad_id: ids.pad };
    let batch_size = args.train.batch_size(&DEFAULTS);
    let eval = eval_batches(&eval_blocks, batch_size, &batcher, &device)?;
    let batches = args
        .train
        .batches(&DEFAULTS, train_blocks, batcher, &train_device);
    let task = CausalLmTask { eval, tokenizer };
    args.fit(&DEFAULTS, model, &batches, &task, &train_device)?;
    Ok(())
}
