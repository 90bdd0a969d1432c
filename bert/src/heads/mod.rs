//! The task heads, one HF class per file, with HF's class and field names.

use burn::nn::{Dropout, Linear};
use burn::tensor::Tensor;

pub mod lm_head;
pub mod masked_lm;
pub mod masked_positions;
pub mod multiple_choice;
pub mod nsp;
pub mod prediction;
pub mod pretraining;
pub mod question_answering;
pub mod sequence_classification;
pub mod token_classification;

pub use lm_head::{BertLMHeadModel, SamplingConfig, sample_top_k};
pub use masked_lm::BertForMaskedLM;
pub use masked_positions::MaskedPositions;
pub use multiple_choice::BertForMultipleChoice;
pub use nsp::BertForNextSentencePrediction;
pub use pretraining::BertForPreTraining;
pub use question_answering::BertForQuestionAnswering;
pub use sequence_classification::{BertForSequenceClassification, SequenceClassificationLabels};
pub use token_classification::BertForTokenClassification;

/// `self.classifier(self.dropout(x))`, as HF's classification heads apply them.
fn classify<const D: usize>(dropout: &Dropout, classifier: &Linear, x: Tensor<D>) -> Tensor<D> {
    classifier.forward(crate::dropout::forward(dropout, x))
}

// Each head's `BertPretrained` implementation (HF interop) comes from the one list of classes in
// `crate::auto`.
