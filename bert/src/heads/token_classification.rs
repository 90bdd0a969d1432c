//! `BertForTokenClassification`: a label per token; the loss counts only positions with
//! `attention_mask == 1` and labels != -100 (HF's active-loss mask).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::Result;
use crate::init;
use crate::loss::{IGNORE_INDEX, token_cross_entropy};
use crate::model::{BertInput, BertModel};
use crate::output::TokenClassifierOutput;

#[derive(Module, Debug)]
pub struct BertForTokenClassification {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertForTokenClassification {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, false, device),
            dropout: DropoutConfig::new(config.classifier_dropout_prob()).init(),
            classifier: init::linear(config.hidden_size, config.num_labels(), config, device),
        }
    }

    /// `labels`: `[b, s]` class ids, -100 where no loss (sub-word pieces, special tokens).
    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<Tensor<2, Int>>,
    ) -> Result<TokenClassifierOutput> {
        let attention_mask = input.attention_mask.clone();
        let known = input.host_bounds;
        let out = self.bert.forward(input)?;
        let logits = super::classify(&self.dropout, &self.classifier, out.last_hidden_state);
        // active_loss = attention_mask == 1; other positions get the ignore index.
        let active = |labels: Tensor<2, Int>| match attention_mask {
            Some(mask) => labels.mask_fill(mask.not_equal_elem(1), IGNORE_INDEX),
            None => labels,
        };
        let loss = labels
            .map(|labels| token_cross_entropy(&logits, labels, known.labels, active))
            .transpose()?;
        Ok(TokenClassifierOutput { loss, logits })
    }
}
