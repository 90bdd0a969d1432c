//! `pretrain`: pretrain `BertForPreTraining` (masked LM + next sentence prediction) from
//! scratch or from an HF model directory, on a text corpus, with a given tokenizer or a
//! WordPiece vocabulary trained on the corpus. Pairs as BERT's `create_pretraining_data`
//! (NSP 50/50), masks drawn anew for every batch (dynamic masking, 80/10/10). Reports MLM
//! loss/accuracy and NSP accuracy on held-out documents; checkpoints and `--resume` come
//! from the trainer. `--causal-lm` trains a `BertLMHeadModel` on next-token prediction.
//!
//! With no arguments it pretrains a small BERT (4 layers, hidden 256) on the Jargon File.

use std::path::PathBuf;

use bert::{BertConfig, BertForPreTraining, BertLMHeadModel, BertPretrained};
use bert_datasets::collate::{CausalLmBatcher, PretrainingCollator};
use bert_datasets::pretraining::{
    CorpusFormat, Document, DocumentStream, NspOptions, PretrainingPair, create_pairs,
    create_pairs_duplicated, encode_documents, group_texts, is_held_out, stream_documents,
    stream_pairs, tokenize_documents,
};
use bert_datasets::tasks::split;
use bert_datasets::{BertTokenizer, WordPieceOptions};
use bert_train::tasks::{CausalLmTask, PretrainingTask, eval_batches};
use bert_train::{ItemStream, StreamedBatches, TrainError, train};
use burn::tensor::Device;
use clap::Parser;

use crate::range;
use crate::{BackendArgs, Error, TrainArgs, TrainDefaults};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pretrain",
    about = "Pretrain BertForPreTraining (MLM + NSP) on a text corpus"
)]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Text corpus (default: the Jargon File from the fixtures).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// The corpus is plain paragraphs (split into sentences and documents), not one sentence
    /// per line with blank lines between documents. Default for the fixture corpus.
    #[arg(long)]
    pub paragraphs: bool,
    /// Continue from this HF model directory (its tokenizer too) instead of starting from scratch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A tokenizer.json, or a directory with tokenizer.json or vocab.txt; without it (and
    /// without --model) a WordPiece vocabulary is trained on the corpus.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Size of the trained WordPiece vocabulary.
    #[arg(long, default_value_t = 8000, value_parser = range::at_least_one)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 4, value_parser = range::at_least_one)]
    pub num_hidden_layers: usize,
    #[arg(long, default_value_t = 256, value_parser = range::at_least_one)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = 4, value_parser = range::at_least_one)]
    pub num_attention_heads: usize,
    /// Default 4 × hidden size.
    #[arg(long, value_parser = range::at_least_one)]
    pub intermediate_size: Option<usize>,
    #[arg(long, default_value_t = 128, value_parser = range::at_least_one)]
    pub max_seq_length: usize,
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
    /// Train a decoder (`BertLMHeadModel`, `is_decoder = true`) on next-token prediction
    /// over contiguous blocks of the corpus instead of MLM + NSP (for the `generate` example).
    #[arg(long)]
    pub causal_lm: bool,
    /// Fraction of documents held out for evaluation.
    #[arg(long, default_value_t = 0.05, value_parser = range::fraction)]
    pub eval_fraction: f64,
    /// Stream the corpus instead of loading it (HF's `--streaming`): documents are read,
    /// tokenized and paired as training goes, through a shuffle buffer, with bounded memory
    /// for a corpus of any size. Held-out documents are picked by a hash of their index.
    #[arg(long, conflicts_with_all = ["causal_lm", "dupe_factor"])]
    pub streaming: bool,
    /// With --streaming: pairs in the shuffle buffer.
    #[arg(long, default_value_t = 10_000)]
    pub shuffle_buffer: usize,
    /// Held-out pairs at most (with --streaming: 1,000 unless given).
    #[arg(long, value_parser = range::at_least_one)]
    pub max_eval_samples: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 5e-4,
    num_train_epochs: 3.0,
    batch_size: 32,
    warmup_ratio: 0.06,
};

impl Args {
    /// The corpus file and its layout.
    fn corpus(&self) -> Result<(PathBuf, CorpusFormat), Error> {
        let paragraphs = CorpusFormat::Paragraphs { heading_words: 4 };
        Ok(match &self.corpus {
            Some(p) if self.paragraphs => (p.clone(), paragraphs),
            Some(p) => (p.clone(), CorpusFormat::Sentences),
            None => (
                crate::fixtures_dir()?.join("data/corpus/jargon.txt"),
                paragraphs,
            ),
        })
    }

    /// The corpus's documents, split into training and held-out documents.
    fn documents(&self) -> Result<(Vec<Document>, Vec<Document>), Error> {
        let (path, format) = self.corpus()?;
        let docs = stream_documents(&path, format)?.collect::<Result<Vec<_>, _>>()?;
        if docs.len() < 4 {
            return Err(format!(
                "{}: {} documents; pretraining needs at least 4 (blank lines separate documents)",
                path.display(),
                docs.len()
            )
            .into());
        }
        Ok(split(docs, self.eval_fraction, self.train.seed)?)
    }

    /// The tokenizer: given, the model's, the one an earlier run saved, or WordPiece trained on
    /// the training `sentences` (and saved in `output_dir/tokenizer/`).
    fn tokenizer(
        &self,
        sentences: impl Iterator<Item = String> + Send,
    ) -> Result<BertTokenizer, Error> {
        let saved = self.train.output_dir.join("tokenizer");
        if let Some(t) = self.tokenizer.as_ref().or(self.model.as_ref()) {
            return Ok(BertTokenizer::from_path(t)?);
        }
        if self.train.resume.is_some() && saved.join("tokenizer.json").is_file() {
            return Ok(BertTokenizer::from_file(saved.join("tokenizer.json"))?);
        }
        let t = BertTokenizer::train_wordpiece(
            sentences,
            self.vocab_size,
            2,
            WordPieceOptions::default(),
        )?;
        t.save_pretrained(&saved)?;
        Ok(t)
    }

    /// Dynamic MLM masking as asked.
    fn collator(&self, tokenizer: &BertTokenizer) -> Result<PretrainingCollator, Error> {
        Ok(PretrainingCollator {
            mlm_probability: self.mlm_probability,
            whole_word_mask: self.whole_word_mask,
            pad_to: if self.pad_to_max_length {
                self.max_seq_length
            } else {
                0
            },
            masked_rows_multiple: if self.pad_to_max_length { 64 } else { 1 },
            ..PretrainingCollator::new(tokenizer, self.train.seed)?
        })
    }

    /// The model: loaded from --model, or new from the size arguments.
    fn model<M: BertPretrained>(
        &self,
        tokenizer: &BertTokenizer,
        device: &Device,
    ) -> Result<M, Error> {
        let vocab_size = tokenizer.vocab_size();
        let model: M = match &self.model {
            Some(dir) => {
                crate::load_model(dir, |c| c.is_decoder |= self.causal_lm, device, self.json)?
            }
            None => {
                let mut config = BertConfig::tiny(
                    vocab_size,
                    self.hidden_size,
                    self.num_hidden_layers,
                    self.num_attention_heads,
                );
                config.intermediate_size = self.intermediate_size.unwrap_or(4 * self.hidden_size);
                config.max_position_embeddings = self.max_seq_length.max(512);
                config.pad_token_id = Some(tokenizer.special_ids()?.pad as usize);
                config.is_decoder = self.causal_lm;
                config.validate()?;
                M::init(&config, device)
            }
        };
        if model.config().vocab_size < vocab_size {
            return Err(format!(
                "the tokenizer has {vocab_size} tokens but the model's vocab_size is {}",
                model.config().vocab_size
            )
            .into());
        }
        Ok(model)
    }
}

pub fn main(args: Args) -> Result<(), Error> {
    let device = args.backend.device()?;
    if args.streaming {
        return streamed(&args, &device);
    }
    let (train_docs, eval_docs) = args.documents()?;
    let tokenizer = args.tokenizer(train_docs.iter().flatten().cloned())?;
    let (train_tokens, eval_tokens) = (
        tokenize_documents(&tokenizer, &train_docs)?,
        tokenize_documents(&tokenizer, &eval_docs)?,
    );
    let train_device = args.train.autodiff(&device);
    let batch_size = args.train.batch_size(&DEFAULTS);
    let summary = |kind: &str, n_train: usize, n_eval: usize| {
        if !args.json {
            eprintln!(
                "pretrain: {} / {} documents → {n_train} / {n_eval} {kind} of ≤ {} tokens; vocab {} on {}",
                train_docs.len(),
                eval_docs.len(),
                args.max_seq_length,
                tokenizer.vocab_size(),
                args.backend.backend
            );
        }
    };
    if args.causal_lm {
        let cls = tokenizer.special_ids()?.cls;
        let train_blocks = group_texts(&train_tokens, args.max_seq_length, cls);
        let eval_blocks = group_texts(&eval_tokens, args.max_seq_length, cls);
        summary("blocks", train_blocks.len(), eval_blocks.len());
        let model: BertLMHeadModel = args.model(&tokenizer, &train_device)?;
        let batcher = CausalLmBatcher {
            pad_id: tokenizer.special_ids()?.pad,
        };
        let eval = eval_batches(&eval_blocks, batch_size, &batcher, &device)?;
        let batches = args
            .train
            .batches(&DEFAULTS, train_blocks, Vec::len, batcher, &train_device);
        let training = args.train.training_arguments(
            &DEFAULTS,
            batches.items.len().div_ceil(batch_size),
            !eval.is_empty(),
        );
        let task = CausalLmTask { eval, tokenizer };
        let out = train(&training, model, &batches, &task, &train_device)?;
        crate::report(&out, &training.output_dir, args.json);
        return Ok(());
    }
    let options = NspOptions {
        max_seq_length: args.max_seq_length,
        short_seq_prob: args.short_seq_prob,
        seed: args.train.seed,
    };
    let train_pairs = create_pairs_duplicated(&train_tokens, &options, args.dupe_factor)?;
    let mut eval_pairs = create_pairs(
        &eval_tokens,
        &NspOptions {
            seed: args.train.seed + 1,
            ..options
        },
    )?;
    crate::truncate(&mut eval_pairs, args.max_eval_samples);
    summary("pairs", train_pairs.len(), eval_pairs.len());
    let model: BertForPreTraining = args.model(&tokenizer, &train_device)?;
    let collator = args.collator(&tokenizer)?;
    let task = PretrainingTask::new(
        &eval_pairs,
        &collator,
        batch_size,
        tokenizer.clone(),
        &device,
    )?;
    let collate_device = train_device.clone();
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_pairs,
        |p: &PretrainingPair| p.tokens_a.len() + p.tokens_b.len(),
        move |items, key| collator.collate(&items, key, &collate_device),
    );
    let training = args.train.training_arguments(
        &DEFAULTS,
        batches.items.len().div_ceil(batch_size),
        !task.eval.is_empty(),
    );
    let out = train(&training, model, &batches, &task, &train_device)?;
    crate::report(&out, &training.output_dir, args.json);
    if !args.json {
        let final_dir = training.output_dir.join("final_model");
        println!(
            "ln(vocab) = {:.2}; try: --example fill_mask -- --model {}",
            (tokenizer.vocab_size() as f64).ln(),
            final_dir.display()
        );
    }
    Ok(())
}

/// `--streaming`: the corpus read, tokenized, paired and shuffled as training goes.
fn streamed(args: &Args, device: &Device) -> Result<(), Error> {
    let (path, format) = args.corpus()?;
    let (fraction, seed) = (args.eval_fraction, args.train.seed);
    // The documents of one side of the split, streamed.
    let side = move |held_out: bool| -> Result<DocumentStream, Error> {
        let docs = stream_documents(&path, format)?.enumerate();
        Ok(Box::new(
            docs.filter(move |(i, _)| is_held_out(*i, fraction, seed) == held_out)
                .map(|(_, d)| d),
        ))
    };
    let sentences = side(false)?.map_while(Result::ok).flatten();
    let tokenizer = args.tokenizer(sentences)?;
    let options = NspOptions {
        max_seq_length: args.max_seq_length,
        short_seq_prob: args.short_seq_prob,
        seed,
    };
    // Held-out pairs: the first --max-eval-samples of the held-out documents' pairs.
    let eval_docs = encode_documents(side(true)?, &tokenizer, 64)?;
    let eval_pairs: Vec<PretrainingPair> = stream_pairs(
        eval_docs,
        &NspOptions {
            seed: seed + 1,
            ..options
        },
        256,
    )?
    .take(args.max_eval_samples.unwrap_or(1000))
    .collect::<Result<_, _>>()?;
    let open_tokenizer = tokenizer.clone();
    let open = move || -> Result<ItemStream<PretrainingPair>, TrainError> {
        let docs = side(false).map_err(|e| TrainError::Data(e.to_string()))?;
        let pairs = stream_pairs(encode_documents(docs, &open_tokenizer, 64)?, &options, 256)?;
        Ok(Box::new(pairs.map(|p| p.map_err(TrainError::from))))
    };
    let train_device = args.train.autodiff(device);
    let model: BertForPreTraining = args.model(&tokenizer, &train_device)?;
    let collator = args.collator(&tokenizer)?;
    let batch_size = args.train.batch_size(&DEFAULTS);
    let task = PretrainingTask::new(
        &eval_pairs,
        &collator,
        batch_size,
        tokenizer.clone(),
        device,
    )?;
    let collate_device = train_device.clone();
    let batches = StreamedBatches::new(
        open,
        batch_size,
        args.shuffle_buffer,
        seed,
        move |items, key| collator.collate(&items, key, &collate_device),
    )?;
    if !args.json {
        eprintln!(
            "pretrain --streaming: {} → {} training pairs a pass, {} held out; vocab {} on {}",
            args.corpus()?.0.display(),
            batches.items(),
            eval_pairs.len(),
            tokenizer.vocab_size(),
            args.backend.backend
        );
    }
    let training = args.train.training_arguments(
        &DEFAULTS,
        bert_train::BatchSource::len(&batches),
        !eval_pairs.is_empty(),
    );
    let out = train(&training, model, &batches, &task, &train_device)?;
    crate::report(&out, &training.output_dir, args.json);
    Ok(())
}
