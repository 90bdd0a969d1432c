//! Batching: items (tokenized examples) → padded tensors on the training device, as Burn
//! `Batcher`s. Each batch is padded to its longest sequence with `[PAD]`, `attention_mask`
//! is 1 on real tokens, and token-level labels are -100 on padding. The items live in Burn
//! `InMemDataset`s, so Burn's `DataLoaderBuilder` (worker threads, seeded shuffling)
//! serves them; with one worker the seeded order is exactly reproducible, several workers
//! interleave their batches.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::tasks::classification::Label;

/// One tokenized sequence: `[CLS] A [SEP] (B [SEP])`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedText {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

impl From<&tokenizers::Encoding> for TokenizedText {
    fn from(e: &tokenizers::Encoding) -> Self {
        let n = e.get_attention_mask().iter().filter(|&&m| m == 1).count();
        Self {
            input_ids: e.get_ids()[..n].to_vec(),
            token_type_ids: e.get_type_ids()[..n].to_vec(),
        }
    }
}

/// Padded model inputs, `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct TextBatch {
    pub input_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
    /// `(min, max)` of `input_ids` and of `token_type_ids`, taken from the host vectors they
    /// were made of: the model checks them against its config without reading the device
    /// (`bert::HostBounds`).
    pub id_bounds: [(i64, i64); 2],
}

fn int2(rows: Vec<Vec<i64>>, device: &Device) -> Tensor<2, Int> {
    let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
    Tensor::from_data(TensorData::new(rows.concat(), shape), device)
}

/// Pads `texts` to the longest with `pad_id`.
pub fn pad_texts(texts: &[&TokenizedText], pad_id: u32, device: &Device) -> TextBatch {
    pad_texts_to(texts, pad_id, 0, device)
}

/// [`pad_texts`] to at least `min_len` tokens (HF's `padding="max_length"`): every batch gets
/// one shape, which spares backends that compile kernels per shape (wgpu, vulkan, cuda) a
/// compilation for each new length.
pub fn pad_texts_to(
    texts: &[&TokenizedText],
    pad_id: u32,
    min_len: usize,
    device: &Device,
) -> TextBatch {
    let len = texts
        .iter()
        .map(|t| t.input_ids.len())
        .max()
        .unwrap_or(0)
        .max(min_len);
    let pad = |v: &[u32], with: i64| -> Vec<i64> {
        v.iter()
            .map(|&x| x as i64)
            .chain(std::iter::repeat(with))
            .take(len)
            .collect()
    };
    let range = |ids: &mut dyn Iterator<Item = u32>, pad: u32, padded: bool| {
        let (lo, hi) = ids.fold((u32::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let (lo, hi) = if padded {
            (lo.min(pad), hi.max(pad))
        } else {
            (lo, hi)
        };
        (lo as i64, hi as i64)
    };
    let padded = texts.iter().any(|t| t.input_ids.len() < len);
    let id_bounds = [
        range(
            &mut texts.iter().flat_map(|t| t.input_ids.iter().copied()),
            pad_id,
            padded,
        ),
        range(
            &mut texts.iter().flat_map(|t| t.token_type_ids.iter().copied()),
            0,
            padded,
        ),
    ];
    TextBatch {
        id_bounds,
        input_ids: int2(
            texts
                .iter()
                .map(|t| pad(&t.input_ids, pad_id as i64))
                .collect(),
            device,
        ),
        attention_mask: int2(
            texts
                .iter()
                .map(|t| pad(&vec![1; t.input_ids.len()], 0))
                .collect(),
            device,
        ),
        token_type_ids: int2(
            texts.iter().map(|t| pad(&t.token_type_ids, 0)).collect(),
            device,
        ),
    }
}

/// A sequence classification / regression item.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationItem {
    pub text: TokenizedText,
    pub label: Label,
}

/// Labels of a classification batch: class ids `[b]` or targets `[b, 1]`.
#[derive(Debug, Clone)]
pub enum ClassificationTargets {
    Classes(Tensor<1, Int>),
    Values(Tensor<2>),
}

#[derive(Debug, Clone)]
pub struct ClassificationBatch {
    pub inputs: TextBatch,
    pub labels: ClassificationTargets,
}

/// Pads classification items.
#[derive(Debug, Clone, Copy)]
pub struct ClassificationBatcher {
    pub pad_id: u32,
}

impl Batcher<ClassificationItem, ClassificationBatch> for ClassificationBatcher {
    fn batch(&self, items: Vec<ClassificationItem>, device: &Device) -> ClassificationBatch {
        let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
        let inputs = pad_texts(&texts, self.pad_id, device);
        let n = items.len();
        let labels = match items.first().map(|i| &i.label) {
            Some(Label::Value(_)) => {
                let v: Vec<f32> = items
                    .iter()
                    .map(|i| match i.label {
                        Label::Value(v) => v,
                        Label::Class(c) => c as f32,
                    })
                    .collect();
                ClassificationTargets::Values(Tensor::from_data(TensorData::new(v, [n, 1]), device))
            }
            _ => {
                let v: Vec<i64> = items
                    .iter()
                    .map(|i| match i.label {
                        Label::Class(c) => c as i64,
                        Label::Value(v) => v as i64,
                    })
                    .collect();
                ClassificationTargets::Classes(Tensor::from_data(TensorData::new(v, [n]), device))
            }
        };
        ClassificationBatch { inputs, labels }
    }
}

/// A token classification item: a label per token (-100 where none).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClassificationItem {
    pub text: TokenizedText,
    pub labels: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct TokenClassificationBatch {
    pub inputs: TextBatch,
    /// `[b, seq]`, -100 on padding.
    pub labels: Tensor<2, Int>,
    /// `(min, max)` of the labels, -100 left out, from the host values (`bert::HostBounds`).
    pub label_bounds: (i64, i64),
}

#[derive(Debug, Clone, Copy)]
pub struct TokenClassificationBatcher {
    pub pad_id: u32,
}

impl Batcher<TokenClassificationItem, TokenClassificationBatch> for TokenClassificationBatcher {
    fn batch(
        &self,
        items: Vec<TokenClassificationItem>,
        device: &Device,
    ) -> TokenClassificationBatch {
        let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
        let inputs = pad_texts(&texts, self.pad_id, device);
        let len = inputs.input_ids.dims()[1];
        let labels: Vec<Vec<i64>> = items
            .iter()
            .map(|i| {
                i.labels
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(-100))
                    .take(len)
                    .collect()
            })
            .collect();
        let label_bounds = labels
            .iter()
            .flatten()
            .filter(|&&l| l != -100)
            .fold((i64::MAX, i64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        TokenClassificationBatch {
            inputs,
            labels: int2(labels, device),
            label_bounds,
        }
    }
}

/// An extractive-QA item: a window and its answer token span (0, 0 when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionAnsweringItem {
    pub text: TokenizedText,
    pub start_position: usize,
    pub end_position: usize,
}

#[derive(Debug, Clone)]
pub struct QuestionAnsweringBatch {
    pub inputs: TextBatch,
    pub start_positions: Tensor<1, Int>,
    pub end_positions: Tensor<1, Int>,
}

#[derive(Debug, Clone, Copy)]
pub struct QuestionAnsweringBatcher {
    pub pad_id: u32,
}

impl Batcher<QuestionAnsweringItem, QuestionAnsweringBatch> for QuestionAnsweringBatcher {
    fn batch(&self, items: Vec<QuestionAnsweringItem>, device: &Device) -> QuestionAnsweringBatch {
        let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
        let n = items.len();
        let pos = |f: &dyn Fn(&QuestionAnsweringItem) -> usize| {
            Tensor::from_data(
                TensorData::new(items.iter().map(|i| f(i) as i64).collect::<Vec<_>>(), [n]),
                device,
            )
        };
        QuestionAnsweringBatch {
            inputs: pad_texts(&texts, self.pad_id, device),
            start_positions: pos(&|i| i.start_position),
            end_positions: pos(&|i| i.end_position),
        }
    }
}
