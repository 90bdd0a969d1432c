//! `pretrain`: pretrain `BertForPreTraining` (masked LM + next sentence prediction) from
//! scratch or from an HF model directory, on a text corpus, with a given tokenizer or a
//! WordPiece vocabulary trained on the corpus. Pairs as BERT's `create_pretraining_data`
//! (NSP 50/50), masks drawn anew for every batch (dynamic masking, 80/10/10). Reports MLM
//! loss/accuracy and NSP accuracy on held-out documents; checkpoints and `--resume` come
//! from the trainer.
//!
//! With no arguments it pretrains a small BERT (4 layers, hidden 256) on the Jargon File.

use std::path::{Path, PathBuf};

use bert::{
    BertConfig, BertForPreTraining, BertInput, BertLMHeadModel, BertPretrained, MaskedPositions,
};
use bert_datasets::collate::{TokenizedText, pad_texts, pad_texts_to};
use bert_datasets::pretraining::{
    MlmMasker, NspOptions, PretrainingPair, create_pairs, read_documents, split_paragraphs,
};
use bert_datasets::{BertTokenizer, WordPieceOptions};
use bert_train::{Metrics, TrainError, TrainTask, train};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use serde_json::json;

use crate::{
    BackendArgs, Error, TrainArgs, TrainDefaults, save_pretrained_with_tokenizer, split_indices,
};

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
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 4)]
    pub num_hidden_layers: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = 4)]
    pub num_attention_heads: usize,
    /// Default 4 × hidden size.
    #[arg(long)]
    pub intermediate_size: Option<usize>,
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    #[arg(long, default_value_t = 0.1)]
    pub short_seq_prob: f64,
    #[arg(long, default_value_t = 0.15)]
    pub mlm_probability: f64,
    /// Times the NSP pairs are drawn from the training documents, each time with another seed
    /// (other chunk lengths, A/B cuts and random B segments), as `create_pretraining_data.py`'s
    /// `--dupe_factor` (BERT used 10). MLM masks are drawn anew for every batch regardless.
    #[arg(long, default_value_t = 1)]
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
    #[arg(long, default_value_t = 0.05)]
    pub eval_fraction: f64,
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

#[derive(Debug, Clone)]
struct Batch {
    input: BertInput,
    /// The MLM labels as masked rows: the prediction head runs on those only.
    masked: MaskedPositions,
    next_sentence_label: Tensor<1, Int>,
}

/// What batching needs to know about the vocabulary.
#[derive(Clone)]
struct Collator {
    cls: u32,
    sep: u32,
    pad: u32,
    mask: u32,
    vocab_size: u32,
    specials: Vec<u32>,
    /// `##` pieces, for whole-word masking.
    is_continuation: Vec<bool>,
    mlm_probability: f64,
    whole_word_mask: bool,
    seed: u64,
    /// Pad to at least this many tokens (0: to the longest pair).
    pad_to: usize,
    /// Pad the masked rows to a multiple of this (few distinct shapes for GPU backends).
    masked_rows_multiple: usize,
}

impl Collator {
    /// Pads the pairs and draws their masks from `(seed, key)`.
    fn collate(&self, pairs: &[PretrainingPair], key: u64, device: &Device) -> Batch {
        let mut masker = MlmMasker::new(
            self.mask,
            self.vocab_size,
            self.specials.clone(),
            self.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        masker.mlm_probability = self.mlm_probability;
        masker.whole_word_mask = self.whole_word_mask;
        let mut texts = Vec::with_capacity(pairs.len());
        let mut labels = Vec::with_capacity(pairs.len());
        for p in pairs {
            let (ids, types) = p.to_input(self.cls, self.sep);
            let cont: Vec<bool> = ids
                .iter()
                .map(|&i| {
                    self.is_continuation
                        .get(i as usize)
                        .copied()
                        .unwrap_or(false)
                })
                .collect();
            let m = masker.mask(&ids, &cont);
            texts.push(TokenizedText {
                input_ids: m.input_ids,
                token_type_ids: types,
            });
            labels.push(m.labels);
        }
        let refs: Vec<&TokenizedText> = texts.iter().collect();
        let t = pad_texts_to(&refs, self.pad, self.pad_to, device);
        let [b, s] = t.input_ids.dims();
        let labels: Vec<i64> = labels
            .into_iter()
            .flat_map(|l| l.into_iter().chain(std::iter::repeat(-100)).take(s))
            .collect();
        let nsp: Vec<i64> = pairs.iter().map(|p| p.next_sentence_label as i64).collect();
        // The MLM labels' range comes with `masked` (forward_masked checks it from there).
        let mut input = crate::text_input(t);
        input.host_bounds.next_sentence_label = Some(bert::bounds(nsp.iter().copied(), None));
        let masked = MaskedPositions::from_labels(&labels, s, self.masked_rows_multiple, device)
            .expect("labels padded to [batch, seq] and a multiple ≥ 1");
        Batch {
            input,
            masked,
            next_sentence_label: Tensor::from_data(TensorData::new(nsp, [b]), device),
        }
    }
}

struct Task {
    eval: Vec<Batch>,
    tokenizer: BertTokenizer,
}

impl TrainTask<BertForPreTraining, Batch> for Task {
    fn loss(&self, model: &BertForPreTraining, b: Batch) -> Result<Tensor<1>, TrainError> {
        Ok(model
            .forward_masked(b.input, &b.masked, b.next_sentence_label)?
            .loss)
    }

    fn evaluate(&self, model: &BertForPreTraining) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut mlm_loss_sum, mut masked, mut mlm_right) = (0.0, 0usize, 0i64);
        let (mut nsp_right, mut pairs, mut loss) = (0i64, 0usize, 0.0);
        for b in &self.eval {
            let out =
                model.forward_masked(b.input.clone(), &b.masked, b.next_sentence_label.clone())?;
            let n = b.next_sentence_label.dims()[0];
            loss += out.loss.into_scalar::<f32>() as f64 * n as f64;
            pairs += n;
            // Token-level MLM loss and accuracy over the masked rows (padding rows are -100).
            let labels = b.masked.labels.clone();
            let rows = labels.dims()[0];
            let keep = labels.clone().greater_equal_elem(0);
            let logp = burn::tensor::activation::log_softmax(out.prediction_logits.clone(), 1);
            let picked = logp
                .gather(1, labels.clone().clamp_min(0).reshape([rows, 1]))
                .reshape([rows]);
            let nll: f32 = (picked.neg() * keep.clone().float()).sum().into_scalar();
            let right: i64 = out
                .prediction_logits
                .argmax(1)
                .reshape([rows])
                .equal(labels)
                .bool_and(keep)
                .int()
                .sum()
                .into_scalar();
            mlm_loss_sum += nll as f64;
            masked += b.masked.num_labelled;
            mlm_right += right;
            let nsp: i64 = out
                .seq_relationship_logits
                .argmax(1)
                .reshape([n])
                .equal(b.next_sentence_label.clone())
                .int()
                .sum()
                .into_scalar();
            nsp_right += nsp;
        }
        let masked = masked.max(1) as f64;
        Ok(Some(Metrics::from([
            ("eval_loss".to_string(), loss / pairs as f64),
            ("eval_mlm_loss".to_string(), mlm_loss_sum / masked),
            ("eval_mlm_accuracy".to_string(), mlm_right as f64 / masked),
            (
                "eval_nsp_accuracy".to_string(),
                nsp_right as f64 / pairs as f64,
            ),
        ])))
    }

    fn save_pretrained(&self, model: &BertForPreTraining, dir: &Path) -> Result<(), TrainError> {
        Ok(save_pretrained_with_tokenizer(model, &self.tokenizer, dir)?)
    }
}

/// Documents of sentences of token ids.
fn tokenize(tokenizer: &BertTokenizer, docs: &[Vec<String>]) -> Result<Vec<Vec<Vec<u32>>>, Error> {
    let sentences: Vec<&str> = docs.iter().flatten().map(String::as_str).collect();
    let encoded = tokenizer
        .inner
        .encode_batch(sentences, false)
        .map_err(|e| format!("tokenizer: {e}"))?;
    let mut it = encoded.into_iter();
    Ok(docs
        .iter()
        .map(|d| {
            d.iter()
                .map(|_| {
                    it.next()
                        .expect("one encoding per sentence")
                        .get_ids()
                        .to_vec()
                })
                .collect()
        })
        .collect())
}

fn load_tokenizer(path: &Path) -> Result<BertTokenizer, Error> {
    Ok(if path.is_dir() {
        BertTokenizer::from_pretrained(path)?
    } else {
        BertTokenizer::from_file(path)?
    })
}

pub fn main(args: Args) -> Result<(), Error> {
    let device = args.backend.device()?;
    let default_corpus = args.corpus.is_none();
    let corpus = match &args.corpus {
        Some(p) => p.clone(),
        None => crate::fixtures_dir()?.join("data/corpus/jargon.txt"),
    };
    let docs = if args.paragraphs || default_corpus {
        let text =
            std::fs::read_to_string(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        split_paragraphs(&text, 4)
    } else {
        read_documents(&corpus)?
    };
    if docs.len() < 4 {
        return Err(format!(
            "{}: {} documents; pretraining needs at least 4 (blank lines separate documents)",
            corpus.display(),
            docs.len()
        )
        .into());
    }
    let (train_idx, eval_idx) = split_indices(docs.len(), args.eval_fraction, args.train.seed);
    let train_docs: Vec<Vec<String>> = train_idx.iter().map(|&i| docs[i].clone()).collect();
    let eval_docs: Vec<Vec<String>> = eval_idx.iter().map(|&i| docs[i].clone()).collect();

    // The tokenizer: given, the model's, the one saved by an earlier run, or trained here.
    let saved = args.train.output_dir.join("tokenizer");
    let tokenizer = if let Some(t) = &args.tokenizer {
        load_tokenizer(t)?
    } else if let Some(m) = &args.model {
        load_tokenizer(m)?
    } else if args.train.resume.is_some() && saved.join("tokenizer.json").is_file() {
        BertTokenizer::from_file(saved.join("tokenizer.json"))?
    } else {
        let t = BertTokenizer::train_wordpiece(
            train_docs.iter().flatten(),
            args.vocab_size,
            2,
            WordPieceOptions::default(),
        )?;
        std::fs::create_dir_all(&saved)?;
        t.inner
            .save(saved.join("tokenizer.json"), false)
            .map_err(|e| format!("{}: {e}", saved.display()))?;
        t
    };
    let special = tokenizer.special_ids()?;
    let vocab_size = tokenizer.vocab_size();
    let is_continuation: Vec<bool> = (0..vocab_size as u32)
        .map(|i| {
            tokenizer
                .inner
                .id_to_token(i)
                .is_some_and(|t| t.starts_with("##"))
        })
        .collect();

    if args.causal_lm {
        return causal_lm(&args, &tokenizer, &train_docs, &eval_docs, &device);
    }
    let options = NspOptions {
        max_seq_length: args.max_seq_length,
        short_seq_prob: args.short_seq_prob,
        seed: args.train.seed,
    };
    if args.dupe_factor == 0 {
        return Err("--dupe-factor must be ≥ 1".into());
    }
    let train_tokens = tokenize(&tokenizer, &train_docs)?;
    let mut train_pairs = Vec::new();
    for dupe in 0..args.dupe_factor as u64 {
        // Duplicate 0 keeps the run's seed; later ones are seeded away from the held-out
        // pairs' seed + 1.
        let seed = options
            .seed
            .wrapping_add(dupe.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        train_pairs.extend(create_pairs(
            &train_tokens,
            &NspOptions { seed, ..options },
        )?);
    }
    let eval_pairs = create_pairs(
        &tokenize(&tokenizer, &eval_docs)?,
        &NspOptions {
            seed: args.train.seed + 1,
            ..options
        },
    )?;

    let train_device = device.clone().autodiff();
    train_device.seed(args.train.seed);
    let model = match &args.model {
        Some(dir) => {
            crate::load_model::<BertForPreTraining>(dir, |_| {}, &train_device, args.json)?
        }
        None => {
            BertForPreTraining::new(&new_config(&args, vocab_size, special.pad)?, &train_device)
        }
    };
    if model.config().vocab_size < vocab_size {
        return Err(format!(
            "the tokenizer has {vocab_size} tokens but the model's vocab_size is {}",
            model.config().vocab_size
        )
        .into());
    }
    let collator = Collator {
        cls: special.cls,
        sep: special.sep,
        pad: special.pad,
        mask: special.mask,
        vocab_size: vocab_size as u32,
        specials: vec![
            special.cls,
            special.sep,
            special.pad,
            special.mask,
            special.unk,
        ],
        is_continuation,
        mlm_probability: args.mlm_probability,
        whole_word_mask: args.whole_word_mask,
        seed: args.train.seed,
        pad_to: if args.pad_to_max_length {
            args.max_seq_length
        } else {
            0
        },
        masked_rows_multiple: if args.pad_to_max_length { 64 } else { 1 },
    };
    let batch_size = args.train.batch_size(&DEFAULTS);
    // Evaluation masks are fixed (key from the end of the u64 range), so numbers compare across steps.
    let eval: Vec<Batch> = eval_pairs
        .chunks(batch_size)
        .enumerate()
        .map(|(i, c)| collator.collate(c, u64::MAX - i as u64, &device))
        .collect();
    let (n_train, n_eval) = (train_pairs.len(), eval_pairs.len());
    let collate_device = train_device.clone();
    let c2 = collator.clone();
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_pairs,
        |p: &PretrainingPair| p.tokens_a.len() + p.tokens_b.len(),
        move |items, key| c2.collate(&items, key, &collate_device),
    );
    let training = args.train.training_arguments(
        &DEFAULTS,
        bert_train::BatchSource::len(&batches),
        !eval.is_empty(),
    );
    if !args.json {
        let c = model.config();
        eprintln!(
            "pretrain: {} documents ({} train / {} held out) from {} → {n_train} / {n_eval} pairs of ≤ {} tokens; vocab {vocab_size}; model {} layers, hidden {}, {} heads on {}",
            docs.len(),
            train_docs.len(),
            eval_docs.len(),
            corpus.display(),
            args.max_seq_length,
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            args.backend.backend
        );
    }
    let task = Task {
        eval,
        tokenizer: tokenizer.clone(),
    };
    let out = train(&training, model, &batches, &task, &train_device)?;
    let eval = crate::last_logged(&out.state.log_history, "eval_mlm_loss");
    let final_dir = training.output_dir.join("final_model");
    let ln_vocab = (vocab_size as f64).ln();
    if args.json {
        println!(
            "{}",
            json!({
                "corpus": corpus, "backend": args.backend.backend.to_string(), "vocab_size": vocab_size,
                "train_pairs": n_train, "eval_pairs": n_eval, "steps": out.state.global_step,
                "step_losses": out.step_losses, "ln_vocab": ln_vocab,
                "eval": { "loss": eval["eval_loss"], "mlm_loss": eval["eval_mlm_loss"],
                          "mlm_accuracy": eval["eval_mlm_accuracy"], "nsp_accuracy": eval["eval_nsp_accuracy"] },
                "output_dir": final_dir,
            })
        );
    } else {
        let (first, last) = crate::loss_range(&out.step_losses);
        println!(
            "trained {} steps: loss (MLM + NSP) {first:.4} → {last:.4}",
            out.state.global_step
        );
        println!(
            "held-out: MLM loss {:.4} (ln vocab = {ln_vocab:.2}), MLM accuracy {:.4}, NSP accuracy {:.4}",
            eval["eval_mlm_loss"].as_f64().unwrap_or(f64::NAN),
            eval["eval_mlm_accuracy"].as_f64().unwrap_or(f64::NAN),
            eval["eval_nsp_accuracy"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "model saved to {} (try: --example fill_mask -- --model {})",
            final_dir.display(),
            final_dir.display()
        );
    }
    Ok(())
}

/// A config for a model trained from scratch, from the size arguments.
fn new_config(args: &Args, vocab_size: usize, pad: u32) -> Result<BertConfig, Error> {
    let mut config = BertConfig::tiny(
        vocab_size,
        args.hidden_size,
        args.num_hidden_layers,
        args.num_attention_heads,
    );
    config.intermediate_size = args.intermediate_size.unwrap_or(4 * args.hidden_size);
    config.max_position_embeddings = args.max_seq_length.max(512);
    config.pad_token_id = Some(pad as usize);
    config.is_decoder = args.causal_lm;
    config.validate()?;
    Ok(config)
}

#[derive(Debug, Clone)]
struct CausalBatch {
    input: BertInput,
    labels: Tensor<2, Int>,
}

/// `[CLS]` + contiguous blocks of `max_seq_length - 1` tokens of the documents.
fn blocks(
    tokenizer: &BertTokenizer,
    docs: &[Vec<String>],
    len: usize,
    cls: u32,
) -> Result<Vec<Vec<u32>>, Error> {
    let stream: Vec<u32> = tokenize(tokenizer, docs)?
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    Ok(stream
        .chunks(len.saturating_sub(1).max(1))
        .filter(|c| c.len() > 1)
        .map(|c| std::iter::once(cls).chain(c.iter().copied()).collect())
        .collect())
}

fn causal_collate(blocks: &[Vec<u32>], pad: u32, device: &Device) -> CausalBatch {
    let texts: Vec<TokenizedText> = blocks
        .iter()
        .map(|b| TokenizedText {
            input_ids: b.clone(),
            token_type_ids: vec![0; b.len()],
        })
        .collect();
    let refs: Vec<&TokenizedText> = texts.iter().collect();
    let t = pad_texts(&refs, pad, device);
    let [b, s] = t.input_ids.dims();
    let labels: Vec<i64> = blocks
        .iter()
        .flat_map(|x| {
            x.iter()
                .map(|&i| i as i64)
                .chain(std::iter::repeat(-100))
                .take(s)
        })
        .collect();
    CausalBatch {
        input: crate::text_input(t).with_label_values(&labels),
        labels: Tensor::from_data(TensorData::new(labels, [b, s]), device),
    }
}

struct CausalTask {
    eval: Vec<CausalBatch>,
    tokenizer: BertTokenizer,
}

impl TrainTask<BertLMHeadModel, CausalBatch> for CausalTask {
    fn loss(&self, model: &BertLMHeadModel, b: CausalBatch) -> Result<Tensor<1>, TrainError> {
        Ok(model
            .forward(b.input, Some(b.labels))?
            .loss
            .expect("labels"))
    }

    fn evaluate(&self, model: &BertLMHeadModel) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut sum, mut tokens) = (0.0, 0i64);
        for b in &self.eval {
            // Predicted tokens: every label after the first of a row that is not padding.
            let [n, s] = b.labels.dims();
            let count: i64 = b
                .labels
                .clone()
                .slice([0..n, 1..s])
                .greater_equal_elem(0)
                .int()
                .sum()
                .into_scalar();
            let loss: f32 = model
                .forward(b.input.clone(), Some(b.labels.clone()))?
                .loss
                .expect("labels")
                .into_scalar();
            sum += loss as f64 * count as f64;
            tokens += count;
        }
        let loss = sum / tokens.max(1) as f64;
        Ok(Some(Metrics::from([
            ("eval_loss".to_string(), loss),
            ("eval_perplexity".to_string(), loss.exp()),
        ])))
    }

    fn save_pretrained(&self, model: &BertLMHeadModel, dir: &Path) -> Result<(), TrainError> {
        Ok(save_pretrained_with_tokenizer(model, &self.tokenizer, dir)?)
    }
}

/// `--causal-lm`: next-token training of a `BertLMHeadModel`.
fn causal_lm(
    args: &Args,
    tokenizer: &BertTokenizer,
    train_docs: &[Vec<String>],
    eval_docs: &[Vec<String>],
    device: &Device,
) -> Result<(), Error> {
    let special = tokenizer.special_ids()?;
    let vocab_size = tokenizer.vocab_size();
    let train_blocks = blocks(tokenizer, train_docs, args.max_seq_length, special.cls)?;
    let eval_blocks = blocks(tokenizer, eval_docs, args.max_seq_length, special.cls)?;
    let train_device = device.clone().autodiff();
    train_device.seed(args.train.seed);
    let model = match &args.model {
        Some(dir) => crate::load_model::<BertLMHeadModel>(
            dir,
            |c| c.is_decoder = true,
            &train_device,
            args.json,
        )?,
        None => BertLMHeadModel::new(&new_config(args, vocab_size, special.pad)?, &train_device),
    };
    let batch_size = args.train.batch_size(&DEFAULTS);
    let eval: Vec<CausalBatch> = eval_blocks
        .chunks(batch_size)
        .map(|c| causal_collate(c, special.pad, device))
        .collect();
    let n_train = train_blocks.len();
    let collate_device = train_device.clone();
    let pad = special.pad;
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_blocks,
        |b: &Vec<u32>| b.len(),
        move |items, _| causal_collate(&items, pad, &collate_device),
    );
    let training = args.train.training_arguments(
        &DEFAULTS,
        bert_train::BatchSource::len(&batches),
        !eval.is_empty(),
    );
    if !args.json {
        eprintln!(
            "pretrain --causal-lm: {n_train} training / {} held-out blocks of ≤ {} tokens; vocab {vocab_size}; on {}",
            eval_blocks.len(),
            args.max_seq_length,
            args.backend.backend
        );
    }
    let task = CausalTask {
        eval,
        tokenizer: tokenizer.clone(),
    };
    let out = train(&training, model, &batches, &task, &train_device)?;
    let eval = crate::last_logged(&out.state.log_history, "eval_perplexity");
    let final_dir = training.output_dir.join("final_model");
    if args.json {
        println!(
            "{}",
            json!({
                "backend": args.backend.backend.to_string(), "vocab_size": vocab_size, "train_blocks": n_train,
                "steps": out.state.global_step, "step_losses": out.step_losses, "ln_vocab": (vocab_size as f64).ln(),
                "eval": { "loss": eval["eval_loss"], "perplexity": eval["eval_perplexity"] }, "output_dir": final_dir,
            })
        );
    } else {
        let (first, last) = crate::loss_range(&out.step_losses);
        println!(
            "trained {} steps: next-token loss {first:.4} → {last:.4}",
            out.state.global_step
        );
        println!(
            "held-out: loss {:.4}, perplexity {:.1} (vocab {vocab_size})",
            eval["eval_loss"].as_f64().unwrap_or(f64::NAN),
            eval["eval_perplexity"].as_f64().unwrap_or(f64::NAN)
        );
        println!(
            "model saved to {} (try: --example generate -- --model {})",
            final_dir.display(),
            final_dir.display()
        );
    }
    Ok(())
}
