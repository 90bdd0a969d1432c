//! The tasks the trainer runs, one per head family (HF's `run_glue.py`, `run_ner.py`,
//! `run_qa.py`, `run_swag.py`, `run_mlm.py`/`run_clm.py` as library code): each holds its
//! evaluation data, implements [`TrainTask`](crate::TrainTask) (HF-named evaluation metrics,
//! `save_pretrained` with the tokenizer; the loss is the head's own, [`HeadLoss`](crate::HeadLoss)),
//! and offers the head's inference as HF's pipelines do (classify texts, tag words, answer
//! questions).
//!
//! | head                             | task                                  |
//! |----------------------------------|---------------------------------------|
//! | `BertForSequenceClassification`  | [`SequenceClassificationTask`]        |
//! | `BertForTokenClassification`     | [`TokenClassificationTask`]           |
//! | `BertForQuestionAnswering`       | [`QuestionAnsweringTask`]             |
//! | `BertForMultipleChoice`          | [`MultipleChoiceTask`]                |
//! | `BertForPreTraining`             | [`PretrainingTask`]                   |
//! | `BertForMaskedLM`                | [`MaskedLmTask`]                      |
//! | `BertLMHeadModel`                | [`CausalLmTask`]                      |

mod language_modeling;
mod multiple_choice;
mod question_answering;
mod sequence_classification;
mod token_classification;

pub use language_modeling::{
    CausalLmTask, LmTask, MaskCandidate, MaskFill, MaskedLmTask, PretrainingTask, fill_mask,
    streamed_pretraining_batches,
};
pub use multiple_choice::MultipleChoiceTask;
pub use question_answering::{Answer, QuestionAnsweringTask, answer_questions};
pub use sequence_classification::{
    SequenceClassificationTask, TextClassification, classify, softmax,
};
pub use token_classification::{
    TagRows, TaggedText, TokenClassificationTask, all_o_baseline, scores, tag,
};

use bert_datasets::BertTokenizer;
use bert_datasets::collate::{
    ClassificationBatch, ClassificationItem, DataCollatorWithPadding, MultipleChoiceBatch,
    MultipleChoiceItem, QuestionAnsweringBatch, QuestionAnsweringItem, TokenClassificationBatch,
    TokenClassificationItem,
};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Tensor};

use crate::TrainError;

/// How a fine-tuning task's training items become batches: with the collator the task
/// evaluates with (HF's `Trainer(data_collator=…)`, padding with the task's tokenizer).
pub trait Collates<I, B> {
    type Collator: Batcher<I, B> + 'static;

    fn collator(&self) -> Result<Self::Collator, TrainError>;

    /// Whether the task has evaluation data (the trainer evaluates only then).
    fn has_eval(&self) -> bool;
}

/// The fine-tuning tasks' collators: each pads with its tokenizer's `[PAD]`; a task has
/// evaluation data when its evaluation batches (or questions) are not empty.
macro_rules! collates_with_pad {
    ($($task:ty: $item:ty => $batch:ty, $eval:ident;)*) => {$(
        impl Collates<$item, $batch> for $task {
            type Collator = DataCollatorWithPadding;

            fn collator(&self) -> Result<DataCollatorWithPadding, TrainError> {
                Ok(DataCollatorWithPadding {
                    pad_id: self.tokenizer.special_ids()?.pad,
                })
            }

            fn has_eval(&self) -> bool {
                !self.$eval.is_empty()
            }
        }
    )*};
}

collates_with_pad! {
    SequenceClassificationTask: ClassificationItem => ClassificationBatch, eval;
    TokenClassificationTask: TokenClassificationItem => TokenClassificationBatch, eval;
    MultipleChoiceTask: MultipleChoiceItem => MultipleChoiceBatch, eval;
    QuestionAnsweringTask: QuestionAnsweringItem => QuestionAnsweringBatch, examples;
}

/// `items` padded with `tokenizer`'s `[PAD]` ([`DataCollatorWithPadding`]) in batches of
/// `batch_size` on `device`, in order: a fine-tuning task's evaluation batches.
pub fn padded_eval_batches<I: Clone, B>(
    items: &[I],
    batch_size: usize,
    tokenizer: &BertTokenizer,
    device: &Device,
) -> Result<Vec<B>, TrainError>
where
    DataCollatorWithPadding: Batcher<I, B>,
{
    let collator = DataCollatorWithPadding {
        pad_id: tokenizer.special_ids()?.pad,
    };
    eval_batches(items, batch_size, &collator, device)
}

/// `items` collated in chunks of `batch_size` on `device`, in order (evaluation batches).
pub fn eval_batches<I: Clone, B>(
    items: &[I],
    batch_size: usize,
    batcher: &impl Batcher<I, B>,
    device: &Device,
) -> Result<Vec<B>, TrainError> {
    keyed_eval_batches(items, batch_size, |c, _| batcher.batch(c.to_vec(), device))
}

/// `items` in chunks of `batch_size`, each collated with a key from the end of the `u64` range
/// (apart from the training keys): evaluation batches masked once, so that numbers compare
/// across steps.
pub fn keyed_eval_batches<I, B>(
    items: &[I],
    batch_size: usize,
    collate: impl Fn(&[I], u64) -> B,
) -> Result<Vec<B>, TrainError> {
    if batch_size == 0 {
        return Err(TrainError::Argument("the batch size must be ≥ 1".into()));
    }
    let chunks = items.chunks(batch_size).enumerate();
    Ok(chunks
        .map(|(i, c)| collate(c, u64::MAX - i as u64))
        .collect())
}

/// The rows of a `[rows, width]` tensor on the host.
pub fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>, TrainError> {
    let width = t.dims()[1].max(1);
    let v: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Evaluation(format!("{e:?}")))?;
    Ok(v.chunks(width).map(<[f32]>::to_vec).collect())
}

/// A mean over batches weighted by their sizes (a loss averaged per example).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedMean {
    sum: f64,
    n: usize,
}

impl WeightedMean {
    /// Adds a batch's mean `loss` (read from the device) over `n` examples.
    pub fn add(&mut self, loss: Tensor<1>, n: usize) {
        self.sum += loss.into_scalar::<f32>() as f64 * n as f64;
        self.n += n;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
}

/// The name of class `i` in the model's config (`LABEL_i` when it has none, as HF).
pub fn label_name(config: &bert::BertConfig, i: usize) -> String {
    config
        .id2label
        .as_ref()
        .and_then(|m| m.get(&i).cloned())
        .unwrap_or_else(|| format!("LABEL_{i}"))
}
