//! `pretrain`: pretrain `BertForPreTraining` (masked LM + next sentence prediction) from
//! scratch or from an HF model directory, on a text corpus, with a given tokenizer or a
//! WordPiece vocabulary trained on the corpus. Pairs as BERT's `create_pretraining_data`
//! (NSP 50/50), masks drawn anew for every batch (dynamic masking, 80/10/10). Reports MLM
//! loss/accuracy and NSP accuracy on held-out documents; checkpoints and `--resume` come
//! from the trainer. The `clm` example trains a decoder on next-token prediction instead.
//!
//! With no arguments it pretrains a small BERT (4 layers, hidden 256) on the Jargon File.

use bert::BertForPreTraining;
use bert_datasets::collate::PretrainingCollator;
use bert_datasets::pretraining::{
    NspOptions, PretrainingPair, create_pairs, create_pairs_duplicated, tokenize_documents,
};
use bert_train::tasks::{PretrainingTask, streamed_pretraining_batches};
use burn::tensor::Device;
use clap::Parser;

use crate::lm::LmArgs;
use crate::range;
use crate::{Error, TrainDefaults};

/// Pretrain BertForPreTraining (MLM + NSP) on a text corpus.
#[derive(Debug, Clone, Parser)]
#[command(name = "pretrain")]
pub struct Args {
    #[command(flatten)]
    pub lm: LmArgs,
    #[arg(long, default_value_t = 0.1, value_parser = range::unit_interval)]
    pub short_seq_prob: f64,
    #[arg(long, default_value_t = 0.15, value_parser = range::fraction)]
    pub mlm_probability: f64,
    /// Times the NSP pairs are drawn from the training documents, each time with another seed
    /// (other chunk lengths, A/B cuts and random B segments), as `create_pretraining_data.py`'s
    /// `--dupe_factor` (BERT used 10). MLM masks are drawn anew for every batch regardless.
    #[arg(long, default_value_t = 1, value_parser = range::at_least_one)]
    pub dupe_factor: usize,
    /// Pad every batch to --max-seq-length (HF's `pad_to_max_length`) instead of to its longest
    /// pair: one shape for all batches, so GPU backends compile their kernels once.
    #[arg(long)]
    pub pad_to_max_length: bool,
    /// Mask all pieces of a word together.
    #[arg(long)]
    pub whole_word_mask: bool,
    /// Stream the corpus instead of loading it (HF's `--streaming`): documents are read,
    /// tokenized and paired as training goes, through a shuffle buffer, with bounded memory
    /// for a corpus of any size. Held-out documents are picked by a hash of their index.
    #[arg(long, conflicts_with = "dupe_factor")]
    pub streaming: bool,
    /// With --streaming: pairs in the shuffle buffer.
    #[arg(long, default_value_t = 10_000)]
    pub shuffle_buffer: usize,
    /// Held-out pairs at most (with --streaming: 1,000 unless given).
    #[arg(long, value_parser = range::at_least_one)]
    pub max_eval_samples: Option<usize>,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 5e-4,
    num_train_epochs: 3.0,
    batch_size: 32,
    warmup_ratio: 0.06,
};

impl Args {
    /// NSP pairing as asked; held-out pairs are drawn with the next seed.
    fn nsp(&self, held_out: bool) -> NspOptions {
        NspOptions {
            max_seq_length: self.lm.model.max_seq_length,
            short_seq_prob: self.short_seq_prob,
            seed: self.lm.train.seed + held_out as u64,
        }
    }

    /// Dynamic MLM masking as asked.
    fn collator(
        &self,
        tokenizer: &bert_datasets::BertTokenizer,
    ) -> Result<PretrainingCollator, Error> {
        let fixed = self.pad_to_max_length;
        Ok(PretrainingCollator {
            mlm_probability: self.mlm_probability,
            whole_word_mask: self.whole_word_mask,
            pad_to: if fixed {
                self.lm.model.max_seq_length
            } else {
                0
            },
            masked_rows_multiple: if fixed { 64 } else { 1 },
            ..PretrainingCollator::new(tokenizer, self.lm.train.seed)?
        })
    }

    /// Trains on `batches` (collated on `train_device`, the autodiff `device`) with evaluation
    /// on `eval_pairs`.
    fn fit(
        &self,
        batches: &dyn bert_train::BatchSource<bert_datasets::collate::PretrainingBatch>,
        eval_pairs: &[PretrainingPair],
        tokenizer: bert_datasets::BertTokenizer,
        (device, train_device): (&Device, Device),
    ) -> Result<(), Error> {
        let (model, json) = (
            self.lm.model.model::<BertForPreTraining>(
                &tokenizer,
                false,
                &train_device,
                self.lm.json,
            )?,
            self.lm.json,
        );
        let batch_size = self.lm.train.batch_size(&DEFAULTS);
        let collator = self.collator(&tokenizer)?;
        let task = PretrainingTask::new(eval_pairs, &collator, batch_size, tokenizer, device)?;
        let has_eval = !eval_pairs.is_empty();
        self.lm.train.train(
            &DEFAULTS,
            model,
            batches,
            &task,
            has_eval,
            &train_device,
            json,
        )?;
        if !json {
            let vocab = (task.tokenizer.vocab_size() as f64).ln();
            let dir = self.lm.train.output_dir.join("final_model");
            println!(
                "ln(vocab) = {vocab:.2}; try: --example fill_mask -- --model {}",
                dir.display()
            );
        }
        Ok(())
    }
}

pub fn main(args: Args) -> Result<(), Error> {
    let device = args.lm.backend.device()?;
    if args.streaming {
        return streamed(&args, &device);
    }
    let (train_docs, eval_docs) = args.lm.corpus.corpus(args.lm.train.seed)?.documents()?;
    let tokenizer = args
        .lm
        .model
        .tokenizer(&args.lm.train, train_docs.iter().flatten().cloned())?;
    let pairs = |docs, held_out: bool| -> Result<Vec<PretrainingPair>, Error> {
        let tokens = tokenize_documents(&tokenizer, docs)?;
        Ok(match held_out {
            false => create_pairs_duplicated(&tokens, &args.nsp(false), args.dupe_factor)?,
            true => create_pairs(&tokens, &args.nsp(true))?,
        })
    };
    let train_pairs = pairs(&train_docs, false)?;
    let mut eval_pairs = pairs(&eval_docs, true)?;
    crate::truncate(&mut eval_pairs, args.max_eval_samples);
    if !args.lm.json {
        eprintln!(
            "pretrain: {} / {} documents → {} / {} pairs of ≤ {} tokens; vocab {} on {}",
            train_docs.len(),
            eval_docs.len(),
            train_pairs.len(),
            eval_pairs.len(),
            args.lm.model.max_seq_length,
            tokenizer.vocab_size(),
            args.lm.backend.backend
        );
    }
    let (collator, train_device) = (args.collator(&tokenizer)?, args.lm.train.autodiff(&device));
    let collate_device = train_device.clone();
    let batches = args
        .lm
        .train
        .item_batches(&DEFAULTS, train_pairs, move |items, key| {
            collator.collate(&items, key, &collate_device)
        });
    args.fit(&batches, &eval_pairs, tokenizer, (&device, train_device))
}

/// `--streaming`: the corpus read, tokenized, paired and shuffled as training goes; the
/// held-out pairs are the first --max-eval-samples of the held-out documents' pairs.
fn streamed(args: &Args, device: &Device) -> Result<(), Error> {
    let corpus = args.lm.corpus.corpus(args.lm.train.seed)?;
    let sentences = corpus.stream(false)?.map_while(Result::ok).flatten();
    let tokenizer = args.lm.model.tokenizer(&args.lm.train, sentences)?;
    let eval_pairs: Vec<PretrainingPair> = corpus
        .stream_pairs(true, &tokenizer, &args.nsp(true))?
        .take(args.max_eval_samples.unwrap_or(1000))
        .collect::<Result<_, _>>()?;
    let path = corpus.path.clone();
    let (collator, train_device) = (args.collator(&tokenizer)?, args.lm.train.autodiff(device));
    let (batch_size, buffer) = (args.lm.train.batch_size(&DEFAULTS), args.shuffle_buffer);
    let (tok, options) = (tokenizer.clone(), args.nsp(false));
    let batches = streamed_pretraining_batches(
        corpus,
        tok,
        options,
        collator,
        batch_size,
        buffer,
        &train_device,
    )?;
    if !args.lm.json {
        eprintln!(
            "pretrain --streaming: {} → {} training pairs a pass, {} held out; vocab {} on {}",
            path.display(),
            batches.items(),
            eval_pairs.len(),
            tokenizer.vocab_size(),
            args.lm.backend.backend
        );
    }
    args.fit(&batches, &eval_pairs, tokenizer, (device, train_device))
}
