//! What the language-model examples (`pretrain`, `mlm`, `clm`) share: the corpus and its held-out
//! documents, the tokenizer (given, the model's, or WordPiece trained on the corpus) and the
//! model (an HF checkpoint, or a new one of the given size).

use std::path::PathBuf;

use bert::{BertConfig, BertPretrained};
use bert_datasets::collate::PretrainingCollator;
use bert_datasets::pretraining::{
    Corpus, CorpusFormat, NspOptions, group_texts, tokenize_documents,
};
use bert_datasets::{BertTokenizer, WordPieceOptions};
use bert_train::tasks::LmTask;
use bert_train::{BatchSource, HeadLoss, TrainOutput, TrainTask};
use burn::module::Module;
use burn::tensor::Device;

use crate::{BackendArgs, Error, TrainArgs, TrainDefaults, range};

/// What `pretrain`, `mlm` and `clm` take alike: the backend, the corpus, the model and tokenizer, and
/// the trainer's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LmArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the results as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The training and held-out documents of the corpus as blocks of `--max-seq-length` tokens
/// (HF's `group_texts`: each block starts with `[CLS]`), and the tokenizer: what `mlm` and `clm`
/// train on.
pub struct Blocks {
    pub train: Vec<Vec<u32>>,
    pub eval: Vec<Vec<u32>>,
    pub tokenizer: BertTokenizer,
}

impl LmArgs {
    /// The corpus as [`Blocks`]; with `sep`, every document ends with `[SEP]` (as `run_mlm.py`'s
    /// texts do: the model sees the separator it will be given at inference). Says what it made
    /// on stderr as `example` unless `--json`.
    pub fn blocks(&self, example: &str, sep: bool) -> Result<Blocks, Error> {
        let (train_docs, eval_docs) = self.corpus.corpus(self.train.seed)?.documents()?;
        let tokenizer =
            (self.model).tokenizer(&self.train, train_docs.iter().flatten().cloned())?;
        let ids = tokenizer.special_ids()?;
        let blocks = |docs| -> Result<_, Error> {
            let mut tokens = tokenize_documents(&tokenizer, docs)?;
            if sep {
                tokens.iter_mut().for_each(|d| d.push(vec![ids.sep]));
            }
            Ok(group_texts(&tokens, self.model.max_seq_length, ids.cls))
        };
        let (train, eval) = (blocks(&train_docs)?, blocks(&eval_docs)?);
        if !self.json {
            eprintln!(
                "{example}: {} / {} documents → {} / {} blocks of {} tokens; vocab {} on {}",
                train_docs.len(),
                eval_docs.len(),
                train.len(),
                eval.len(),
                self.model.max_seq_length,
                tokenizer.vocab_size(),
                self.backend.backend
            );
        }
        Ok(Blocks {
            train,
            eval,
            tokenizer,
        })
    }

    /// Trains `model` on `batches` with the language-modelling `task` (evaluating when it has
    /// held-out batches) on the autodiff `device`, with the example's defaults `d`; prints the
    /// report.
    pub fn fit<M, B: 'static>(
        &self,
        d: &TrainDefaults,
        model: M,
        batches: &dyn BatchSource<B>,
        task: &LmTask<B>,
        device: &Device,
    ) -> Result<TrainOutput<M>, Error>
    where
        M: Module + BertPretrained + HeadLoss<B> + 'static,
        LmTask<B>: TrainTask<M, B>,
    {
        let has_eval = !task.eval.is_empty();
        (self.train).train(d, model, batches, task, has_eval, device, self.json)
    }
}

/// The corpus (HF's `--train_file` and `--validation_split_percentage`).
#[derive(Debug, Clone, clap::Args)]
pub struct CorpusArgs {
    /// Text corpus (default: the Jargon File from the fixtures).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// The corpus is plain paragraphs (split into sentences and documents), not one sentence
    /// per line with blank lines between documents. Default for the fixture corpus.
    #[arg(long)]
    pub paragraphs: bool,
    /// Fraction of documents held out for evaluation.
    #[arg(long, default_value_t = 0.05, value_parser = range::fraction)]
    pub eval_fraction: f64,
}

impl CorpusArgs {
    /// The corpus and its split by `seed`.
    pub fn corpus(&self, seed: u64) -> Result<Corpus, Error> {
        let paragraphs = CorpusFormat::Paragraphs { heading_words: 4 };
        let (path, format) = match &self.corpus {
            Some(p) if self.paragraphs => (p.clone(), paragraphs),
            Some(p) => (p.clone(), CorpusFormat::Sentences),
            None => (
                crate::fixtures_dir()?.join("data/corpus/jargon.txt"),
                paragraphs,
            ),
        };
        let eval_fraction = self.eval_fraction;
        Ok(Corpus {
            path,
            format,
            eval_fraction,
            seed,
        })
    }
}

/// The model and tokenizer: an HF directory to continue from, or a new model of this size.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
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
    /// Tokens per sequence (a pair of `pretrain`, a block of `mlm` and `clm`).
    #[arg(long, default_value_t = 128, value_parser = range::at_least_one)]
    pub max_seq_length: usize,
}

impl ModelArgs {
    /// The tokenizer: given, the model's, the one an earlier run saved (on `--resume`), or
    /// WordPiece trained on the training `sentences` and saved in `output_dir/tokenizer/`.
    pub fn tokenizer(
        &self,
        train: &TrainArgs,
        sentences: impl Iterator<Item = String> + Send,
    ) -> Result<BertTokenizer, Error> {
        let saved = train.output_dir.join("tokenizer");
        if let Some(t) = self.tokenizer.as_ref().or(self.model.as_ref()) {
            return Ok(BertTokenizer::from_path(t)?);
        }
        if train.resume.is_some() && saved.join("tokenizer.json").is_file() {
            return Ok(BertTokenizer::from_file(saved.join("tokenizer.json"))?);
        }
        let options = WordPieceOptions::default();
        let t = BertTokenizer::train_wordpiece(sentences, self.vocab_size, 2, options)?;
        t.save_pretrained(&saved)?;
        Ok(t)
    }

    /// The model: loaded from --model (a decoder when `is_decoder`), or new from the size
    /// arguments. A vocabulary larger than the model's is an error.
    pub fn model<M: BertPretrained>(
        &self,
        tokenizer: &BertTokenizer,
        is_decoder: bool,
        device: &Device,
        quiet: bool,
    ) -> Result<M, Error> {
        let vocab_size = tokenizer.vocab_size();
        let model: M = match &self.model {
            Some(dir) => crate::load_model(dir, |c| c.is_decoder |= is_decoder, device, quiet)?,
            None => {
                let (h, l, a) = (
                    self.hidden_size,
                    self.num_hidden_layers,
                    self.num_attention_heads,
                );
                let mut config = BertConfig::tiny(vocab_size, h, l, a);
                config.intermediate_size = self.intermediate_size.unwrap_or(4 * h);
                config.max_position_embeddings = self.max_seq_length.max(512);
                config.pad_token_id = Some(tokenizer.special_ids()?.pad as usize);
                config.is_decoder = is_decoder;
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

/// HF's dynamic MLM masking (`DataCollatorForLanguageModeling`), for `pretrain` and `mlm`.
#[derive(Debug, Clone, clap::Args)]
pub struct MaskingArgs {
    #[arg(long, default_value_t = 0.15, value_parser = range::fraction)]
    pub mlm_probability: f64,
    /// Mask all pieces of a word together (HF's `DataCollatorForWholeWordMask`).
    #[arg(long)]
    pub whole_word_mask: bool,
    /// Pad every batch to --max-seq-length (HF's `pad_to_max_length`) instead of to its longest
    /// sequence: one shape for all batches, so GPU backends compile their kernels once.
    #[arg(long)]
    pub pad_to_max_length: bool,
}

impl MaskingArgs {
    /// The collator that masks as asked, seeded by --seed.
    pub fn collator(
        &self,
        tokenizer: &BertTokenizer,
        lm: &LmArgs,
    ) -> Result<PretrainingCollator, Error> {
        let mut c = PretrainingCollator::new(tokenizer, lm.train.seed)?;
        c.mlm.mlm_probability = self.mlm_probability;
        c.mlm.whole_word_mask = self.whole_word_mask;
        Ok(match self.pad_to_max_length {
            true => c.pad_to_max_length(lm.model.max_seq_length),
            false => c,
        })
    }
}

/// How `pretrain` makes its data: BERT's `create_pretraining_data.py` options, HF's dynamic
/// masking and `--streaming`.
#[derive(Debug, Clone, clap::Args)]
pub struct PretrainingDataArgs {
    #[command(flatten)]
    pub masking: MaskingArgs,
    #[arg(long, default_value_t = 0.1, value_parser = range::unit_interval)]
    pub short_seq_prob: f64,
    /// Times the NSP pairs are drawn from the training documents, each time with another seed
    /// (other chunk lengths, A/B cuts and random B segments), as `create_pretraining_data.py`'s
    /// `--dupe_factor` (BERT used 10). MLM masks are drawn anew for every batch regardless.
    #[arg(long, default_value_t = 1, value_parser = range::at_least_one)]
    pub dupe_factor: usize,
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

impl PretrainingDataArgs {
    /// NSP pairing as asked; held-out pairs are drawn with the next seed.
    pub fn nsp(&self, held_out: bool, lm: &LmArgs) -> NspOptions {
        NspOptions {
            max_seq_length: lm.model.max_seq_length,
            short_seq_prob: self.short_seq_prob,
            seed: lm.train.seed + held_out as u64,
        }
    }

    /// Dynamic MLM masking as asked.
    pub fn collator(
        &self,
        tokenizer: &BertTokenizer,
        lm: &LmArgs,
    ) -> Result<PretrainingCollator, Error> {
        self.masking.collator(tokenizer, lm)
    }
}
