//! `BertForMultipleChoice` (HF `run_swag.py`): accuracy over held-out items.

use bert::{BertForMultipleChoice, MultipleChoiceModelOutput};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{MultipleChoiceBatch, MultipleChoiceItem};
use burn::module::Module;
use burn::tensor::Device;

use super::{WeightedMean, padded_eval_batches};
use crate::{Metrics, TrainError, TrainTask, eval_metrics};

pub struct MultipleChoiceTask {
    pub eval: Vec<MultipleChoiceBatch>,
    pub tokenizer: BertTokenizer,
}

impl MultipleChoiceTask {
    /// Evaluates on `eval_items`, collated in batches of `batch_size` on `device`.
    pub fn new(
        eval_items: &[MultipleChoiceItem],
        batch_size: usize,
        tokenizer: BertTokenizer,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            eval: padded_eval_batches(eval_items, batch_size, &tokenizer, device)?,
            tokenizer,
        })
    }
}

fn forward(
    model: &BertForMultipleChoice,
    b: MultipleChoiceBatch,
) -> Result<MultipleChoiceModelOutput, bert::BertError> {
    model.forward(
        b.input_ids,
        Some(b.attention_mask),
        Some(b.token_type_ids),
        Some(b.labels),
    )
}

impl TrainTask<BertForMultipleChoice, MultipleChoiceBatch> for MultipleChoiceTask {
    /// `eval_loss` and `eval_accuracy`.
    fn evaluate(&self, model: &BertForMultipleChoice) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let mut loss = WeightedMean::default();
        let (mut correct, mut n) = (0i64, 0usize);
        for b in &self.eval {
            let labels = b.labels.clone();
            let size = labels.dims()[0];
            let out = forward(&model, b.clone())?;
            loss.add(out.loss.expect("labels"), size);
            let right: i64 = out
                .logits
                .argmax(1)
                .reshape([size])
                .equal(labels)
                .int()
                .sum()
                .into_scalar();
            correct += right;
            n += size;
        }
        Ok(eval_metrics([
            ("eval_loss", loss.mean()),
            ("eval_accuracy", correct as f64 / n as f64),
        ]))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}
