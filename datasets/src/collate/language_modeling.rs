//! Language modelling: BERT pretraining (masked LM + next sentence prediction, HF's
//! `DataCollatorForLanguageModeling` / `DataCollatorForWholeWordMask` over NSP pairs), masked
//! LM alone (the same masking over blocks of text, for `BertForMaskedLM`) and causal LM
//! (next-token labels, the model shifts them).

use bert::{BertInput, MaskedPositions};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor};

use super::{
    DataCollatorWithPadding, TokenizedText, int1, int2, pad_labels, pad_texts, pad_texts_to,
};
use crate::pretraining::{MlmOptions, PretrainingPair};
use crate::{BertTokenizer, DataError, SpecialIds};

/// `BertForPreTraining::forward_masked`'s arguments.
#[derive(Debug, Clone)]
pub struct PretrainingBatch {
    pub input: BertInput,
    /// The MLM labels as masked rows: the prediction head runs on those only.
    pub masked: MaskedPositions,
    pub next_sentence_label: Tensor<1, Int>,
}

/// `BertForMaskedLM::forward_masked`'s arguments.
#[derive(Debug, Clone)]
pub struct MaskedLmBatch {
    pub input: BertInput,
    /// The MLM labels as masked rows: the prediction head runs on those only.
    pub masked: MaskedPositions,
}

/// Masks NSP pairs ([`Self::collate`]) or blocks of text ([`Self::collate_blocks`]) anew for
/// every batch (dynamic masking, 80/10/10 as BERT), from a seed and the batch's key: a resumed
/// run draws the same masks.
#[derive(Debug, Clone)]
pub struct PretrainingCollator {
    /// The tokenizer's special ids: the pairs are built with `cls` and `sep` and padded with
    /// `pad` (what masking never chooses is `mlm.special_ids`).
    pub special: SpecialIds,
    pub mlm: MlmOptions,
    pub seed: u64,
    /// Pad to at least this many tokens (0: to the longest pair).
    pub pad_to: usize,
    /// Pad the masked rows to a multiple of this (few distinct shapes for GPU backends).
    pub masked_rows_multiple: usize,
}

impl PretrainingCollator {
    /// BERT's defaults over `tokenizer`'s vocabulary: 15% masked, token-level, padded to the
    /// longest pair.
    pub fn new(tokenizer: &BertTokenizer, seed: u64) -> Result<Self, DataError> {
        Ok(Self {
            special: tokenizer.special_ids()?,
            mlm: MlmOptions::new(tokenizer)?,
            seed,
            pad_to: 0,
            masked_rows_multiple: 1,
        })
    }

    /// The masking options' checks ([`MlmOptions::check`], HF's) and a positive
    /// `masked_rows_multiple`: what `collate` and `collate_blocks` would otherwise panic on.
    pub fn check(&self) -> Result<(), DataError> {
        self.mlm.check()?;
        if self.masked_rows_multiple == 0 {
            return Err(DataError::Option(
                "masked_rows_multiple must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    /// HF's `pad_to_max_length`: every batch padded to `max_seq_length` tokens and its masked
    /// rows to a multiple of 64, so that GPU backends see few shapes and compile their kernels
    /// once.
    pub fn pad_to_max_length(self, max_seq_length: usize) -> Self {
        Self {
            pad_to: max_seq_length,
            masked_rows_multiple: 64,
            ..self
        }
    }

    /// Pads the pairs (`[CLS] A [SEP] B [SEP]`) and draws their masks from `(seed, key)`.
    pub fn collate(
        &self,
        pairs: &[PretrainingPair],
        key: u64,
        device: &Device,
    ) -> PretrainingBatch {
        let (cls, sep) = (self.special.cls, self.special.sep);
        let texts = pairs.iter().map(|p| p.to_input(cls, sep));
        let (mut input, masked) = self.mask_and_pad(texts, key, device);
        let nsp: Vec<i64> = pairs.iter().map(|p| p.next_sentence_label as i64).collect();
        input.host_bounds.next_sentence_label = Some(bert::bounds(nsp.iter().copied(), None));
        PretrainingBatch {
            input,
            masked,
            next_sentence_label: int1(nsp, device),
        }
    }

    /// Pads blocks of token ids (HF `run_mlm.py`'s `group_texts`, one segment each) and draws
    /// their masks from `(seed, key)`: HF's `DataCollatorForLanguageModeling` for
    /// `BertForMaskedLM`.
    pub fn collate_blocks(&self, blocks: &[Vec<u32>], key: u64, device: &Device) -> MaskedLmBatch {
        let texts = blocks.iter().map(|b| (b.as_slice(), vec![0; b.len()]));
        let (input, masked) = self.mask_and_pad(texts, key, device);
        MaskedLmBatch { input, masked }
    }

    /// The texts (ids, token types) masked in order from `(seed, key)` and padded, with their
    /// masked rows (the MLM labels' range comes with them: `forward_masked` checks it there).
    fn mask_and_pad<T: AsRef<[u32]>>(
        &self,
        texts: impl Iterator<Item = (T, Vec<u32>)>,
        key: u64,
        device: &Device,
    ) -> (BertInput, MaskedPositions) {
        let mut masker = (self.mlm).masker(self.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (mut masked_texts, mut labels) = (Vec::new(), Vec::new());
        for (ids, token_type_ids) in texts {
            let m = masker.mask(ids.as_ref());
            masked_texts.push(TokenizedText {
                input_ids: m.input_ids,
                token_type_ids,
            });
            labels.push(m.labels);
        }
        let refs: Vec<&TokenizedText> = masked_texts.iter().collect();
        let input = pad_texts_to(&refs, self.special.pad, self.pad_to, device);
        let s = input.input_ids.dims()[1];
        let labels = pad_labels(labels.iter().map(Vec::as_slice), s).concat();
        let masked = MaskedPositions::from_labels(&labels, s, self.masked_rows_multiple, device)
            .expect("labels padded to [batch, seq] and a multiple ≥ 1");
        (input, masked)
    }
}

/// `BertLMHeadModel`'s arguments: the labels are the ids (HF shifts them inside the model).
#[derive(Debug, Clone)]
pub struct CausalLmBatch {
    pub input: BertInput,
    /// `[b, seq]`, -100 on padding.
    pub labels: Tensor<2, Int>,
}

impl Batcher<Vec<u32>, CausalLmBatch> for DataCollatorWithPadding {
    fn batch(&self, blocks: Vec<Vec<u32>>, device: &Device) -> CausalLmBatch {
        let texts: Vec<TokenizedText> = blocks.iter().cloned().map(TokenizedText::single).collect();
        let refs: Vec<&TokenizedText> = texts.iter().collect();
        let input = pad_texts(&refs, self.pad_id, device);
        let s = input.input_ids.dims()[1];
        let ids: Vec<Vec<i64>> = blocks
            .iter()
            .map(|b| b.iter().map(|&i| i as i64).collect())
            .collect();
        let labels = pad_labels(ids.iter().map(Vec::as_slice), s);
        CausalLmBatch {
            input: input.with_label_values(&labels.concat()),
            labels: int2(labels, device),
        }
    }
}
