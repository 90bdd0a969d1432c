//! Collators (HF `data_collator.py`): tokenized items → the model's own input and label
//! types, one per task. Each batch is padded to its longest sequence with `[PAD]` (or to a
//! fixed length, HF's `padding="max_length"`), `attention_mask` is 1 on real tokens, token
//! labels are -100 on padding, and the value ranges of ids and labels are taken on the host
//! from the vectors the tensors are made of (`bert::HostBounds`): the model checks them
//! without reading the device.
//!
//! The collators are Burn `Batcher`s; the trainer's batch source (`bert_train::ItemBatches`)
//! and the evaluation loops call them, and Burn's `DataLoaderBuilder` can serve them too. The
//! fine-tuning tasks and causal LM only pad: one collator, [`DataCollatorWithPadding`], serves
//! them all (the task names below are its aliases); pretraining and masked LM also mask.
//!
//! | task                      | item                           | collator                        | batch                        |
//! |---------------------------|--------------------------------|---------------------------------|------------------------------|
//! | sequence classification   | [`ClassificationItem`]         | [`ClassificationBatcher`]       | [`ClassificationBatch`]      |
//! | token classification      | [`TokenClassificationItem`]    | [`TokenClassificationBatcher`]  | [`TokenClassificationBatch`] |
//! | question answering        | [`QuestionAnsweringItem`]      | [`QuestionAnsweringBatcher`]    | [`QuestionAnsweringBatch`]   |
//! | multiple choice           | [`MultipleChoiceItem`]         | [`MultipleChoiceBatcher`]       | [`MultipleChoiceBatch`]      |
//! | MLM + NSP pretraining     | `PretrainingPair`              | [`PretrainingCollator`]         | [`PretrainingBatch`]         |
//! | masked LM (no NSP)        | a block of ids                 | [`PretrainingCollator`]         | [`MaskedLmBatch`]            |
//! | causal LM                 | a block of ids                 | [`CausalLmBatcher`]             | [`CausalLmBatch`]            |

mod classification;
mod language_modeling;
mod multiple_choice;
mod question_answering;
mod token_classification;

pub use classification::{ClassificationBatch, ClassificationItem};
pub use language_modeling::{CausalLmBatch, MaskedLmBatch, PretrainingBatch, PretrainingCollator};
pub use multiple_choice::{MultipleChoiceBatch, MultipleChoiceItem};
pub use question_answering::{QuestionAnsweringBatch, QuestionAnsweringItem};
pub use token_classification::{TokenClassificationBatch, TokenClassificationItem};

/// Pads a batch of items to its longest sequence with `pad_id` (HF's
/// `DataCollatorWithPadding`): a Burn `Batcher` for every fine-tuning task's items and for
/// causal-LM blocks, each into its task's batch.
#[derive(Debug, Clone, Copy)]
pub struct DataCollatorWithPadding {
    pub pad_id: u32,
}

/// [`DataCollatorWithPadding`] for sequence classification.
pub type ClassificationBatcher = DataCollatorWithPadding;
/// [`DataCollatorWithPadding`] for token classification (labels padded with -100).
pub type TokenClassificationBatcher = DataCollatorWithPadding;
/// [`DataCollatorWithPadding`] for question answering.
pub type QuestionAnsweringBatcher = DataCollatorWithPadding;
/// [`DataCollatorWithPadding`] for multiple choice (every choice padded to the longest).
pub type MultipleChoiceBatcher = DataCollatorWithPadding;
/// [`DataCollatorWithPadding`] for causal LM (each block is its own labels).
pub type CausalLmBatcher = DataCollatorWithPadding;

use bert::{BertInput, HostBounds};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// An item's length in tokens: what `group_by_length` sorts by (HF's `LengthGroupedSampler`
/// reads the length of `input_ids`; a multiple-choice item counts its longest choice).
pub trait Length {
    fn length(&self) -> usize;
}

/// Items of one tokenized text.
macro_rules! text_length {
    ($($item:ty),*) => {$(
        impl Length for $item {
            fn length(&self) -> usize {
                self.text.len()
            }
        }
    )*};
}

text_length!(
    ClassificationItem,
    TokenClassificationItem,
    QuestionAnsweringItem
);

/// The longest choice sets the padded length (HF would take `len(input_ids)`, the number of
/// choices, which says nothing of the padding).
impl Length for MultipleChoiceItem {
    fn length(&self) -> usize {
        self.choices
            .iter()
            .map(TokenizedText::len)
            .max()
            .unwrap_or(0)
    }
}

/// A causal-LM block of ids.
impl Length for Vec<u32> {
    fn length(&self) -> usize {
        self.len()
    }
}

/// `[CLS] A [SEP] B [SEP]` without its three special tokens.
impl Length for crate::pretraining::PretrainingPair {
    fn length(&self) -> usize {
        self.tokens_a.len() + self.tokens_b.len()
    }
}

/// One tokenized sequence: `[CLS] A [SEP] (B [SEP])`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedText {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

impl TokenizedText {
    /// A single sequence of ids (token types 0).
    pub fn single(input_ids: Vec<u32>) -> Self {
        let n = input_ids.len();
        Self {
            input_ids,
            token_type_ids: vec![0; n],
        }
    }

    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
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

/// `[rows, cols]` integer tensor from equal-length rows.
pub(crate) fn int2(rows: Vec<Vec<i64>>, device: &Device) -> Tensor<2, Int> {
    let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
    Tensor::from_data(TensorData::new(rows.concat(), shape), device)
}

/// `[n]` integer tensor.
pub(crate) fn int1(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Rows of labels padded with -100 to `len`.
pub(crate) fn pad_labels<'a>(
    rows: impl IntoIterator<Item = &'a [i64]>,
    len: usize,
) -> Vec<Vec<i64>> {
    rows.into_iter()
        .map(|r| {
            r.iter()
                .copied()
                .chain(std::iter::repeat(bert::loss::IGNORE_INDEX))
                .take(len)
                .collect()
        })
        .collect()
}

/// `texts` padded to the longest with `pad_id`, as the model's input (ids, attention mask,
/// token types, and their host ranges).
pub fn pad_texts(texts: &[&TokenizedText], pad_id: u32, device: &Device) -> BertInput {
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
) -> BertInput {
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
    let padded = texts.iter().any(|t| t.input_ids.len() < len);
    let range = |ids: &mut dyn Iterator<Item = u32>, pad: u32| {
        let pad = padded.then_some(pad);
        let (lo, hi) = ids
            .chain(pad)
            .fold((u32::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
        (lo as i64, hi as i64)
    };
    let host_bounds = HostBounds {
        input_ids: Some(range(
            &mut texts.iter().flat_map(|t| t.input_ids.iter().copied()),
            pad_id,
        )),
        token_type_ids: Some(range(
            &mut texts.iter().flat_map(|t| t.token_type_ids.iter().copied()),
            0,
        )),
        ..Default::default()
    };
    let rows =
        |f: &dyn Fn(&TokenizedText) -> Vec<i64>| int2(texts.iter().map(|t| f(t)).collect(), device);
    let mut input = BertInput::new(rows(&|t| pad(&t.input_ids, pad_id as i64)))
        .with_attention_mask(rows(&|t| pad(&vec![1; t.input_ids.len()], 0)))
        .with_token_type_ids(rows(&|t| pad(&t.token_type_ids, 0)));
    input.host_bounds = host_bounds;
    input
}
