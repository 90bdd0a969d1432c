//! `BertForSequenceClassification` (HF `run_glue.py`, `TextClassificationPipeline`):
//! single-label, regression and multi-label classification of a text or a pair.

use bert::{BertForSequenceClassification, BertPretrained, ProblemType};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{ClassificationBatch, ClassificationItem};
use bert_datasets::collate::{TokenizedText, pad_texts};
use bert_datasets::metrics::{argmax, classification_metrics};
use bert_datasets::tasks::classification::Label;
use burn::module::Module;
use burn::tensor::Device;

use super::{WeightedMean, label_name, padded_eval_batches, rows};
use crate::{Metrics, TrainError, TrainTask};

/// Fine-tuning with evaluation on held-out items.
pub struct SequenceClassificationTask {
    pub problem_type: ProblemType,
    pub eval: Vec<ClassificationBatch>,
    pub eval_labels: Vec<Label>,
    pub tokenizer: BertTokenizer,
}

impl SequenceClassificationTask {
    /// Evaluates on `eval_items`, collated in batches of `batch_size` on `device`.
    pub fn new(
        problem_type: ProblemType,
        eval_items: &[ClassificationItem],
        batch_size: usize,
        tokenizer: BertTokenizer,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            problem_type,
            eval: padded_eval_batches(eval_items, batch_size, &tokenizer, device)?,
            eval_labels: eval_items.iter().map(|i| i.label.clone()).collect(),
            tokenizer,
        })
    }
}

impl TrainTask<BertForSequenceClassification, ClassificationBatch> for SequenceClassificationTask {
    /// `eval_loss` and the problem type's GLUE metrics (`eval_accuracy`, `eval_f1`, …).
    fn evaluate(
        &self,
        model: &BertForSequenceClassification,
    ) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let mut loss = WeightedMean::default();
        let mut logits = Vec::new();
        for b in &self.eval {
            let out = model.forward(b.input.clone(), Some(b.labels.clone()))?;
            let n = out.logits.dims()[0];
            loss.add(out.loss.expect("labels"), n);
            logits.extend(rows(out.logits)?);
        }
        let mut m: Metrics = classification_metrics(self.problem_type, &logits, &self.eval_labels)
            .into_iter()
            .map(|(k, v)| (format!("eval_{k}"), v))
            .collect();
        m.insert("eval_loss".into(), loss.mean());
        Ok(Some(m))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}

/// One text's prediction: the best label and every label's score (softmax for single-label,
/// sigmoid for multi-label, the value itself for regression), in the config's label order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextClassification {
    pub text: String,
    pub label: String,
    /// The regression output, or the best label's score.
    pub value: f32,
    pub scores: Vec<(String, f32)>,
}

/// The text, then each label's score as a percentage, best first.
impl std::fmt::Display for TextClassification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.text)?;
        let mut scores = self.scores.clone();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, s) in scores {
            write!(f, "\n  {name}: {:.0}%", s * 100.0)?;
        }
        Ok(())
    }
}

/// HF's `TextClassificationPipeline`: classifies each text (a pair as `A ||| B`).
pub fn classify(
    model: &BertForSequenceClassification,
    tokenizer: &BertTokenizer,
    texts: &[String],
    device: &Device,
) -> Result<Vec<TextClassification>, TrainError> {
    let config = model.config();
    let names: Vec<String> = (0..config.num_labels())
        .map(|i| label_name(config, i))
        .collect();
    let problem = config.problem_type.unwrap_or(if config.num_labels() == 1 {
        ProblemType::Regression
    } else {
        ProblemType::SingleLabelClassification
    });
    let pad = tokenizer.special_ids()?.pad;
    let model = model.valid();
    let mut out = Vec::new();
    for text in texts {
        let encoding = match text.split_once("|||") {
            Some((a, b)) => tokenizer.encode_pair(a.trim(), b.trim())?,
            None => tokenizer.encode(text)?,
        };
        let input = pad_texts(&[&TokenizedText::from(&encoding)], pad, device);
        let row = rows(model.forward(input, None)?.logits)?.remove(0);
        let scores: Vec<f32> = match problem {
            ProblemType::SingleLabelClassification => softmax(&row),
            ProblemType::MultiLabelClassification => {
                row.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
            }
            ProblemType::Regression => row.clone(),
        };
        let best = argmax(&scores);
        out.push(TextClassification {
            text: text.clone(),
            label: names[best].clone(),
            value: scores[best],
            scores: names.iter().cloned().zip(scores).collect(),
        });
    }
    Ok(out)
}

/// Softmax of one row of logits.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}
