//! BERT pretraining data, as `create_pretraining_data.py` makes it: documents of sentences →
//! segment pairs for next sentence prediction ([`nsp`]) → masked-LM inputs and labels
//! ([`masking`]). Input is plain text, one sentence per line with a blank line between
//! documents, or plain paragraphs split into sentences ([`corpus`]).

pub mod corpus;
pub mod masking;
pub mod nsp;

pub use corpus::{Document, read_documents, split_paragraphs};
pub use masking::{MaskedLm, MlmMasker};
pub use nsp::{NspOptions, PretrainingPair, create_pairs};
