//! `clm`: train a decoder (`BertLMHeadModel`, `is_decoder = true`) on next-token prediction
//! over contiguous blocks of a text corpus (HF `run_clm.py`: `group_texts` into blocks of
//! `--max-seq-length`), reporting held-out loss and perplexity; the `generate` example samples
//! from what it saves.
//!
//! With no arguments it trains a small decoder (4 layers, hidden 256) on the Jargon File.

use bert::BertLMHeadModel;
use bert_datasets::collate::CausalLmBatcher;
use bert_datasets::pretraining::{group_texts, tokenize_documents};
use bert_train::tasks::{CausalLmTask, eval_batches};
use clap::Parser;

use crate::lm::LmArgs;
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
    let (train_docs, eval_docs) = args.corpus.corpus(args.train.seed)?.documents()?;
    let tokenizer = args
        .model
        .tokenizer(&args.train, train_docs.iter().flatten().cloned())?;
    let ids = tokenizer.special_ids()?;
    let blocks = |docs| -> Result<_, Error> {
        let tokens = tokenize_documents(&tokenizer, docs)?;
        Ok(group_texts(&tokens, args.model.max_seq_length, ids.cls))
    };
    let (train_blocks, eval_blocks) = (blocks(&train_docs)?, blocks(&eval_docs)?);
    if !args.json {
        eprintln!(
            "clm: {} / {} documents → {} / {} blocks of {} tokens; vocab {} on {}",
            train_docs.len(),
            eval_docs.len(),
            train_blocks.len(),
            eval_blocks.len(),
            args.model.max_seq_length,
            tokenizer.vocab_size(),
            args.backend.backend
        );
    }
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
    let has_eval = !eval.is_empty();
    let task = CausalLmTask { eval, tokenizer };
    let t = &args.train;
    t.train(
        &DEFAULTS,
        model,
        &batches,
        &task,
        has_eval,
        &train_device,
        args.json,
    )?;
    Ok(())
}
