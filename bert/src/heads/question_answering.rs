//! `BertForQuestionAnswering`: start/end logits per token. Positions outside the sequence are
//! clamped to `seq_len` and ignored; loss = (start loss + end loss) / 2.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::init;
use crate::loss::{check_shape, cross_entropy};
use crate::model::{BertInput, BertModel};
use crate::output::QuestionAnsweringModelOutput;

#[derive(Module, Debug)]
pub struct BertForQuestionAnswering {
    pub bert: BertModel,
    pub qa_outputs: Linear,
}

impl BertForQuestionAnswering {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, false, device),
            qa_outputs: init::linear(config.hidden_size, config.num_labels(), config, device),
        }
    }

    /// `start_positions`, `end_positions`: `[b]` token indices of the answer span.
    pub fn forward(
        &self,
        input: BertInput,
        start_positions: Option<Tensor<1, Int>>,
        end_positions: Option<Tensor<1, Int>>,
    ) -> Result<QuestionAnsweringModelOutput> {
        let [b, s] = input.dims();
        let out = self.bert.forward(input)?;
        let logits = self.qa_outputs.forward(out.last_hidden_state);
        let n = logits.dims()[2];
        if n != 2 {
            return Err(BertError::InvalidConfig(format!(
                "BertForQuestionAnswering needs num_labels = 2 (start, end), config has {n}"
            )));
        }
        let start_logits = logits.clone().slice([0..b, 0..s, 0..1]).reshape([b, s]);
        let end_logits = logits.slice([0..b, 0..s, 1..2]).reshape([b, s]);
        let loss = match (start_positions, end_positions) {
            (Some(start), Some(end)) => {
                check_shape("start_positions", &start.dims(), &[b])?;
                check_shape("end_positions", &end.dims(), &[b])?;
                // Positions outside the window are clamped to `s` and ignored (HF).
                let ignored = s as i64;
                let start = start.clamp(0, ignored);
                let end = end.clamp(0, ignored);
                let start_loss = cross_entropy(start_logits.clone(), start, ignored);
                let end_loss = cross_entropy(end_logits.clone(), end, ignored);
                Some((start_loss + end_loss) / 2.0)
            }
            _ => None,
        };
        Ok(QuestionAnsweringModelOutput {
            loss,
            start_logits,
            end_logits,
        })
    }
}
