//! Masked-LM inputs as HF's `DataCollatorForLanguageModeling` makes them (dynamic masking):
//! each non-special token is chosen with probability `mlm_probability` (0.15); a chosen token
//! becomes `[MASK]` with probability `mask_replace_prob` (0.8), a random token with
//! `random_replace_prob` (0.1), and stays otherwise. Labels hold the original id at chosen
//! positions and -100 elsewhere. With `whole_word_mask`, the pieces of a word (`##`
//! continuations) are chosen together, each word with probability `mlm_probability`, and each
//! chosen piece replaced as above: BERT's `create_pretraining_data.py` and HF 4's
//! `DataCollatorForWholeWordMask` (which picked round(n·p) tokens' worth of words instead);
//! HF 5's `whole_word_mask=True` draws words as here but finds them by offsets (no gap between
//! two tokens) and always writes `[MASK]` (`mask_replace_prob` forced to 1; set it so to match).
//! Deterministic for a seed; a new call draws new masks (a new epoch).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{BertTokenizer, DataError};

/// HF's ignore index.
pub const IGNORE_INDEX: i64 = -100;

/// One masked sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedLm {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// What MLM masking may choose and how: the options of HF's `DataCollatorForLanguageModeling`
/// and `DataCollatorForWholeWordMask`.
#[derive(Debug, Clone, PartialEq)]
pub struct MlmOptions {
    /// The chance of each non-special token to be chosen (0.15).
    pub mlm_probability: f64,
    /// The chance of a chosen token to become `[MASK]` (0.8).
    pub mask_replace_prob: f64,
    /// The chance of a chosen token to become a random token (0.1); it stays itself with the
    /// rest, `1 - mask_replace_prob - random_replace_prob`.
    pub random_replace_prob: f64,
    pub mask_id: u32,
    /// Random replacements are drawn from `0..vocab_size`.
    pub vocab_size: u32,
    /// Ids never chosen (`[CLS]`, `[SEP]`, `[PAD]`, …).
    pub special_ids: Vec<u32>,
    /// Choose the `##` pieces of a word with it (off).
    pub whole_word_mask: bool,
    /// For each vocabulary id, whether it is a `##` piece ([`continuation_table`]); read only
    /// with `whole_word_mask` (an id past its end is a word start).
    pub continuation: Vec<bool>,
}

impl MlmOptions {
    /// BERT's defaults over `tokenizer`'s vocabulary: 15% of the tokens, token by token, never
    /// `[CLS]`, `[SEP]`, `[PAD]`, `[MASK]` or `[UNK]`.
    pub fn new(tokenizer: &BertTokenizer) -> Result<Self, DataError> {
        let s = tokenizer.special_ids()?;
        Ok(Self {
            mlm_probability: 0.15,
            mask_replace_prob: 0.8,
            random_replace_prob: 0.1,
            mask_id: s.mask,
            vocab_size: tokenizer.vocab_size() as u32,
            special_ids: vec![s.cls, s.sep, s.pad, s.mask, s.unk],
            whole_word_mask: false,
            continuation: continuation_table(tokenizer),
        })
    }

    /// The checks of HF's `DataCollatorForLanguageModeling.__post_init__`, in its words, and a
    /// vocabulary to draw random tokens from. Library code that takes options calls it where
    /// it can still return an error ([`crate::collate::PretrainingCollator::check`]).
    pub fn check(&self) -> Result<(), DataError> {
        let unit = |p: f64| (0.0..=1.0).contains(&p);
        let fail = |m: &str| Err(DataError::Option(m.to_string()));
        if !unit(self.mlm_probability) {
            return fail("mlm_probability should be between 0 and 1.");
        }
        if self.mask_replace_prob + self.random_replace_prob > 1.0 {
            return fail(
                "The sum of mask_replace_prob and random_replace_prob should not exceed 1",
            );
        }
        if !unit(self.mask_replace_prob) {
            return fail("mask_replace_prob should be between 0 and 1.");
        }
        if !unit(self.random_replace_prob) {
            return fail("random_replace_prob should be between 0 and 1.");
        }
        if self.random_replace_prob > 0.0 && self.vocab_size == 0 {
            return fail("random_replace_prob > 0 needs a vocabulary (vocab_size is 0)");
        }
        Ok(())
    }

    /// A masker with these options drawing from `seed` (options that fail [`Self::check`]
    /// panic when it masks).
    pub fn masker(&self, seed: u64) -> MlmMasker {
        MlmMasker {
            options: self.clone(),
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

/// For each id of the tokenizer's vocabulary, whether it is a `##` continuation piece.
pub fn continuation_table(tokenizer: &BertTokenizer) -> Vec<bool> {
    let mut table = vec![false; tokenizer.vocab_size()];
    for (token, id) in tokenizer.inner.get_vocab(true) {
        if let Some(c) = table.get_mut(id as usize) {
            *c = token.starts_with("##");
        }
    }
    table
}

/// Draws MLM masks ([`MlmOptions::masker`]).
#[derive(Debug, Clone)]
pub struct MlmMasker {
    pub options: MlmOptions,
    rng: StdRng,
}

impl MlmMasker {
    /// Masks `ids`.
    pub fn mask(&mut self, ids: &[u32]) -> MaskedLm {
        let o = &self.options;
        let is_special = |id: u32| o.special_ids.contains(&id);
        let is_continuation = |id: u32| o.continuation.get(id as usize).copied().unwrap_or(false);
        let n = ids.len();
        let mut chosen = vec![false; n];
        let mut i = 0;
        while i < n {
            let special = is_special(ids[i]);
            // A word: this token and, with whole-word masking, its `##` continuations.
            let mut end = i + 1;
            if o.whole_word_mask && !special {
                while end < n && is_continuation(ids[end]) && !is_special(ids[end]) {
                    end += 1;
                }
            }
            if !special && self.rng.random_bool(o.mlm_probability) {
                chosen[i..end].iter_mut().for_each(|c| *c = true);
            }
            i = end;
        }
        let mut input_ids = ids.to_vec();
        let mut labels = vec![IGNORE_INDEX; n];
        for k in 0..n {
            if !chosen[k] {
                continue;
            }
            labels[k] = ids[k] as i64;
            // One uniform draw decides (HF draws two Bernoullis: the same distribution). With
            // the defaults 0.8 + 0.1 rounds to 0.9 exactly: the draws of a fixed 80/10/10.
            let r: f64 = self.rng.random();
            if r < o.mask_replace_prob {
                input_ids[k] = o.mask_id;
            } else if r < o.mask_replace_prob + o.random_replace_prob {
                input_ids[k] = self.rng.random_range(0..o.vocab_size);
            }
        }
        MaskedLm { input_ids, labels }
    }
}
