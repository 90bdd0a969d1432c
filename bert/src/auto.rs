//! HF's Auto classes: any class of the family chosen by its HF name at run time (the
//! `architectures[0]` of `config.json`, as `AutoModel.from_pretrained` does), fed and read
//! through named tensors with HF's argument and output names. The parity tool
//! (`examples/forward.rs`) and the parity tests use it.
//!
//! Every class is listed once, in the `classes!` invocation below: the heads' `BertPretrained`
//! implementations (HF interop), the enum, the class names, loading by name and the dispatch
//! are generated from it. What a class takes and returns by name is its [`AutoClass`]
//! implementation: a row of the `labelled_classes!` table (the `BertModel` input, label tensors,
//! output fields), or a block of its own (`BertModel`, sequence classification, multiple choice).

use std::path::Path;

use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::heads::*;
use crate::hub::{BertPretrained, LoadReport, weights_file};
use crate::model::{BertInput, BertModel};
use crate::tensors_file::{HostTensor, NamedTensors};

/// A class usable by name: the inputs it reads and its forward pass on named tensors.
pub trait AutoClass: BertPretrained {
    /// The named inputs the forward pass reads besides `input_ids` (HF's argument names).
    const INPUTS: &'static [&'static str];

    /// The forward pass on named inputs; outputs by HF field name, `loss` 0-d.
    fn forward_named(&self, inputs: &Inputs<'_>) -> Result<NamedTensors>;
}

macro_rules! classes {
    ($base:ident; $($head:ident),* $(,)?) => {
        // Every head holds HF's base model as `bert` (HF's `base_model_prefix`) and is built by
        // `new(config, device)`; the base class has its own implementation below.
        $(impl BertPretrained for $head {
            const CLASS: &'static str = stringify!($head);
            fn init(config: &BertConfig, device: &Device) -> Self {
                Self::new(config, device)
            }
            fn config(&self) -> &BertConfig {
                &self.bert.config
            }
            fn config_mut(&mut self) -> &mut BertConfig {
                &mut self.bert.config
            }
        })*
        classes!(@any $base, $($head),*);
    };
    (@any $($class:ident),*) => {
        /// One model of any class.
        #[derive(Debug, Clone)]
        pub enum AnyBert {
            $($class($class),)*
        }

        /// The HF class names this crate implements, `BertModel` first.
        pub const CLASS_NAMES: &[&str] = &[$(stringify!($class)),*];

        impl AnyBert {
            fn from_weights_named(
                class: &str,
                config: BertConfig,
                weights: &Path,
                device: &Device,
            ) -> Result<(Self, LoadReport)> {
                $(if class == $class::CLASS {
                    let (m, report) = $class::from_weights(config, weights, device)?;
                    return Ok((Self::$class(m), report));
                })*
                Err(BertError::UnknownHead(class.to_string(), CLASS_NAMES.join(", ")))
            }

            /// The HF class name.
            pub fn class(&self) -> &'static str {
                match self {
                    $(Self::$class(_) => $class::CLASS,)*
                }
            }

            pub fn config(&self) -> &BertConfig {
                match self {
                    $(Self::$class(m) => m.config(),)*
                }
            }

            /// Writes the model as an HF directory.
            pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
                match self {
                    $(Self::$class(m) => m.save_pretrained(dir),)*
                }
            }

            /// The named inputs the class reads besides `input_ids`.
            pub fn accepted_inputs(&self) -> &'static [&'static str] {
                match self {
                    $(Self::$class(_) => $class::INPUTS,)*
                }
            }

            fn forward_class(&self, inputs: &Inputs<'_>) -> Result<NamedTensors> {
                match self {
                    $(Self::$class(m) => m.forward_named(inputs),)*
                }
            }
        }

        $(impl From<$class> for AnyBert {
            fn from(m: $class) -> Self {
                Self::$class(m)
            }
        })*
    };
}

classes!(
    BertModel;
    BertForPreTraining,
    BertForMaskedLM,
    BertLMHeadModel,
    BertForNextSentencePrediction,
    BertForSequenceClassification,
    BertForMultipleChoice,
    BertForTokenClassification,
    BertForQuestionAnswering,
);

impl BertPretrained for BertModel {
    const CLASS: &'static str = "BertModel";
    /// With a pooler, as HF's `BertModel(config)`.
    fn init(config: &BertConfig, device: &Device) -> Self {
        Self::new(config, true, device)
    }
    fn config(&self) -> &BertConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut BertConfig {
        &mut self.config
    }
}

impl AnyBert {
    /// The class named by `head`, or by `architectures[0]` of `config.json` when `None`
    /// (`BertModel` if it has none).
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        head: Option<&str>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let dir = crate::hub::resolve_model(dir)?;
        let config = BertConfig::from_file(&dir)?;
        let class = head.unwrap_or(config.architecture()).to_string();
        // Name the unknown head before reading any weights.
        if !CLASS_NAMES.contains(&class.as_str()) {
            return Err(BertError::UnknownHead(class, CLASS_NAMES.join(", ")));
        }
        Self::from_weights_named(&class, config, &weights_file(&dir)?, device)
    }

    /// Runs the forward pass on named inputs (HF's argument names) and returns the outputs by
    /// HF field name; `loss` is 0-d. An input the class does not take is an error.
    pub fn forward(&self, inputs: &NamedTensors, device: &Device) -> Result<NamedTensors> {
        self.forward_class(&self.inputs(inputs, device)?)
    }

    fn inputs<'a>(&self, inputs: &'a NamedTensors, device: &'a Device) -> Result<Inputs<'a>> {
        let accepted = self.accepted_inputs();
        for name in inputs.keys() {
            if name != "input_ids" && !accepted.contains(&name.as_str()) {
                return Err(BertError::Input(format!(
                    "unknown input `{name}` for {}; it takes input_ids, {}",
                    self.class(),
                    accepted.join(", ")
                )));
            }
        }
        Ok(Inputs { inputs, device })
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
        let input = self.inputs(inputs, device)?.bert_input()?;
        Ok(HostTensor::from_int(m.generate(
            input,
            max_new_tokens,
            use_cache,
            None,
        )?))
    }
}

/// Named input tensors on their way to a device, read by HF name.
pub struct Inputs<'a> {
    inputs: &'a NamedTensors,
    device: &'a Device,
}

impl Inputs<'_> {
    pub fn int<const D: usize>(&self, name: &str) -> Result<Option<Tensor<D, Int>>> {
        self.inputs
            .get(name)
            .map(|t| t.int(name, self.device))
            .transpose()
    }

    pub fn float<const D: usize>(&self, name: &str) -> Result<Option<Tensor<D>>> {
        self.inputs
            .get(name)
            .map(|t| t.float(name, self.device))
            .transpose()
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.inputs.get(name)
    }

    pub fn device(&self) -> &Device {
        self.device
    }

    /// `input_ids` (required) with the other `BertModel` arguments that are present.
    pub fn bert_input(&self) -> Result<BertInput> {
        let ids = self
            .int("input_ids")?
            .ok_or_else(|| BertError::Input("inputs have no `input_ids`".into()))?;
        let mut input = BertInput::new(ids);
        input.attention_mask = self.int("attention_mask")?;
        input.token_type_ids = self.int("token_type_ids")?;
        input.encoder_hidden_states = self.float("encoder_hidden_states")?;
        input.encoder_attention_mask = self.int("encoder_attention_mask")?;
        Ok(input)
    }
}

/// Named outputs: floats by name, and `loss` when there is one.
fn outputs<const N: usize>(
    loss: Option<Tensor<1>>,
    fields: [(&str, HostTensor); N],
) -> NamedTensors {
    let mut out: NamedTensors = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Some(l) = loss {
        out.insert("loss".into(), HostTensor::scalar(l));
    }
    out
}

const TEXT: [&str; 2] = ["attention_mask", "token_type_ids"];
const TEXT_LABELS: [&str; 3] = ["attention_mask", "token_type_ids", "labels"];
const DECODER: [&str; 4] = [
    "attention_mask",
    "token_type_ids",
    "encoder_hidden_states",
    "encoder_attention_mask",
];

impl AutoClass for BertModel {
    const INPUTS: &'static [&'static str] = &DECODER;
    fn forward_named(&self, inputs: &Inputs<'_>) -> Result<NamedTensors> {
        let o = self.forward(inputs.bert_input()?)?;
        let mut out = outputs(
            None,
            [(
                "last_hidden_state",
                HostTensor::from_float(o.last_hidden_state),
            )],
        );
        if let Some(p) = o.pooler_output {
            out.insert("pooler_output".into(), HostTensor::from_float(p));
        }
        Ok(out)
    }
}

/// Classes whose forward takes the `BertModel` input and label tensors (read by HF name) and
/// returns float outputs, named as its fields (and `loss` with labels).
macro_rules! labelled_classes {
    ($($class:ident: $inputs:expr, ($($label:literal),*) => ($($field:ident),*);)*) => {$(
        impl AutoClass for $class {
            const INPUTS: &'static [&'static str] = $inputs;
            fn forward_named(&self, inputs: &Inputs<'_>) -> Result<NamedTensors> {
                let o = self.forward(inputs.bert_input()?, $(inputs.int($label)?),*)?;
                let fields = [$((stringify!($field), HostTensor::from_float(o.$field))),*];
                Ok(outputs(o.loss, fields))
            }
        }
    )*};
}

labelled_classes! {
    BertForPreTraining: &[TEXT[0], TEXT[1], "labels", "next_sentence_label"],
        ("labels", "next_sentence_label") => (prediction_logits, seq_relationship_logits);
    BertForMaskedLM: &TEXT_LABELS, ("labels") => (logits);
    BertLMHeadModel: &[DECODER[0], DECODER[1], DECODER[2], DECODER[3], "labels"],
        ("labels") => (logits);
    BertForNextSentencePrediction: &TEXT_LABELS, ("labels") => (logits);
    BertForTokenClassification: &TEXT_LABELS, ("labels") => (logits);
    BertForQuestionAnswering: &[TEXT[0], TEXT[1], "start_positions", "end_positions"],
        ("start_positions", "end_positions") => (start_logits, end_logits);
}

impl AutoClass for BertForSequenceClassification {
    const INPUTS: &'static [&'static str] = &TEXT_LABELS;
    /// `labels`: integer classes, or float targets (`[b]` for regression, `[b, n]` multi-hot).
    fn forward_named(&self, inputs: &Inputs<'_>) -> Result<NamedTensors> {
        let labels = match inputs.get("labels") {
            None => None,
            Some(t) if !t.is_float() => inputs
                .int("labels")?
                .map(SequenceClassificationLabels::Classes),
            Some(t) if t.shape.len() == 1 => {
                let n = t.shape[0];
                inputs
                    .float::<1>("labels")?
                    .map(|v| SequenceClassificationLabels::Values(v.reshape([n, 1])))
            }
            Some(_) => inputs
                .float("labels")?
                .map(SequenceClassificationLabels::Values),
        };
        let o = self.forward(inputs.bert_input()?, labels)?;
        Ok(outputs(
            o.loss,
            [("logits", HostTensor::from_float(o.logits))],
        ))
    }
}

impl AutoClass for BertForMultipleChoice {
    const INPUTS: &'static [&'static str] = &TEXT_LABELS;
    /// Inputs are `[batch, choices, seq]`.
    fn forward_named(&self, inputs: &Inputs<'_>) -> Result<NamedTensors> {
        let ids = inputs
            .int::<3>("input_ids")?
            .ok_or_else(|| BertError::Input("inputs have no `input_ids`".into()))?;
        let o = self.forward(
            ids,
            inputs.int("attention_mask")?,
            inputs.int("token_type_ids")?,
            inputs.int("labels")?,
        )?;
        Ok(outputs(
            o.loss,
            [("logits", HostTensor::from_float(o.logits))],
        ))
    }
}
