//! The task heads, one HF class per file, with HF's class and field names.

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

use burn::tensor::Device;

use crate::config::BertConfig;
use crate::hub::BertPretrained;
use crate::model::BertModel;

macro_rules! pretrained {
    ($($class:ident),*) => {$(
        impl BertPretrained for $class {
            const CLASS: &'static str = stringify!($class);
            fn init(config: &BertConfig, device: &Device) -> Self {
                Self::new(config, device)
            }
            fn config(&self) -> &BertConfig {
                &self.bert.config
            }
        }
    )*};
}

pretrained!(
    BertForPreTraining,
    BertForMaskedLM,
    BertLMHeadModel,
    BertForNextSentencePrediction,
    BertForSequenceClassification,
    BertForMultipleChoice,
    BertForTokenClassification,
    BertForQuestionAnswering
);

impl BertPretrained for BertModel {
    const CLASS: &'static str = "BertModel";
    /// With a pooler, as HF's `BertModel(config)`.
    fn init(config: &BertConfig, device: &Device) -> Self {
        Self::new(config, true, device)
    }
    fn config(&self) -> &BertConfig {
        &self.config
    }
}
