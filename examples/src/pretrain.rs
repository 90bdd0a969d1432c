//! `pretrain`: pretrain `BertForPreTraining` (masked LM + next sentence prediction) from
//! scratch or from an HF model directory, on a text corpus, with a given tokenizer or a
//! WordPiece vocabulary trained on the corpus. Pairs as BERT's `create_pretraining_data`
//! (NSP 50/50), masks drawn anew for every batch (dynamic masking, 80/10/10). Reports MLM
//! loss/accuracy and NSP accuracy on held-out documents; checkpoints and `--resume` come
//! from the trainer. The `mlm` example trains masked LM without NSP (`BertForMaskedLM`), `clm`
//! a decoder on next-token prediction.
//!
//! With no arguments it pretrains a small BERT (4 layers, hidden 256) on the Jargon File.

use bert::BertForPreTraining;
use bert_datasets::BertTokenizer;
use bert_datasets::collate::PretrainingBatch;
use bert_datasets::pretraining::{PretrainingPair, document_pairs};
use bert_train::BatchSource;
use bert_train::tasks::{PretrainingTask, streamed_pretraining_batches};
use burn::tensor::Device;
use clap::Parser;

use crate::lm::{LmArgs, PretrainingDataArgs};
use crate::{Error, TrainDefaults};

/// Pretrain BertForPreTraining (MLM + NSP) on a text corpus.
#[derive(Debug, Clone, Parser)]
#[command(name = "pretrain")]
pub struct Args {
    #[command(flatten)]
    pub lm: LmArgs,
    #[command(flatten)]
    pub data: PretrainingDataArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 5e-4,
    num_train_epochs: 3.0,
    batch_size: 32,
    warmup_ratio: 0.06,
};

/// The training batches, the held-out pairs, the tokenizer, and what they are in words.
type Data = (
    Box<dyn BatchSource<PretrainingBatch>>,
    Vec<PretrainingPair>,
    BertTokenizer,
    String,
);

pub fn main(args: Args) -> Result<(), Error> {
    let (lm, json) = (&args.lm, args.lm.json);
    let device = lm.backend.device()?;
    let train_device = lm.train.autodiff(&device);
    let (batches, eval_pairs, tokenizer, summary) = match args.data.streaming {
        true => streamed(&args, &train_device)?,
        false => in_memory(&args, &train_device)?,
    };
    if !json {
        let vocab = tokenizer.vocab_size();
        eprintln!(
            "pretrain: {summary}; vocab {vocab} on {}",
            lm.backend.backend
        );
    }
    let model = (lm.model).model::<BertForPreTraining>(&tokenizer, false, &train_device, json)?;
    let collator = args.data.collator(&tokenizer, lm)?;
    let batch_size = lm.train.batch_size(&DEFAULTS);
    let task = PretrainingTask::new(&eval_pairs, &collator, batch_size, tokenizer, &device)?;
    let has_eval = !eval_pairs.is_empty();
    (lm.train).train(
        &DEFAULTS,
        model,
        &*batches,
        &task,
        has_eval,
        &train_device,
        json,
    )?;
    if !json {
        let vocab = (task.tokenizer.vocab_size() as f64).ln();
        let dir = lm.train.output_dir.join("final_model");
        println!(
            "ln(vocab) = {vocab:.2}; try: --example fill_mask -- --model {}",
            dir.display()
        );
    }
    Ok(())
}

/// The corpus loaded, tokenized and paired up front (`--dupe-factor` times).
fn in_memory(args: &Args, device: &Device) -> Result<Data, Error> {
    let (lm, data) = (&args.lm, &args.data);
    let (train_docs, eval_docs) = lm.corpus.corpus(lm.train.seed)?.documents()?;
    let tokenizer = (lm.model).tokenizer(&lm.train, train_docs.iter().flatten().cloned())?;
    let nsp = |held_out| data.nsp(held_out, lm);
    let train_pairs = document_pairs(&train_docs, &tokenizer, &nsp(false), data.dupe_factor)?;
    let mut eval_pairs = document_pairs(&eval_docs, &tokenizer, &nsp(true), 1)?;
    crate::truncate(&mut eval_pairs, data.max_eval_samples);
    let summary = format!(
        "{} / {} documents → {} / {} pairs of ≤ {} tokens",
        train_docs.len(),
        eval_docs.len(),
        train_pairs.len(),
        eval_pairs.len(),
        lm.model.max_seq_length,
    );
    let (collator, device) = (data.collator(&tokenizer, lm)?, device.clone());
    let batches = (lm.train).item_batches(&DEFAULTS, train_pairs, move |items, key| {
        collator.collate(&items, key, &device)
    });
    Ok((Box::new(batches), eval_pairs, tokenizer, summary))
}

/// `--streaming`: the corpus read, tokenized, paired and shuffled as training goes; the
/// held-out pairs are the first --max-eval-samples of the held-out documents' pairs.
fn streamed(args: &Args, device: &Device) -> Result<Data, Error> {
    let (lm, data) = (&args.lm, &args.data);
    let corpus = lm.corpus.corpus(lm.train.seed)?;
    let sentences = corpus.stream(false)?.map_while(Result::ok).flatten();
    let tokenizer = lm.model.tokenizer(&lm.train, sentences)?;
    let eval_pairs: Vec<PretrainingPair> = corpus
        .stream_pairs(true, &tokenizer, &data.nsp(true, lm))?
        .take(data.max_eval_samples.unwrap_or(1000))
        .collect::<Result<_, _>>()?;
    let path = corpus.path.clone();
    let (tok, options) = (tokenizer.clone(), data.nsp(false, lm));
    let (collator, batch_size) = (
        data.collator(&tokenizer, lm)?,
        lm.train.batch_size(&DEFAULTS),
    );
    let buffer = data.shuffle_buffer;
    let batches =
        streamed_pretraining_batches(corpus, tok, options, collator, batch_size, buffer, device)?;
    let summary = format!(
        "{} (streamed) → {} training pairs a pass, {} held out",
        path.display(),
        batches.items(),
        eval_pairs.len()
    );
    Ok((Box::new(batches), eval_pairs, tokenizer, summary))
}
