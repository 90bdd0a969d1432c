//! Model outputs, named as HF's `ModelOutput` classes and fields. `loss` is a one-element
//! tensor, present when labels were given.

use burn::tensor::Tensor;

use crate::attention::KvCache;

/// The heads' output of a loss and `D`-dimensional logits; HF's classes of that form are its
/// aliases below ([`SequenceClassifierOutput`], [`TokenClassifierOutput`], …).
#[derive(Debug, Clone)]
pub struct ModelOutput<const D: usize> {
    pub loss: Option<Tensor<1>>,
    pub logits: Tensor<D>,
}

/// `BertModel`'s output.
#[derive(Debug, Clone)]
pub struct BaseModelOutputWithPoolingAndCrossAttentions {
    pub last_hidden_state: Tensor<3>,
    /// `tanh(dense(h[:, 0]))`; `None` for models built without a pooler.
    pub pooler_output: Option<Tensor<2>>,
    /// HF `hidden_states`: the embeddings' output, then every layer's.
    pub hidden_states: Vec<Tensor<3>>,
    /// Decoder with `use_cache`: the keys/values for the next step.
    pub past_key_values: Option<KvCache>,
}

impl BaseModelOutputWithPoolingAndCrossAttentions {
    /// `pooler_output`, for the heads that build their `BertModel` with the pooler.
    pub(crate) fn pooled(&self) -> Tensor<2> {
        (self.pooler_output.clone()).expect("the heads that read the pooler build it")
    }
}

/// `BertForPreTraining`'s output (loss = MLM loss + NSP loss).
#[derive(Debug, Clone)]
pub struct BertForPreTrainingOutput {
    pub loss: Option<Tensor<1>>,
    pub prediction_logits: Tensor<3>,
    pub seq_relationship_logits: Tensor<2>,
}

/// `BertForPreTraining::forward_masked`'s output: the MLM logits of the masked rows only.
#[derive(Debug, Clone)]
pub struct BertForPreTrainingMaskedOutput {
    /// MLM loss over the masked rows + NSP loss.
    pub loss: Tensor<1>,
    /// `[n, vocab]`, row `i` for `MaskedPositions::positions[i]`.
    pub prediction_logits: Tensor<2>,
    pub seq_relationship_logits: Tensor<2>,
}

/// `BertForMaskedLM::forward_masked`'s output: the logits of the masked rows only.
#[derive(Debug, Clone)]
pub struct MaskedLMRowsOutput {
    pub loss: Tensor<1>,
    /// `[n, vocab]`, row `i` for `MaskedPositions::positions[i]`.
    pub logits: Tensor<2>,
}

/// `BertForMaskedLM`'s output; logits `[b, seq, vocab]`.
pub type MaskedLMOutput = ModelOutput<3>;

/// `BertLMHeadModel`'s output (loss is the shifted next-token loss).
#[derive(Debug, Clone)]
pub struct CausalLMOutputWithCrossAttentions {
    pub loss: Option<Tensor<1>>,
    pub logits: Tensor<3>,
    pub past_key_values: Option<KvCache>,
}

/// `BertForNextSentencePrediction`'s output; logits `[b, 2]`, index 0 = "B follows A".
pub type NextSentencePredictorOutput = ModelOutput<2>;

/// `BertForSequenceClassification`'s output; logits `[b, num_labels]`.
pub type SequenceClassifierOutput = ModelOutput<2>;

/// `BertForMultipleChoice`'s output; logits `[b, num_choices]`.
pub type MultipleChoiceModelOutput = ModelOutput<2>;

/// `BertForTokenClassification`'s output; logits `[b, seq, num_labels]`.
pub type TokenClassifierOutput = ModelOutput<3>;

/// `BertForQuestionAnswering`'s output; logits `[b, seq]`.
#[derive(Debug, Clone)]
pub struct QuestionAnsweringModelOutput {
    pub loss: Option<Tensor<1>>,
    pub start_logits: Tensor<2>,
    pub end_logits: Tensor<2>,
}
