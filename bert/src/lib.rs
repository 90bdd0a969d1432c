//! The HF BERT model family on Burn: `BertModel` and every HF head, with HF's class names,
//! state-dict keys, output fields and loss semantics. One code path for every backend: the
//! backend is a runtime [`burn::tensor::Device`], chosen by name in [`backend`].
//!
//! ```no_run
//! use bert::{BertPretrained, BertForSequenceClassification, BertInput, backend};
//! # fn main() -> Result<(), bert::BertError> {
//! let device = backend::device_from_name("flex")?;
//! let model = BertForSequenceClassification::from_pretrained("models/my-bert", &device)?;
//! # Ok(()) }
//! ```

pub mod activation;
pub mod attention;
pub mod auto;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod cpu_kernels;
pub mod cube_kernels;
pub mod dropout;
pub mod embeddings;
pub mod error;
pub mod fixtures;
pub mod heads;
pub mod hub;
pub mod init;
pub mod layer;
pub mod layer_norm;
pub mod loss;
pub mod model;
pub mod output;
pub mod pooler;
pub mod precision;
pub mod reads;
pub mod resize;
pub mod tch_kernels;
pub mod tensors_file;

pub use attention::KvCache;
pub use auto::{AnyBert, AutoClass, CLASS_NAMES};
pub use config::{BertConfig, ProblemType};
pub use error::{BertError, Result};
pub use heads::*;
pub use hub::{BertPretrained, Checkpoint, LoadReport, weights_file};
pub use model::{BertInput, BertModel, Bounds, HostBounds, bounds};
pub use output::*;
