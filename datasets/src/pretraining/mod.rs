//! BERT pretraining data, as `create_pretraining_data.py` makes it: documents of sentences →
//! segment pairs for next sentence prediction ([`nsp`]) → masked-LM inputs and labels
//! ([`masking`]). Input is plain text, one sentence per line with a blank line between
//! documents, or plain paragraphs split into sentences ([`corpus`]); a corpus larger than
//! memory is streamed ([`stream`]).

pub mod corpus;
pub mod masking;
pub mod nsp;
pub mod stream;

pub use corpus::{
    Corpus, CorpusFormat, Document, DocumentReader, DocumentStream, ParagraphDocuments, documents,
    is_held_out, paragraph_documents, read_documents, split_paragraphs, stream_documents,
};
pub use masking::{MaskedLm, MlmMasker, MlmOptions, continuation_table};
pub use nsp::{
    NspOptions, PretrainingPair, create_pairs, create_pairs_duplicated, document_pairs, group_texts,
};
pub use stream::{
    PairResults, PretrainingExample, TokenizedDocument, encode_documents, mask_pairs, stream_pairs,
    tokenize_documents,
};
