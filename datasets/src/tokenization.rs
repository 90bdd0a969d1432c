//! BERT tokenization with HF `tokenizers`: load `tokenizer.json`, or build BERT's WordPiece
//! pipeline from `vocab.txt` as HF's `BertTokenizer` does (BERT normaliser with lower-casing,
//! accent stripping and Chinese-character splitting; BERT pre-tokenizer; WordPiece with
//! `[UNK]` and `##`; `[CLS] A [SEP] B [SEP]` with token types). Truncation strategies,
//! padding, offsets and word ids are those of `tokenizers`.

use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, EncodeInput, Encoding, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::DataError;

/// Options of HF's `BertTokenizer` (`tokenizer_config.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WordPieceOptions {
    /// true
    pub do_lower_case: bool,
    /// `None`: follow `do_lower_case` (HF).
    pub strip_accents: Option<bool>,
    /// true
    pub tokenize_chinese_chars: bool,
}

impl Default for WordPieceOptions {
    fn default() -> Self {
        Self {
            do_lower_case: true,
            strip_accents: None,
            tokenize_chinese_chars: true,
        }
    }
}

/// A BERT tokenizer: a `tokenizers::Tokenizer` with BERT's special tokens known.
#[derive(Clone)]
pub struct BertTokenizer {
    pub inner: Tokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

/// HF's truncation strategy names.
pub fn truncation_strategy(name: &str) -> Result<TruncationStrategy, DataError> {
    Ok(match name {
        "longest_first" => TruncationStrategy::LongestFirst,
        "only_first" => TruncationStrategy::OnlyFirst,
        "only_second" => TruncationStrategy::OnlySecond,
        other => {
            return Err(DataError::Option(format!(
                "unknown truncation strategy `{other}`; expected longest_first, only_first or only_second"
            )));
        }
    })
}

/// BERT's normalizer, pre-tokenizer and decoder around a WordPiece `model`, as HF's
/// `BertWordPieceTokenizer` builds them.
fn bert_pipeline(model: WordPiece, options: &WordPieceOptions) -> Tokenizer {
    let mut inner = Tokenizer::new(model);
    inner
        .with_normalizer(Some(BertNormalizer::new(
            true,
            options.tokenize_chinese_chars,
            options.strip_accents,
            options.do_lower_case,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_decoder(Some(WordPieceDecoder::default()));
    inner
}

/// `inner` with BERT's `[CLS] A [SEP] (B [SEP])` post-processing; its vocabulary must hold
/// `[CLS]`, `[SEP]` and `[UNK]` (`missing` makes the error naming the one it lacks).
fn with_bert_processing(
    mut inner: Tokenizer,
    missing: impl Fn(&str) -> DataError,
) -> Result<BertTokenizer, DataError> {
    let id = |t: &str| inner.token_to_id(t).ok_or_else(|| missing(t));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    id("[UNK]")?;
    inner.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(BertTokenizer { inner })
}

impl BertTokenizer {
    /// Loads a `tokenizer.json`. Padding and truncation saved in the file are dropped, as
    /// HF's `PreTrainedTokenizerFast` does: set them with [`Self::with_padding`] and
    /// [`Self::with_truncation`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let mut inner = Tokenizer::from_file(path).map_err(|e| DataError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tok_err)?;
        Ok(Self { inner })
    }

    /// A `tokenizer.json` file, or a model directory or HF-cache model id
    /// ([`Self::from_pretrained`]).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = bert::hub::resolve_model(path)?;
        if path.is_dir() {
            Self::from_pretrained(path)
        } else {
            Self::from_file(path)
        }
    }

    /// A model directory, or a model id of the local HF cache ([`bert::hub::resolve_model`]):
    /// `tokenizer.json` if present, else `vocab.txt` with the options of
    /// `tokenizer_config.json` (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`).
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = &bert::hub::resolve_model(dir)?;
        if dir.join("tokenizer.json").is_file() {
            return Self::from_file(dir.join("tokenizer.json"));
        }
        let mut options = WordPieceOptions::default();
        if let Ok(text) = std::fs::read_to_string(dir.join("tokenizer_config.json")) {
            let c: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| DataError::File {
                    path: dir.join("tokenizer_config.json").display().to_string(),
                    message: e.to_string(),
                })?;
            options.do_lower_case = c["do_lower_case"].as_bool().unwrap_or(true);
            options.strip_accents = c["strip_accents"].as_bool();
            options.tokenize_chinese_chars = c["tokenize_chinese_chars"].as_bool().unwrap_or(true);
        }
        Self::from_vocab(dir.join("vocab.txt"), options)
    }

    /// BERT's WordPiece pipeline from a `vocab.txt` (one token per line).
    pub fn from_vocab(
        vocab: impl AsRef<Path>,
        options: WordPieceOptions,
    ) -> Result<Self, DataError> {
        let vocab = vocab.as_ref();
        let file_err = |m: String| DataError::File {
            path: vocab.display().to_string(),
            message: m,
        };
        let model = WordPiece::from_file(&vocab.to_string_lossy())
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| file_err(e.to_string()))?;
        with_bert_processing(bert_pipeline(model, &options), |t| {
            file_err(format!("the vocabulary has no {t} token"))
        })
    }

    /// Truncate to `max_length` tokens (specials included) with an HF strategy; `stride`
    /// tokens overlap between overflowing windows.
    /// Trains BERT's WordPiece vocabulary on `sentences` (the `tokenizers` WordPiece trainer:
    /// `vocab_size` entries, pieces seen at least `min_frequency` times, `[PAD] [UNK] [CLS]
    /// [SEP] [MASK]` first, so `[PAD]` is id 0) and builds the BERT pipeline around it, as
    /// HF's `BertWordPieceTokenizer.train` does.
    pub fn train_wordpiece<I, S>(
        sentences: I,
        vocab_size: usize,
        min_frequency: u64,
        options: WordPieceOptions,
    ) -> Result<Self, DataError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        use tokenizers::models::TrainerWrapper;
        use tokenizers::models::wordpiece::WordPieceTrainer;
        if vocab_size < 6 {
            return Err(DataError::Option(format!(
                "vocab_size must leave room beyond the 5 special tokens, got {vocab_size}"
            )));
        }
        let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(
                specials
                    .iter()
                    .map(|t| tokenizers::AddedToken::from(t.to_string(), true))
                    .collect(),
            )
            .build()
            .into();
        let mut inner = bert_pipeline(WordPiece::default(), &options);
        inner.train(&mut trainer, sentences).map_err(tok_err)?;
        with_bert_processing(inner, |t| {
            DataError::Tokenizer(format!("the trained vocabulary has no {t}"))
        })
    }

    pub fn with_truncation(
        mut self,
        max_length: usize,
        strategy: TruncationStrategy,
        stride: usize,
    ) -> Result<Self, DataError> {
        self.inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy,
                stride,
                direction: TruncationDirection::Right,
            }))
            .map_err(tok_err)?;
        Ok(self)
    }

    /// Truncates to `max_length` tokens (longest sequence first for pairs), as HF's
    /// `truncation=True, max_length=N`; 0 is an error.
    pub fn with_max_length(self, max_length: usize) -> Result<Self, DataError> {
        if max_length == 0 {
            return Err(DataError::Option(
                "max_length is 0; it must be at least 1 (and at most the model's max_position_embeddings)".into(),
            ));
        }
        self.with_truncation(max_length, TruncationStrategy::LongestFirst, 0)
    }

    /// Pad each batch to its longest sequence (`None`) or to a fixed length, with `[PAD]`.
    pub fn with_padding(mut self, to_length: Option<usize>) -> Result<Self, DataError> {
        let pad_id = self
            .inner
            .token_to_id("[PAD]")
            .ok_or_else(|| DataError::Tokenizer("the vocabulary has no [PAD] token".into()))?;
        self.inner.with_padding(Some(PaddingParams {
            strategy: match to_length {
                Some(n) => PaddingStrategy::Fixed(n),
                None => PaddingStrategy::BatchLongest,
            },
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: "[PAD]".into(),
        }));
        Ok(self)
    }

    /// `[CLS] text [SEP]`. Offsets count characters, as HF's `offset_mapping`.
    pub fn encode(&self, text: &str) -> Result<Encoding, DataError> {
        self.inner.encode_char_offsets(text, true).map_err(tok_err)
    }

    /// `[CLS] a [SEP] b [SEP]`, token types 0 then 1; character offsets.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Encoding, DataError> {
        self.inner
            .encode_char_offsets((a, b), true)
            .map_err(tok_err)
    }

    /// Many inputs at once, in parallel (padded together when padding is set); character offsets.
    pub fn encode_batch<'s, I: Into<EncodeInput<'s>> + Send>(
        &self,
        inputs: Vec<I>,
    ) -> Result<Vec<Encoding>, DataError> {
        self.inner
            .encode_batch_char_offsets(inputs, true)
            .map_err(tok_err)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Writes `tokenizer.json` (and `vocab.txt` for WordPiece, which HF's slow
    /// `BertTokenizer` reads) into `dir`, beside a model's `save_pretrained`.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<(), DataError> {
        let dir = dir.as_ref();
        let err = |e: &dyn std::fmt::Display| DataError::File {
            path: dir.display().to_string(),
            message: format!("cannot save the tokenizer: {e}"),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        self.inner
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| err(&e))?;
        use tokenizers::Model;
        self.inner
            .get_model()
            .save(dir, None)
            .map_err(|e| err(&e))?;
        Ok(())
    }

    /// The vocabulary's size with the added tokens (HF's `len(tokenizer)`): what
    /// `resize_token_embeddings` takes after [`Self::add_tokens`].
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// HF's `tokenizer.add_tokens(tokens)`: each token not yet in the vocabulary gets the next
    /// id and is never split, matched on normalized text (HF's default for added non-special
    /// tokens: lower-cased as the text around it); returns how many were new. Then
    /// `model.resize_token_embeddings(tokenizer.vocab_size())`.
    pub fn add_tokens(&mut self, tokens: &[&str]) -> usize {
        let added: Vec<AddedToken> = (tokens.iter())
            .map(|t| AddedToken::from(t.to_string(), false))
            .collect();
        self.inner.add_tokens(&added)
    }

    /// Ids of `[CLS]`, `[SEP]`, `[MASK]`, `[PAD]`, `[UNK]`.
    pub fn special_ids(&self) -> Result<SpecialIds, DataError> {
        let id = |t: &str| {
            self.token_to_id(t)
                .ok_or_else(|| DataError::Tokenizer(format!("the vocabulary has no {t} token")))
        };
        Ok(SpecialIds {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            mask: id("[MASK]")?,
            pad: id("[PAD]")?,
            unk: id("[UNK]")?,
        })
    }
}

/// BERT's special token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
    pub unk: u32,
}
