//! Masked-LM inputs as HF's `DataCollatorForLanguageModeling` makes them (dynamic masking):
//! each non-special token is chosen with probability `mlm_probability` (0.15); a chosen token
//! becomes `[MASK]` 80% of the time, a random token 10%, and stays 10%. Labels hold the
//! original id at chosen positions and -100 elsewhere. With `whole_word_mask`, the pieces of a
//! word (`##` continuations) are chosen together. Deterministic for a seed; a new call draws
//! new masks (a new epoch).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// HF's ignore index.
pub const IGNORE_INDEX: i64 = -100;

/// One masked sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedLm {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// Draws MLM masks.
#[derive(Debug, Clone)]
pub struct MlmMasker {
    pub mlm_probability: f64,
    pub mask_id: u32,
    pub vocab_size: u32,
    /// Ids never chosen (`[CLS]`, `[SEP]`, `[PAD]`, …).
    pub special_ids: Vec<u32>,
    pub whole_word_mask: bool,
    rng: StdRng,
}

impl MlmMasker {
    pub fn new(mask_id: u32, vocab_size: u32, special_ids: Vec<u32>, seed: u64) -> Self {
        Self {
            mlm_probability: 0.15,
            mask_id,
            vocab_size,
            special_ids,
            whole_word_mask: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Masks `ids`. `is_continuation[i]` marks `##` pieces (used by whole-word masking; may be
    /// empty otherwise).
    pub fn mask(&mut self, ids: &[u32], is_continuation: &[bool]) -> MaskedLm {
        let n = ids.len();
        let mut chosen = vec![false; n];
        let mut i = 0;
        while i < n {
            let special = self.special_ids.contains(&ids[i]);
            // A word: this token and, with whole-word masking, its `##` continuations.
            let mut end = i + 1;
            if self.whole_word_mask && !special {
                while end < n
                    && is_continuation.get(end).copied().unwrap_or(false)
                    && !self.special_ids.contains(&ids[end])
                {
                    end += 1;
                }
            }
            if !special && self.rng.random_bool(self.mlm_probability) {
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
            let r: f64 = self.rng.random();
            if r < 0.8 {
                input_ids[k] = self.mask_id;
            } else if r < 0.9 {
                input_ids[k] = self.rng.random_range(0..self.vocab_size);
            }
        }
        MaskedLm { input_ids, labels }
    }
}
