//! `BertConfig`: HF's `config.json` for BERT, read and written faithfully.
//!
//! Field names and defaults are those of `transformers.BertConfig` and `PretrainedConfig`.
//! Fields we do not model are kept in [`BertConfig::extra`] and written back on save.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::activation::HiddenAct;
use crate::error::{BertError, Result};

/// HF `problem_type` of `BertForSequenceClassification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// `MSELoss` on the logits (HF picks it when `num_labels == 1`).
    Regression,
    /// `CrossEntropyLoss` on integer class labels.
    SingleLabelClassification,
    /// `BCEWithLogitsLoss` on float multi-hot labels.
    MultiLabelClassification,
}

/// The configuration of a BERT model, as in HF's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "d::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "d::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default)]
    pub hidden_act: HiddenAct,
    #[serde(default = "d::dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "d::dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "d::type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "d::initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "d::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<usize>,
    #[serde(default = "d::position_embedding_type")]
    pub position_embedding_type: String,
    #[serde(default = "d::yes")]
    pub use_cache: bool,
    /// Dropout before the classification heads; `None` means `hidden_dropout_prob` (HF).
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default)]
    pub is_decoder: bool,
    #[serde(default)]
    pub add_cross_attention: bool,
    #[serde(default = "d::yes")]
    pub tie_word_embeddings: bool,
    /// Label names by class index; its length is `num_labels` (HF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<usize, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, usize>>,
    /// Only read: HF accepts `num_labels` as an argument and turns it into `id2label`.
    #[serde(default, skip_serializing)]
    num_labels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<ProblemType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default = "d::model_type")]
    pub model_type: String,
    /// Every other field of `config.json`, kept verbatim and written back on save.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

mod d {
    pub fn vocab_size() -> usize {
        30522
    }
    pub fn hidden_size() -> usize {
        768
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn max_position_embeddings() -> usize {
        512
    }
    pub fn type_vocab_size() -> usize {
        2
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub fn position_embedding_type() -> String {
        "absolute".into()
    }
    pub fn model_type() -> String {
        "bert".into()
    }
    pub fn yes() -> bool {
        true
    }
}

impl Default for BertConfig {
    /// `bert-base-uncased`'s shape, as `BertConfig()` in HF.
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults parse")
    }
}

impl BertConfig {
    /// A small config for tests and examples; every other field takes HF's default.
    pub fn tiny(vocab_size: usize, hidden_size: usize, layers: usize, heads: usize) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden_size,
            ..Self::default()
        }
    }

    /// Parses and validates a `config.json` string.
    pub fn from_json_str(json: &str) -> std::result::Result<Self, serde_json::Error> {
        let mut config: Self = serde_json::from_str(json)?;
        config.normalize_labels();
        Ok(config)
    }

    /// Reads `config.json` (a file, or a directory that holds one, or a model id of the local
    /// HF cache: [`crate::hub::resolve_model`]) and validates it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = crate::hub::resolve_model(path)?;
        if path.is_dir() {
            path = path.join("config.json");
        }
        let text = std::fs::read_to_string(&path).map_err(|e| BertError::io(&path, e))?;
        let config =
            Self::from_json_str(&text).map_err(|source| BertError::ConfigParse { path, source })?;
        config.validate()?;
        Ok(config)
    }

    /// The JSON HF writes (pretty-printed, sorted like HF's `to_json_string`).
    pub fn to_json_string(&self) -> String {
        let value = serde_json::to_value(self).expect("config serializes");
        let sorted: BTreeMap<String, Value> = match value {
            Value::Object(map) => map.into_iter().collect(),
            _ => unreachable!(),
        };
        serde_json::to_string_pretty(&sorted).expect("config serializes") + "\n"
    }

    /// Writes `config.json` into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let path = dir.as_ref().join("config.json");
        crate::hub::write_atomically(&path, self.to_json_string().as_bytes())
    }

    /// The HF class the checkpoint was saved from (`architectures[0]`), `BertModel` if none.
    pub fn architecture(&self) -> &str {
        self.architectures
            .as_ref()
            .and_then(|a| a.first())
            .map_or("BertModel", String::as_str)
    }

    /// Number of labels of the classification heads: `len(id2label)`, default 2 (HF).
    pub fn num_labels(&self) -> usize {
        self.id2label.as_ref().map_or(2, |m| m.len())
    }

    /// Sets `num_labels` the way HF's `config.num_labels = n` does (`LABEL_i` names).
    pub fn set_num_labels(&mut self, n: usize) {
        self.id2label = Some((0..n).map(|i| (i, format!("LABEL_{i}"))).collect());
        self.label2id = Some((0..n).map(|i| (format!("LABEL_{i}"), i)).collect());
    }

    /// A sequence-classification head for `problem_type` (HF's `from_pretrained(…,
    /// num_labels=…, id2label=…, problem_type=…)`): one output for regression, else a class
    /// per name of `labels`.
    pub fn set_problem_type<S: AsRef<str>>(&mut self, problem_type: ProblemType, labels: &[S]) {
        match problem_type {
            ProblemType::Regression => self.set_num_labels(1),
            _ => self.set_labels(labels),
        }
        self.problem_type = Some(problem_type);
    }

    /// Every dropout probability 0 (hidden, attention and classifier): deterministic training.
    pub fn disable_dropout(&mut self) {
        self.hidden_dropout_prob = 0.0;
        self.attention_probs_dropout_prob = 0.0;
        self.classifier_dropout = Some(0.0);
    }

    /// Sets label names (index = class id), filling `id2label` and `label2id`.
    pub fn set_labels<S: AsRef<str>>(&mut self, names: &[S]) {
        self.id2label = Some(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (i, n.as_ref().to_string()))
                .collect(),
        );
        self.label2id = Some(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_ref().to_string(), i))
                .collect(),
        );
    }

    /// Dropout before the classifiers: `classifier_dropout`, else `hidden_dropout_prob`.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// The size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn normalize_labels(&mut self) {
        if self.id2label.is_none() {
            if let Some(n) = self.num_labels {
                self.set_num_labels(n);
            }
        } else if self.label2id.is_none() {
            let id2label = self.id2label.clone().unwrap_or_default();
            self.label2id = Some(id2label.into_iter().map(|(i, n)| (n, i)).collect());
        }
        self.num_labels = None;
    }

    /// Checks the values HF would reject or that the model cannot run with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BertError::InvalidConfig(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size ({}) is not a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.classifier_dropout_prob()),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad(format!(
                "layer_norm_eps must be > 0, got {}",
                self.layer_norm_eps
            ));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            ));
        }
        if let Some(pad) = self.pad_token_id
            && pad >= self.vocab_size
        {
            return bad(format!(
                "pad_token_id {pad} is not below vocab_size {}",
                self.vocab_size
            ));
        }
        if self.add_cross_attention && !self.is_decoder {
            return bad("add_cross_attention needs is_decoder = true".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_hf_defaults() {
        let c = BertConfig::default();
        assert_eq!(c.vocab_size, 30522);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.hidden_act, HiddenAct::Gelu);
        assert_eq!(c.num_labels(), 2);
        assert_eq!(c.pad_token_id, None);
        assert!(c.tie_word_embeddings);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let json = r#"{"hidden_size": 32, "num_attention_heads": 4, "gradient_checkpointing": false,
            "transformers_version": "4.0", "id2label": {"0": "neg", "1": "pos"},
            "problem_type": "single_label_classification", "hidden_act": "gelu_new"}"#;
        let c = BertConfig::from_json_str(json).unwrap();
        assert_eq!(c.num_labels(), 2);
        assert_eq!(c.label2id.as_ref().unwrap()["pos"], 1);
        assert_eq!(c.hidden_act, HiddenAct::GeluNew);
        let back = BertConfig::from_json_str(&c.to_json_string()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.extra["gradient_checkpointing"], Value::Bool(false));
        assert_eq!(back.extra["transformers_version"], "4.0");
    }

    #[test]
    fn num_labels_argument_becomes_id2label() {
        let c = BertConfig::from_json_str(r#"{"num_labels": 3}"#).unwrap();
        assert_eq!(c.num_labels(), 3);
        assert_eq!(c.id2label.unwrap()[&2], "LABEL_2");
        assert!(
            !BertConfig::default()
                .to_json_string()
                .contains("num_labels")
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = BertConfig::tiny(10, 30, 1, 4);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("hidden_size (30) is not a multiple"), "{e}");
        c.hidden_size = 32;
        c.hidden_dropout_prob = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("hidden_dropout_prob")
        );
        let e = BertConfig::from_json_str(r#"{"hidden_act": "mish2"}"#).unwrap_err();
        assert!(e.to_string().contains("mish2"), "{e}");
    }
}
