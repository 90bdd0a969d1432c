//! Data for BERT: tokenization with HF `tokenizers` ([`tokenization`]) and BERT's pretraining
//! data, MLM masking and NSP pairs ([`pretraining`]).

pub mod collate;
pub mod metrics;
pub mod pretraining;
pub mod synthetic;
pub mod tasks;
pub mod tokenization;

/// The real fixtures (weights and data); they live in `bert` so that its tests need no data crate.
pub use bert::fixtures;
pub use tokenization::{BertTokenizer, SpecialIds, WordPieceOptions};

/// Errors of the data pipeline, naming the file, line and problem where there is one.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid data option: {0}")]
    Option(String),
    #[error(transparent)]
    Bert(#[from] bert::BertError),
}
