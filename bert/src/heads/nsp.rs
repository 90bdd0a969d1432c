//! `BertForNextSentencePrediction`: is sentence B the continuation of A? (label 0 = yes).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::Result;
use crate::heads::prediction::BertOnlyNSPHead;
use crate::loss::checked_cross_entropy;
use crate::model::{BertInput, BertModel};
use crate::output::NextSentencePredictorOutput;

#[derive(Module, Debug)]
pub struct BertForNextSentencePrediction {
    pub bert: BertModel,
    pub cls: BertOnlyNSPHead,
}

impl BertForNextSentencePrediction {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, true, device),
            cls: BertOnlyNSPHead::new(config, device),
        }
    }

    /// `labels`: `[b]`, 0 = B follows A, 1 = B is random.
    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<Tensor<1, Int>>,
    ) -> Result<NextSentencePredictorOutput> {
        let known = input.host_bounds;
        let pooled = self.bert.forward(input)?.pooled();
        let logits = self.cls.seq_relationship.forward(pooled);
        let loss = labels
            .map(|labels| checked_cross_entropy("labels", logits.clone(), labels, known.labels))
            .transpose()?;
        Ok(NextSentencePredictorOutput { loss, logits })
    }
}
