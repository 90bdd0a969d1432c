//! The loss each head computes from its collated batch: HF's `outputs.loss`, what
//! `Trainer.compute_loss` returns unless a subclass says otherwise, and so the default of
//! [`TrainTask::loss`](crate::TrainTask::loss).
//!
//! | head                             | batch                      | loss                     |
//! |----------------------------------|----------------------------|--------------------------|
//! | `BertForSequenceClassification`  | `ClassificationBatch`      | the problem type's       |
//! | `BertForTokenClassification`     | `TokenClassificationBatch` | token cross-entropy      |
//! | `BertForQuestionAnswering`       | `QuestionAnsweringBatch`   | mean of start and end    |
//! | `BertForMultipleChoice`          | `MultipleChoiceBatch`      | cross-entropy of choices |
//! | `BertForPreTraining`             | `PretrainingBatch`         | MLM (masked rows) + NSP  |
//! | `BertForMaskedLM`                | `MaskedLmBatch`            | MLM (masked rows)        |
//! | `BertLMHeadModel`                | `CausalLmBatch`            | next-token cross-entropy |

use bert::{
    BertForMaskedLM, BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
    BertForSequenceClassification, BertForTokenClassification, BertLMHeadModel,
};
use bert_datasets::collate::{
    CausalLmBatch, ClassificationBatch, MaskedLmBatch, MultipleChoiceBatch, PretrainingBatch,
    QuestionAnsweringBatch, TokenClassificationBatch,
};
use burn::tensor::Tensor;

use crate::TrainError;

/// A head's own training loss on a batch that carries its labels.
///
/// [`TrainTask`](crate::TrainTask) asks it of every (head, batch) pair it trains, also where a
/// task overrides `loss`. For a batch type of your own, implement it for the head (Rust's
/// orphan rule allows `impl HeadLoss<MyBatch> for BertForX` in your crate); to train a head on
/// a batch type this crate has no row for (e.g. `BertForNextSentencePrediction` on
/// `PretrainingBatch`), wrap the batch in a type of your own.
pub trait HeadLoss<B> {
    /// The mean loss of `batch` (a graph on an autodiff device when training).
    fn head_loss(&self, batch: B) -> Result<Tensor<1>, TrainError>;
}

/// Heads whose `forward(input, Some(labels))` returns the loss.
macro_rules! loss_from_labels {
    ($($head:ty: $batch:ty;)*) => {$(
        impl HeadLoss<$batch> for $head {
            fn head_loss(&self, b: $batch) -> Result<Tensor<1>, TrainError> {
                Ok(self.forward(b.input, Some(b.labels))?.loss.expect("labels given"))
            }
        }
    )*};
}

loss_from_labels! {
    BertForSequenceClassification: ClassificationBatch;
    BertForTokenClassification: TokenClassificationBatch;
    BertLMHeadModel: CausalLmBatch;
}

impl HeadLoss<QuestionAnsweringBatch> for BertForQuestionAnswering {
    fn head_loss(&self, b: QuestionAnsweringBatch) -> Result<Tensor<1>, TrainError> {
        let (start, end) = (b.start_positions, b.end_positions);
        let out = self.forward(b.input, Some(start), Some(end))?;
        Ok(out.loss.expect("positions given"))
    }
}

impl HeadLoss<MultipleChoiceBatch> for BertForMultipleChoice {
    fn head_loss(&self, b: MultipleChoiceBatch) -> Result<Tensor<1>, TrainError> {
        let (mask, types) = (Some(b.attention_mask), Some(b.token_type_ids));
        let out = self.forward(b.input_ids, mask, types, Some(b.labels))?;
        Ok(out.loss.expect("labels given"))
    }
}

/// The MLM loss on the masked rows only (`forward_masked`), plus NSP.
impl HeadLoss<PretrainingBatch> for BertForPreTraining {
    fn head_loss(&self, b: PretrainingBatch) -> Result<Tensor<1>, TrainError> {
        let out = self.forward_masked(b.input, &b.masked, b.next_sentence_label)?;
        Ok(out.loss)
    }
}

/// The MLM loss on the masked rows only (`forward_masked`).
impl HeadLoss<MaskedLmBatch> for BertForMaskedLM {
    fn head_loss(&self, b: MaskedLmBatch) -> Result<Tensor<1>, TrainError> {
        Ok(self.forward_masked(b.input, &b.masked)?.loss)
    }
}
