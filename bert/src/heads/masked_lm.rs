//! `BertForMaskedLM`: the MLM head alone (no pooler); loss over labels != -100.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::Result;
use crate::heads::masked_positions::MaskedPositions;
use crate::heads::prediction::BertOnlyMLMHead;
use crate::model::{BertInput, BertModel};
use crate::output::{MaskedLMOutput, MaskedLMRowsOutput};

#[derive(Module, Debug)]
pub struct BertForMaskedLM {
    pub bert: BertModel,
    pub cls: BertOnlyMLMHead,
}

impl BertForMaskedLM {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let (bert, cls) = BertOnlyMLMHead::with_encoder(config, device);
        Self { bert, cls }
    }

    /// `labels`: `[b, s]`, the original token id at masked positions and -100 elsewhere.
    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<Tensor<2, Int>>,
    ) -> Result<MaskedLMOutput> {
        let (_, logits, loss) = self.cls.forward_with(&self.bert, input, labels, |l| l)?;
        Ok(MaskedLMOutput { loss, logits })
    }

    /// Training on the masked positions only: the prediction head runs on the labelled rows
    /// (`masked`), not on every position; the loss equals [`Self::forward`]'s with the same
    /// labels.
    pub fn forward_masked(
        &self,
        input: BertInput,
        masked: &MaskedPositions,
    ) -> Result<MaskedLMRowsOutput> {
        let out = self.bert.forward(input)?;
        let logits = self.cls.predictions.forward_rows(
            masked.gather(out.last_hidden_state),
            self.bert.embeddings.word_embeddings.weight.val(),
        );
        let loss = masked.loss(logits.clone())?;
        Ok(MaskedLMRowsOutput { loss, logits })
    }
}
