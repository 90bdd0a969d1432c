//! `BertForSequenceClassification`: pooled output → dropout → linear. Regression,
//! single-label or multi-label loss, chosen exactly as HF chooses `problem_type`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Int, Tensor};

use crate::config::{BertConfig, ProblemType};
use crate::error::{BertError, Result};
use crate::init;
use crate::loss::{bce_with_logits, check_shape, checked_cross_entropy, mse};
use crate::model::{BertInput, BertModel};
use crate::output::SequenceClassifierOutput;

/// Labels as HF accepts them: integer classes (`torch.long`) or float targets.
#[derive(Debug, Clone)]
pub enum SequenceClassificationLabels {
    /// `[b]` class ids (single-label), or targets for regression with `num_labels == 1`.
    Classes(Tensor<1, Int>),
    /// `[b, num_labels]` regression targets or multi-hot labels.
    Values(Tensor<2>),
}

#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertForSequenceClassification {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, true, device),
            dropout: DropoutConfig::new(config.classifier_dropout_prob()).init(),
            classifier: init::linear(config.hidden_size, config.num_labels(), config, device),
        }
    }

    /// HF's choice: `problem_type` if set; else regression for one label, single-label for
    /// integer labels, multi-label for float labels.
    pub fn problem_type(&self, labels: &SequenceClassificationLabels) -> ProblemType {
        let config = &self.bert.config;
        match (config.problem_type, labels) {
            (Some(p), _) => p,
            _ if config.num_labels() == 1 => ProblemType::Regression,
            (None, SequenceClassificationLabels::Classes(_)) => {
                ProblemType::SingleLabelClassification
            }
            (None, SequenceClassificationLabels::Values(_)) => {
                ProblemType::MultiLabelClassification
            }
        }
    }

    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<SequenceClassificationLabels>,
    ) -> Result<SequenceClassifierOutput> {
        let [batch, _] = input.dims();
        let known = input.host_bounds;
        let pooled = self.bert.forward(input)?.pooled();
        let logits = super::classify(&self.dropout, &self.classifier, pooled);
        let num_labels = logits.dims()[1];
        let loss = match labels {
            None => None,
            Some(labels) => {
                let problem = self.problem_type(&labels);
                Some(match (problem, labels) {
                    (ProblemType::Regression, SequenceClassificationLabels::Classes(l)) => {
                        check_shape("labels", &l.dims(), &[batch])?;
                        mse(
                            logits.clone(),
                            l.float().reshape([batch, 1]).expand([batch, num_labels]),
                        )
                    }
                    (ProblemType::Regression, SequenceClassificationLabels::Values(v)) => {
                        check_shape("labels", &v.dims(), &[batch, num_labels])?;
                        mse(logits.clone(), v)
                    }
                    (
                        ProblemType::SingleLabelClassification,
                        SequenceClassificationLabels::Classes(l),
                    ) => checked_cross_entropy("labels", logits.clone(), l, known.labels)?,
                    (
                        ProblemType::MultiLabelClassification,
                        SequenceClassificationLabels::Values(v),
                    ) => {
                        check_shape("labels", &v.dims(), &[batch, num_labels])?;
                        bce_with_logits(logits.clone(), v)
                    }
                    (p, _) => {
                        return Err(BertError::Input(format!(
                            "problem_type {p:?} needs {} labels",
                            if p == ProblemType::SingleLabelClassification {
                                "integer class"
                            } else {
                                "float"
                            }
                        )));
                    }
                })
            }
        };
        Ok(SequenceClassifierOutput { loss, logits })
    }
}
