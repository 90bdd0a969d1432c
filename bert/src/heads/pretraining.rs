//! `BertForPreTraining`: masked LM + next sentence prediction; loss = MLM loss + NSP loss.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::Result;
use crate::heads::masked_positions::MaskedPositions;
use crate::heads::prediction::BertPreTrainingHeads;
use crate::loss::{checked_cross_entropy, token_cross_entropy};
use crate::model::{BertInput, BertModel, HostBounds};
use crate::output::{BertForPreTrainingMaskedOutput, BertForPreTrainingOutput};

#[derive(Module, Debug)]
pub struct BertForPreTraining {
    pub bert: BertModel,
    pub cls: BertPreTrainingHeads,
}

fn nsp_loss(logits: Tensor<2>, labels: Tensor<1, Int>, known: HostBounds) -> Result<Tensor<1>> {
    checked_cross_entropy(
        "next_sentence_label",
        logits,
        labels,
        known.next_sentence_label,
    )
}

impl BertForPreTraining {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, true, device),
            cls: BertPreTrainingHeads::new(config, device),
        }
    }

    /// `labels`: `[b, s]` token ids, -100 where no MLM loss; `next_sentence_label`: `[b]`,
    /// 0 = B follows A, 1 = B is random. The loss is returned when both are given (HF).
    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<Tensor<2, Int>>,
        next_sentence_label: Option<Tensor<1, Int>>,
    ) -> Result<BertForPreTrainingOutput> {
        let known = input.host_bounds;
        let out = self.bert.forward(input)?;
        let seq_relationship_logits = self.cls.seq_relationship.forward(out.pooled());
        let prediction_logits =
            (self.cls.predictions).forward_tied(&self.bert, out.last_hidden_state);
        let loss = match (labels, next_sentence_label) {
            (Some(labels), Some(nsp)) => {
                let mlm = token_cross_entropy(&prediction_logits, labels, known.labels, |l| l)?;
                Some(mlm + nsp_loss(seq_relationship_logits.clone(), nsp, known)?)
            }
            _ => None,
        };
        Ok(BertForPreTrainingOutput {
            loss,
            prediction_logits,
            seq_relationship_logits,
        })
    }

    /// Training on the masked positions only (the original BERT's `masked_lm_positions`):
    /// the MLM head runs on the labelled rows, not on every position; the loss equals
    /// [`Self::forward`]'s with the same labels.
    pub fn forward_masked(
        &self,
        input: BertInput,
        masked: &MaskedPositions,
        next_sentence_label: Tensor<1, Int>,
    ) -> Result<BertForPreTrainingMaskedOutput> {
        let known = input.host_bounds;
        let out = self.bert.forward(input)?;
        let seq_relationship_logits = self.cls.seq_relationship.forward(out.pooled());
        let prediction_logits = self.cls.predictions.forward_rows(
            masked.gather(out.last_hidden_state),
            self.bert.embeddings.word_embeddings.weight.val(),
        );
        let nsp = nsp_loss(seq_relationship_logits.clone(), next_sentence_label, known)?;
        let mlm = masked.loss(prediction_logits.clone())?;
        Ok(BertForPreTrainingMaskedOutput {
            loss: mlm + nsp,
            prediction_logits,
            seq_relationship_logits,
        })
    }
}
