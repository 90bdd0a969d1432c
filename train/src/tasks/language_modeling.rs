//! `BertForPreTraining` (masked LM + next sentence prediction, HF `run_mlm.py` with NSP) and
//! `BertLMHeadModel` (next-token prediction, HF `run_clm.py`).

use std::path::Path;

use bert::{BertForPreTraining, BertLMHeadModel};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{CausalLmBatch, PretrainingBatch, PretrainingCollator};
use bert_datasets::pretraining::PretrainingPair;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{WeightedMean, save_with_tokenizer};
use crate::{Metrics, TrainError, TrainTask};

/// Pretraining with evaluation on held-out pairs (fixed masks, so numbers compare across
/// steps).
pub struct PretrainingTask {
    pub eval: Vec<PretrainingBatch>,
    pub tokenizer: BertTokenizer,
}

impl PretrainingTask {
    /// Evaluates on `eval_pairs` in batches of `batch_size` on `device`, masked once by
    /// `collator` with keys from the end of the `u64` range (apart from the training keys).
    pub fn new(
        eval_pairs: &[PretrainingPair],
        collator: &PretrainingCollator,
        batch_size: usize,
        tokenizer: BertTokenizer,
        device: &Device,
    ) -> Result<Self, TrainError> {
        if batch_size == 0 {
            return Err(TrainError::Argument("the batch size must be ≥ 1".into()));
        }
        let eval = eval_pairs
            .chunks(batch_size)
            .enumerate()
            .map(|(i, c)| collator.collate(c, u64::MAX - i as u64, device))
            .collect();
        Ok(Self { eval, tokenizer })
    }
}

impl TrainTask<BertForPreTraining, PretrainingBatch> for PretrainingTask {
    fn loss(
        &self,
        model: &BertForPreTraining,
        b: PretrainingBatch,
    ) -> Result<Tensor<1>, TrainError> {
        Ok(model
            .forward_masked(b.input, &b.masked, b.next_sentence_label)?
            .loss)
    }

    /// `eval_loss` (MLM + NSP), `eval_mlm_loss` and `eval_mlm_accuracy` per masked token,
    /// `eval_nsp_accuracy` per pair.
    fn evaluate(&self, model: &BertForPreTraining) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut mlm_loss_sum, mut masked, mut mlm_right) = (0.0, 0usize, 0i64);
        let mut nsp_right = 0i64;
        let mut loss = WeightedMean::default();
        for b in &self.eval {
            let out =
                model.forward_masked(b.input.clone(), &b.masked, b.next_sentence_label.clone())?;
            let n = b.next_sentence_label.dims()[0];
            loss.add(out.loss, n);
            // Token-level MLM loss and accuracy over the masked rows (padding rows are -100).
            let labels = b.masked.labels.clone();
            let rows = labels.dims()[0];
            let keep = labels.clone().greater_equal_elem(0);
            let logp = burn::tensor::activation::log_softmax(out.prediction_logits.clone(), 1);
            let picked = logp
                .gather(1, labels.clone().clamp_min(0).reshape([rows, 1]))
                .reshape([rows]);
            let nll: f32 = (picked.neg() * keep.clone().float()).sum().into_scalar();
            let right: i64 = out
                .prediction_logits
                .argmax(1)
                .reshape([rows])
                .equal(labels)
                .bool_and(keep)
                .int()
                .sum()
                .into_scalar();
            mlm_loss_sum += nll as f64;
            masked += b.masked.num_labelled;
            mlm_right += right;
            let nsp: i64 = out
                .seq_relationship_logits
                .argmax(1)
                .reshape([n])
                .equal(b.next_sentence_label.clone())
                .int()
                .sum()
                .into_scalar();
            nsp_right += nsp;
        }
        let masked = masked.max(1) as f64;
        let pairs: usize = self
            .eval
            .iter()
            .map(|b| b.next_sentence_label.dims()[0])
            .sum();
        Ok(Some(Metrics::from([
            ("eval_loss".to_string(), loss.mean()),
            ("eval_mlm_loss".to_string(), mlm_loss_sum / masked),
            ("eval_mlm_accuracy".to_string(), mlm_right as f64 / masked),
            (
                "eval_nsp_accuracy".to_string(),
                nsp_right as f64 / pairs as f64,
            ),
        ])))
    }

    fn save_pretrained(&self, model: &BertForPreTraining, dir: &Path) -> Result<(), TrainError> {
        save_with_tokenizer(model, &self.tokenizer, dir)
    }
}

/// Next-token training with held-out loss and perplexity per predicted token.
pub struct CausalLmTask {
    pub eval: Vec<CausalLmBatch>,
    pub tokenizer: BertTokenizer,
}

impl TrainTask<BertLMHeadModel, CausalLmBatch> for CausalLmTask {
    fn loss(&self, model: &BertLMHeadModel, b: CausalLmBatch) -> Result<Tensor<1>, TrainError> {
        Ok(model
            .forward(b.input, Some(b.labels))?
            .loss
            .expect("labels"))
    }

    /// `eval_loss` and `eval_perplexity` over the predicted tokens.
    fn evaluate(&self, model: &BertLMHeadModel) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut sum, mut tokens) = (0.0, 0i64);
        for b in &self.eval {
            // Predicted tokens: every label after the first of a row that is not padding.
            let [n, s] = b.labels.dims();
            let count: i64 = b
                .labels
                .clone()
                .slice([0..n, 1..s])
                .greater_equal_elem(0)
                .int()
                .sum()
                .into_scalar();
            let loss: f32 = model
                .forward(b.input.clone(), Some(b.labels.clone()))?
                .loss
                .expect("labels")
                .into_scalar();
            sum += loss as f64 * count as f64;
            tokens += count;
        }
        let loss = sum / tokens.max(1) as f64;
        Ok(Some(Metrics::from([
            ("eval_loss".to_string(), loss),
            ("eval_perplexity".to_string(), loss.exp()),
        ])))
    }

    fn save_pretrained(&self, model: &BertLMHeadModel, dir: &Path) -> Result<(), TrainError> {
        save_with_tokenizer(model, &self.tokenizer, dir)
    }
}
