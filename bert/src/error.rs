//! The one error type of the crate: every failure names what was wrong, never a panic inside Burn.

use std::path::PathBuf;

/// Anything that can go wrong when configuring, loading, saving or running a BERT model.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or has a field of the wrong type.
    #[error("{path}: malformed config.json: {source}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A config value is out of its valid range (e.g. `hidden_size` not divisible by heads).
    #[error("invalid BERT config: {0}")]
    InvalidConfig(String),
    /// Neither a directory nor a model of the local HF cache.
    #[error(
        "{name}: no such model directory, and not in the HF cache ({cache}: no snapshot of \
         models--{folder}); download it with HF (`huggingface-cli download {name}` or \
         `from_pretrained`) or give a directory"
    )]
    ModelNotFound {
        name: String,
        folder: String,
        cache: PathBuf,
    },
    /// The model directory holds no weights file we know.
    #[error(
        "{0}: no model.safetensors or pytorch_model.bin (nor a sharded checkpoint's \
         model.safetensors.index.json or pytorch_model.bin.index.json) in this directory"
    )]
    NoWeights(PathBuf),
    /// The weights file could not be parsed.
    #[error("{path}: cannot read weights: {message}")]
    Weights { path: PathBuf, message: String },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("{path}: checkpoint has no tensor `{key}` (needed by {model})")]
    MissingTensor {
        path: PathBuf,
        key: String,
        model: String,
    },
    /// A tensor in the checkpoint does not have the shape the config implies.
    #[error("{path}: tensor `{key}` has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Model inputs are inconsistent with each other or with the config.
    #[error("invalid input: {0}")]
    Input(String),
    /// A head name that is not one of the HF BERT classes.
    #[error("unknown head `{0}`; expected one of: {1}")]
    UnknownHead(String, String),
    /// A backend name that is unknown or not compiled in.
    #[error("{0}")]
    Backend(String),
}

/// Result alias used across the crate.
pub type Result<T, E = BertError> = std::result::Result<T, E>;

impl BertError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
