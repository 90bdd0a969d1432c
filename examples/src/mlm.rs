//! `mlm`: train `BertForMaskedLM` on masked-token prediction over contiguous blocks of a text
//! corpus (HF `run_mlm.py`: documents ending in `[SEP]`, `group_texts` into blocks of
//! `--max-seq-length`, masks drawn anew for every batch, 80/10/10, `--mlm-probability`; whole
//! words with `--whole-word-mask`, as `DataCollatorForWholeWordMask`), reporting held-out loss,
//! perplexity and accuracy per masked token; `fill_mask` reads what it saves. From an HF model
//! directory (`--model`) this is domain-adaptive MLM fine-tuning; `pretrain` adds NSP.
//!
//! With no arguments it trains a small BERT (4 layers, hidden 256) on the Jargon File.

use bert::BertForMaskedLM;
use bert_train::tasks::MaskedLmTask;
use clap::Parser;

use crate::lm::{LmArgs, MaskingArgs};
use crate::{Error, TrainDefaults};

/// Train BertForMaskedLM on masked-token prediction over a text corpus.
#[derive(Debug, Clone, Parser)]
#[command(name = "mlm")]
pub struct Args {
    #[command(flatten)]
    pub lm: LmArgs,
    #[command(flatten)]
    pub masking: MaskingArgs,
}

pub const DEFAULTS: TrainDefaults = crate::pretrain::DEFAULTS;

pub fn main(args: Args) -> Result<(), Error> {
    let lm = &args.lm;
    let device = lm.backend.device()?;
    let blocks = lm.blocks("mlm", true)?;
    let train_device = lm.train.autodiff(&device);
    let model: BertForMaskedLM =
        (lm.model).model(&blocks.tokenizer, false, &train_device, lm.json)?;
    let collator = args.masking.collator(&blocks.tokenizer, lm)?;
    // The held-out blocks masked once.
    let (eval, batch_size) = (&blocks.eval, lm.train.batch_size(&DEFAULTS));
    let task =
        MaskedLmTask::masked_once(eval, &collator, batch_size, blocks.tokenizer, |c, key| {
            collator.collate_blocks(c, key, &device)
        })?;
    let on = train_device.clone();
    let batches = (lm.train).item_batches(&DEFAULTS, blocks.train, move |items, key| {
        collator.collate_blocks(&items, key, &on)
    });
    lm.fit(&DEFAULTS, model, &batches, &task, &train_device)?;
    Ok(())
}
