//! `BertForMultipleChoice`: each (context, choice) pair scored by pooled output → linear(1).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::init;
use crate::loss::checked_cross_entropy;
use crate::model::{BertInput, BertModel};
use crate::output::MultipleChoiceModelOutput;

#[derive(Module, Debug)]
pub struct BertForMultipleChoice {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertForMultipleChoice {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, true, device),
            dropout: DropoutConfig::new(config.classifier_dropout_prob()).init(),
            classifier: init::linear(config.hidden_size, 1, config, device),
        }
    }

    /// Inputs are `[batch, num_choices, seq]`; `labels`: `[batch]`, the right choice.
    pub fn forward(
        &self,
        input_ids: Tensor<3, Int>,
        attention_mask: Option<Tensor<3, Int>>,
        token_type_ids: Option<Tensor<3, Int>>,
        labels: Option<Tensor<1, Int>>,
    ) -> Result<MultipleChoiceModelOutput> {
        let [b, c, s] = input_ids.dims();
        let flat = |t: Tensor<3, Int>, name: &str| -> Result<Tensor<2, Int>> {
            if t.dims() != [b, c, s] {
                return Err(BertError::Input(format!(
                    "{name} has shape {:?}, expected {:?} (from input_ids)",
                    t.dims(),
                    [b, c, s]
                )));
            }
            Ok(t.reshape([b * c, s]))
        };
        let mut input = BertInput::new(input_ids.reshape([b * c, s]));
        input.attention_mask = attention_mask
            .map(|m| flat(m, "attention_mask"))
            .transpose()?;
        input.token_type_ids = token_type_ids
            .map(|t| flat(t, "token_type_ids"))
            .transpose()?;
        let pooled = self.bert.forward(input)?.pooled();
        let logits = super::classify(&self.dropout, &self.classifier, pooled).reshape([b, c]);
        let loss = labels
            .map(|labels| checked_cross_entropy("labels", logits.clone(), labels, None))
            .transpose()?;
        Ok(MultipleChoiceModelOutput { loss, logits })
    }
}
