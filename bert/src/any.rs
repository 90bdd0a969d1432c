//! `AnyBert`: any class of the family chosen by its HF name at run time, fed and read through
//! named tensors. The parity tool (`examples/forward.rs`) and the parity tests use it.

use std::path::Path;

use burn::tensor::Device;

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::heads::*;
use crate::hub::{BertPretrained, Checkpoint, LoadReport};
use crate::model::{BertInput, BertModel};
use crate::tensors_file::{HostTensor, NamedTensors};

/// One model of any class.
#[derive(Debug, Clone)]
pub enum AnyBert {
    BertModel(BertModel),
    BertForPreTraining(BertForPreTraining),
    BertForMaskedLM(BertForMaskedLM),
    BertLMHeadModel(BertLMHeadModel),
    BertForNextSentencePrediction(BertForNextSentencePrediction),
    BertForSequenceClassification(BertForSequenceClassification),
    BertForMultipleChoice(BertForMultipleChoice),
    BertForTokenClassification(BertForTokenClassification),
    BertForQuestionAnswering(BertForQuestionAnswering),
}

macro_rules! each_class {
    ($class:expr, $T:ident => $body:expr) => {
        match $class {
            "BertModel" => {
                type $T = BertModel;
                $body
            }
            "BertForPreTraining" => {
                type $T = BertForPreTraining;
                $body
            }
            "BertForMaskedLM" => {
                type $T = BertForMaskedLM;
                $body
            }
            "BertLMHeadModel" => {
                type $T = BertLMHeadModel;
                $body
            }
            "BertForNextSentencePrediction" => {
                type $T = BertForNextSentencePrediction;
                $body
            }
            "BertForSequenceClassification" => {
                type $T = BertForSequenceClassification;
                $body
            }
            "BertForMultipleChoice" => {
                type $T = BertForMultipleChoice;
                $body
            }
            "BertForTokenClassification" => {
                type $T = BertForTokenClassification;
                $body
            }
            "BertForQuestionAnswering" => {
                type $T = BertForQuestionAnswering;
                $body
            }
            other => Err(BertError::UnknownHead(
                other.to_string(),
                CLASS_NAMES.join(", "),
            )),
        }
    };
}

/// The inputs each class reads, besides `input_ids`.
fn accepted_inputs(class: &str) -> &'static [&'static str] {
    const BASE: [&str; 2] = ["attention_mask", "token_type_ids"];
    match class {
        "BertModel" => &[
            "attention_mask",
            "token_type_ids",
            "encoder_hidden_states",
            "encoder_attention_mask",
        ],
        "BertForPreTraining" => &[
            "attention_mask",
            "token_type_ids",
            "labels",
            "next_sentence_label",
        ],
        "BertLMHeadModel" => &[
            "attention_mask",
            "token_type_ids",
            "encoder_hidden_states",
            "encoder_attention_mask",
            "labels",
        ],
        "BertForQuestionAnswering" => &[
            "attention_mask",
            "token_type_ids",
            "start_positions",
            "end_positions",
        ],
        "BertForMaskedLM"
        | "BertForNextSentencePrediction"
        | "BertForSequenceClassification"
        | "BertForMultipleChoice"
        | "BertForTokenClassification" => &["attention_mask", "token_type_ids", "labels"],
        _ => &BASE,
    }
}

/// Errors on an input the class does not take.
fn check_input_names(class: &str, inputs: &NamedTensors) -> Result<()> {
    for name in inputs.keys() {
        if name != "input_ids" && !accepted_inputs(class).contains(&name.as_str()) {
            return Err(BertError::Input(format!(
                "unknown input `{name}` for {class}; it takes input_ids, {}",
                accepted_inputs(class).join(", ")
            )));
        }
    }
    Ok(())
}

impl AnyBert {
    /// The class named by `head`, or by `architectures[0]` of `config.json` when `None`
    /// (`BertModel` if it has none).
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        head: Option<&str>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir)?;
        let class = match head {
            Some(h) => h.to_string(),
            None => config
                .architectures
                .as_ref()
                .and_then(|a| a.first().cloned())
                .unwrap_or_else(|| "BertModel".into()),
        };
        // Name the unknown head before reading any weights.
        if !CLASS_NAMES.contains(&class.as_str()) {
            return Err(BertError::UnknownHead(class, CLASS_NAMES.join(", ")));
        }
        let checkpoint = Checkpoint::read(dir)?;
        each_class!(class.as_str(), T => {
            let (m, report) = T::from_checkpoint(config, checkpoint, device)?;
            Ok((Self::from(m), report))
        })
    }

    /// The HF class name.
    pub fn class(&self) -> &'static str {
        match self {
            Self::BertModel(_) => BertModel::CLASS,
            Self::BertForPreTraining(_) => BertForPreTraining::CLASS,
            Self::BertForMaskedLM(_) => BertForMaskedLM::CLASS,
            Self::BertLMHeadModel(_) => BertLMHeadModel::CLASS,
            Self::BertForNextSentencePrediction(_) => BertForNextSentencePrediction::CLASS,
            Self::BertForSequenceClassification(_) => BertForSequenceClassification::CLASS,
            Self::BertForMultipleChoice(_) => BertForMultipleChoice::CLASS,
            Self::BertForTokenClassification(_) => BertForTokenClassification::CLASS,
            Self::BertForQuestionAnswering(_) => BertForQuestionAnswering::CLASS,
        }
    }

    pub fn config(&self) -> &BertConfig {
        match self {
            Self::BertModel(m) => m.config(),
            Self::BertForPreTraining(m) => m.config(),
            Self::BertForMaskedLM(m) => m.config(),
            Self::BertLMHeadModel(m) => m.config(),
            Self::BertForNextSentencePrediction(m) => m.config(),
            Self::BertForSequenceClassification(m) => m.config(),
            Self::BertForMultipleChoice(m) => m.config(),
            Self::BertForTokenClassification(m) => m.config(),
            Self::BertForQuestionAnswering(m) => m.config(),
        }
    }

    /// Writes the model as an HF directory.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        match self {
            Self::BertModel(m) => m.save_pretrained(dir),
            Self::BertForPreTraining(m) => m.save_pretrained(dir),
            Self::BertForMaskedLM(m) => m.save_pretrained(dir),
            Self::BertLMHeadModel(m) => m.save_pretrained(dir),
            Self::BertForNextSentencePrediction(m) => m.save_pretrained(dir),
            Self::BertForSequenceClassification(m) => m.save_pretrained(dir),
            Self::BertForMultipleChoice(m) => m.save_pretrained(dir),
            Self::BertForTokenClassification(m) => m.save_pretrained(dir),
            Self::BertForQuestionAnswering(m) => m.save_pretrained(dir),
        }
    }

    fn input(&self, inputs: &NamedTensors, device: &Device) -> Result<BertInput> {
        let class = self.class();
        check_input_names(class, inputs)?;
        let get = |n: &str| inputs.get(n);
        let ids = get("input_ids")
            .ok_or_else(|| BertError::Input("inputs have no `input_ids`".into()))?;
        let mut input = BertInput::new(ids.int("input_ids", device)?);
        input.attention_mask = get("attention_mask")
            .map(|t| t.int("attention_mask", device))
            .transpose()?;
        input.token_type_ids = get("token_type_ids")
            .map(|t| t.int("token_type_ids", device))
            .transpose()?;
        input.encoder_hidden_states = get("encoder_hidden_states")
            .map(|t| t.float("encoder_hidden_states", device))
            .transpose()?;
        input.encoder_attention_mask = get("encoder_attention_mask")
            .map(|t| t.int("encoder_attention_mask", device))
            .transpose()?;
        Ok(input)
    }

    /// Runs the forward pass on named inputs (HF's argument names) and returns the outputs by
    /// HF field name; `loss` is 0-d.
    pub fn forward(&self, inputs: &NamedTensors, device: &Device) -> Result<NamedTensors> {
        let mut out = NamedTensors::new();
        let put_loss = |out: &mut NamedTensors, loss: Option<burn::tensor::Tensor<1>>| {
            if let Some(l) = loss {
                out.insert("loss".into(), HostTensor::scalar(l));
            }
        };
        let int1 = |n: &str| inputs.get(n).map(|t| t.int::<1>(n, device)).transpose();
        let int2 = |n: &str| inputs.get(n).map(|t| t.int::<2>(n, device)).transpose();
        if let Self::BertForMultipleChoice(m) = self {
            check_input_names(self.class(), inputs)?;
            let int3 = |n: &str| inputs.get(n).map(|t| t.int::<3>(n, device)).transpose();
            let ids = int3("input_ids")?
                .ok_or_else(|| BertError::Input("inputs have no `input_ids`".into()))?;
            let o = m.forward(
                ids,
                int3("attention_mask")?,
                int3("token_type_ids")?,
                int1("labels")?,
            )?;
            put_loss(&mut out, o.loss);
            out.insert("logits".into(), HostTensor::from_float(o.logits));
            return Ok(out);
        }
        let input = self.input(inputs, device)?;
        match self {
            Self::BertModel(m) => {
                let o = m.forward(input)?;
                out.insert(
                    "last_hidden_state".into(),
                    HostTensor::from_float(o.last_hidden_state),
                );
                if let Some(p) = o.pooler_output {
                    out.insert("pooler_output".into(), HostTensor::from_float(p));
                }
            }
            Self::BertForPreTraining(m) => {
                let o = m.forward(input, int2("labels")?, int1("next_sentence_label")?)?;
                put_loss(&mut out, o.loss);
                out.insert(
                    "prediction_logits".into(),
                    HostTensor::from_float(o.prediction_logits),
                );
                out.insert(
                    "seq_relationship_logits".into(),
                    HostTensor::from_float(o.seq_relationship_logits),
                );
            }
            Self::BertForMaskedLM(m) => {
                let o = m.forward(input, int2("labels")?)?;
                put_loss(&mut out, o.loss);
                out.insert("logits".into(), HostTensor::from_float(o.logits));
            }
            Self::BertLMHeadModel(m) => {
                let o = m.forward(input, int2("labels")?)?;
                put_loss(&mut out, o.loss);
                out.insert("logits".into(), HostTensor::from_float(o.logits));
            }
            Self::BertForNextSentencePrediction(m) => {
                let o = m.forward(input, int1("labels")?)?;
                put_loss(&mut out, o.loss);
                out.insert("logits".into(), HostTensor::from_float(o.logits));
            }
            Self::BertForSequenceClassification(m) => {
                let labels = match inputs.get("labels") {
                    None => None,
                    Some(t) if !t.is_float() => Some(SequenceClassificationLabels::Classes(
                        t.int("labels", device)?,
                    )),
                    Some(t) if t.shape.len() == 1 => {
                        let n = t.shape[0];
                        Some(SequenceClassificationLabels::Values(
                            t.float::<1>("labels", device)?.reshape([n, 1]),
                        ))
                    }
                    Some(t) => Some(SequenceClassificationLabels::Values(
                        t.float("labels", device)?,
                    )),
                };
                let o = m.forward(input, labels)?;
                put_loss(&mut out, o.loss);
                out.insert("logits".into(), HostTensor::from_float(o.logits));
            }
            Self::BertForTokenClassification(m) => {
                let o = m.forward(input, int2("labels")?)?;
                put_loss(&mut out, o.loss);
                out.insert("logits".into(), HostTensor::from_float(o.logits));
            }
            Self::BertForQuestionAnswering(m) => {
                let o = m.forward(input, int1("start_positions")?, int1("end_positions")?)?;
                put_loss(&mut out, o.loss);
                out.insert(
                    "start_logits".into(),
                    HostTensor::from_float(o.start_logits),
                );
                out.insert("end_logits".into(), HostTensor::from_float(o.end_logits));
            }
            Self::BertForMultipleChoice(_) => unreachable!("handled above"),
        }
        Ok(out)
    }

    /// Greedy generation (`BertLMHeadModel` only): `sequences`, prompt included.
    pub fn generate(
        &self,
        inputs: &NamedTensors,
        max_new_tokens: usize,
        use_cache: bool,
        device: &Device,
    ) -> Result<HostTensor> {
        let Self::BertLMHeadModel(m) = self else {
            return Err(BertError::Input(format!(
                "--generate needs a BertLMHeadModel, not {}",
                self.class()
            )));
        };
        let input = self.input(inputs, device)?;
        Ok(HostTensor::from_int(m.generate(
            input,
            max_new_tokens,
            use_cache,
            None,
        )?))
    }
}

macro_rules! from_class {
    ($($class:ident),*) => {$(
        impl From<$class> for AnyBert {
            fn from(m: $class) -> Self {
                Self::$class(m)
            }
        }
    )*};
}

from_class!(
    BertModel,
    BertForPreTraining,
    BertForMaskedLM,
    BertLMHeadModel,
    BertForNextSentencePrediction,
    BertForSequenceClassification,
    BertForMultipleChoice,
    BertForTokenClassification,
    BertForQuestionAnswering
);
