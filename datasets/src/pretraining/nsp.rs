//! Segment pairs for next sentence prediction, after BERT's `create_instances_from_document`:
//! sentences are packed into chunks up to a target length (`max_seq_length - 3`, or with
//! probability `short_seq_prob` a random shorter one); A is the first part of the chunk, B is
//! either the rest (label 0, "is next") or text from a random other document (label 1),
//! each with probability 1/2; the pair is truncated to fit, trimming the longer side from a
//! random end.
//!
//! One change from the original: it forces a random B whenever a chunk holds one sentence,
//! which skews the labels towards 1; here a one-sentence chunk that draws "is next" is split
//! inside the sentence instead, so the labels are balanced 50/50.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::DataError;

/// Options of `create_pretraining_data.py`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NspOptions {
    /// 128
    pub max_seq_length: usize,
    /// 0.1
    pub short_seq_prob: f64,
    pub seed: u64,
}

impl Default for NspOptions {
    fn default() -> Self {
        Self {
            max_seq_length: 128,
            short_seq_prob: 0.1,
            seed: 12345,
        }
    }
}

/// `[CLS] A [SEP] B [SEP]` with its NSP label (0 = B follows A, 1 = B is random).
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainingPair {
    pub tokens_a: Vec<u32>,
    pub tokens_b: Vec<u32>,
    pub next_sentence_label: u8,
}

impl PretrainingPair {
    /// Input ids and token types with `[CLS]`/`[SEP]`.
    pub fn to_input(&self, cls: u32, sep: u32) -> (Vec<u32>, Vec<u32>) {
        let mut ids = Vec::with_capacity(self.tokens_a.len() + self.tokens_b.len() + 3);
        ids.push(cls);
        ids.extend(&self.tokens_a);
        ids.push(sep);
        let a_len = ids.len();
        ids.extend(&self.tokens_b);
        ids.push(sep);
        let types = (0..ids.len()).map(|i| u32::from(i >= a_len)).collect();
        (ids, types)
    }
}

/// [`create_pairs`] `dupe_factor` times, each with another seed (other chunk lengths, A/B cuts
/// and random B segments), as `create_pretraining_data.py`'s `--dupe_factor` (BERT used 10).
/// Duplicate 0 keeps `options.seed`; the others are seeded away from it by a large odd step.
pub fn create_pairs_duplicated(
    documents: &[Vec<Vec<u32>>],
    options: &NspOptions,
    dupe_factor: usize,
) -> Result<Vec<PretrainingPair>, DataError> {
    if dupe_factor == 0 {
        return Err(DataError::Option("dupe_factor must be ≥ 1".into()));
    }
    let mut pairs = Vec::new();
    for dupe in 0..dupe_factor as u64 {
        let seed = options
            .seed
            .wrapping_add(dupe.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        pairs.extend(create_pairs(documents, &NspOptions { seed, ..*options })?);
    }
    Ok(pairs)
}

/// The NSP pairs of in-memory `documents`: tokenized by `tokenizer`, then paired as
/// [`create_pairs_duplicated`] (`dupe_factor` 1: as [`create_pairs`]).
pub fn document_pairs(
    documents: &[super::Document],
    tokenizer: &crate::BertTokenizer,
    options: &NspOptions,
    dupe_factor: usize,
) -> Result<Vec<PretrainingPair>, DataError> {
    let tokens = super::tokenize_documents(tokenizer, documents)?;
    create_pairs_duplicated(&tokens, options, dupe_factor)
}

/// HF `run_clm.py`'s `group_texts`: the documents' ids concatenated and cut into blocks of
/// `block_size - 1` tokens, each after `[CLS]` (`cls`); a last block of one token is dropped.
pub fn group_texts(documents: &[Vec<Vec<u32>>], block_size: usize, cls: u32) -> Vec<Vec<u32>> {
    let stream: Vec<u32> = documents.iter().flatten().flatten().copied().collect();
    stream
        .chunks(block_size.saturating_sub(1).max(1))
        .filter(|c| c.len() > 1)
        .map(|c| std::iter::once(cls).chain(c.iter().copied()).collect())
        .collect()
}

/// Pairs from tokenized documents (each a list of sentences, each a list of token ids).
pub fn create_pairs(
    documents: &[Vec<Vec<u32>>],
    options: &NspOptions,
) -> Result<Vec<PretrainingPair>, DataError> {
    if options.max_seq_length < 5 {
        return Err(DataError::Option(format!(
            "max_seq_length must be ≥ 5, got {}",
            options.max_seq_length
        )));
    }
    let documents: Vec<&[Vec<u32>]> = documents
        .iter()
        .filter(|d| d.iter().any(|s| !s.is_empty()))
        .map(Vec::as_slice)
        .collect();
    if documents.len() < 2 {
        return Err(DataError::Option(
            "next sentence prediction needs at least two non-empty documents".into(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut pairs = Vec::new();
    for doc_index in 0..documents.len() {
        pairs_from_document(&documents, doc_index, options, &mut rng, &mut pairs);
    }
    Ok(pairs)
}

/// The pairs of `documents[doc_index]`, a random B drawn from the other `documents` (at least
/// two, none empty).
pub(crate) fn pairs_from_document(
    documents: &[&[Vec<u32>]],
    doc_index: usize,
    options: &NspOptions,
    rng: &mut StdRng,
    pairs: &mut Vec<PretrainingPair>,
) {
    let document = documents[doc_index];
    let max_tokens = options.max_seq_length - 3;
    let target = if rng.random_bool(options.short_seq_prob) {
        rng.random_range(2..=max_tokens)
    } else {
        max_tokens
    };
    let mut chunk: Vec<&Vec<u32>> = Vec::new();
    let mut length = 0;
    let mut i = 0;
    while i < document.len() {
        chunk.push(&document[i]);
        length += document[i].len();
        if i == document.len() - 1 || length >= target {
            let flat = |c: &[&Vec<u32>]| {
                c.iter()
                    .flat_map(|s| s.iter().copied())
                    .collect::<Vec<u32>>()
            };
            let a_end = if chunk.len() >= 2 {
                rng.random_range(1..chunk.len())
            } else {
                1
            };
            let mut tokens_a = flat(&chunk[..a_end]);
            let random_next = rng.random_bool(0.5);
            let mut tokens_b;
            if random_next {
                let target_b = target.saturating_sub(tokens_a.len()).max(1);
                let mut other = rng.random_range(0..documents.len());
                for _ in 0..10 {
                    if other != doc_index {
                        break;
                    }
                    other = rng.random_range(0..documents.len());
                }
                if other == doc_index {
                    other = (doc_index + 1) % documents.len();
                }
                let random_doc = documents[other];
                let start = rng.random_range(0..random_doc.len());
                tokens_b = Vec::new();
                for s in &random_doc[start..] {
                    tokens_b.extend(s);
                    if tokens_b.len() >= target_b {
                        break;
                    }
                }
                // The unused sentences of this chunk go back into the stream.
                i -= chunk.len() - a_end;
            } else if chunk.len() >= 2 {
                tokens_b = flat(&chunk[a_end..]);
            } else {
                // One sentence: split it to keep a real continuation.
                let cut = if tokens_a.len() >= 2 {
                    rng.random_range(1..tokens_a.len())
                } else {
                    tokens_a.len()
                };
                tokens_b = tokens_a.split_off(cut);
            }
            truncate_pair(&mut tokens_a, &mut tokens_b, max_tokens, rng);
            if !tokens_a.is_empty() && !tokens_b.is_empty() {
                pairs.push(PretrainingPair {
                    tokens_a,
                    tokens_b,
                    next_sentence_label: u8::from(random_next),
                });
            }
            chunk.clear();
            length = 0;
        }
        i += 1;
    }
}

/// BERT's `truncate_seq_pair`: trims the longer side, from the front or back at random.
fn truncate_pair(a: &mut Vec<u32>, b: &mut Vec<u32>, max_tokens: usize, rng: &mut StdRng) {
    while a.len() + b.len() > max_tokens {
        let longer = if a.len() > b.len() { &mut *a } else { &mut *b };
        if rng.random_bool(0.5) {
            longer.remove(0);
        } else {
            longer.pop();
        }
    }
}
