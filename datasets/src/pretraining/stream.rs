//! Pretraining data from a corpus larger than memory: documents read lazily
//! ([`super::corpus::documents`]) are tokenized a chunk at a time with the tokenizer's parallel
//! batch encoding ([`encode_documents`]), and NSP pairs are built from a buffer of tokenized
//! documents at a time ([`stream_pairs`]) with the logic of [`super::nsp::create_pairs`], then
//! masked for MLM ([`mask_pairs`]). Each stage is an iterator: nothing is read before it is
//! asked for, and at most a chunk and a buffer of documents are held.
//!
//! One deviation from BERT's `create_pretraining_data.py`: it draws the random "next" segment
//! from any document of the whole corpus (held in memory); here it comes from another document
//! of the current buffer of `buffer_documents` documents (a last buffer holding a single
//! document draws from the previous buffer). With a buffer of a few hundred documents or more
//! the random segments are as unrelated as BERT's; with a buffer holding the whole corpus the
//! pairs are exactly those of `create_pairs`. Pairs come out in document order, as from
//! `create_pairs`: shuffle them downstream (e.g. in a buffer) for training.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::corpus::Document;
use super::masking::MlmMasker;
use super::nsp::{NspOptions, PretrainingPair, pairs_from_document};
use crate::{BertTokenizer, DataError};

/// NSP pairs as a stream reads them.
pub type PairResults = Box<dyn Iterator<Item = Result<PretrainingPair, DataError>>>;

impl super::Corpus {
    /// The NSP pairs of the training (`held_out = false`) or held-out documents, streamed:
    /// documents read lazily ([`super::Corpus::stream`]), tokenized 64 at a time, paired from
    /// a buffer of 256 documents ([`stream_pairs`]). Memory is bounded by those buffers,
    /// whatever the corpus size.
    pub fn stream_pairs(
        &self,
        held_out: bool,
        tokenizer: &BertTokenizer,
        options: &NspOptions,
    ) -> Result<PairResults, DataError> {
        let docs = encode_documents(self.stream(held_out)?, tokenizer, 64)?;
        Ok(Box::new(stream_pairs(docs, options, 256)?))
    }
}

/// A document's sentences as token ids (no `[CLS]`/`[SEP]`).
pub type TokenizedDocument = Vec<Vec<u32>>;

/// Tokenizes `documents` lazily, `chunk_documents` at a time: the sentences of a chunk are
/// encoded together with the tokenizer's batch encoding (in parallel), without special tokens,
/// padding or truncation. An error of the input is passed on after the documents before it.
pub fn encode_documents<I>(
    documents: I,
    tokenizer: &BertTokenizer,
    chunk_documents: usize,
) -> Result<DocumentEncoder<I::IntoIter>, DataError>
where
    I: IntoIterator<Item = Result<Document, DataError>>,
{
    if chunk_documents == 0 {
        return Err(DataError::Option("chunk_documents must be ≥ 1".into()));
    }
    let mut inner = tokenizer.inner.clone();
    inner.with_padding(None);
    inner
        .with_truncation(None)
        .map_err(|e| DataError::Tokenizer(e.to_string()))?;
    Ok(DocumentEncoder {
        documents: documents.into_iter(),
        tokenizer: BertTokenizer { inner },
        chunk_documents,
        ready: Vec::new().into_iter(),
        pending_error: None,
        finished: false,
    })
}

/// The iterator of [`encode_documents`].
pub struct DocumentEncoder<I> {
    documents: I,
    tokenizer: BertTokenizer,
    chunk_documents: usize,
    ready: std::vec::IntoIter<TokenizedDocument>,
    pending_error: Option<DataError>,
    finished: bool,
}

impl<I: Iterator<Item = Result<Document, DataError>>> Iterator for DocumentEncoder<I> {
    type Item = Result<TokenizedDocument, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(doc) = self.ready.next() {
                return Some(Ok(doc));
            }
            if let Some(e) = self.pending_error.take() {
                self.finished = true;
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            let mut chunk = Vec::with_capacity(self.chunk_documents);
            while chunk.len() < self.chunk_documents {
                match self.documents.next() {
                    Some(Ok(doc)) => chunk.push(doc),
                    Some(Err(e)) => {
                        self.pending_error = Some(e);
                        break;
                    }
                    None => {
                        self.finished = true;
                        break;
                    }
                }
            }
            let sentences: Vec<&str> = chunk.iter().flatten().map(String::as_str).collect();
            let encodings = match self.tokenizer.inner.encode_batch(sentences, false) {
                Ok(e) => e,
                Err(e) => {
                    self.finished = true;
                    self.pending_error = None;
                    return Some(Err(DataError::Tokenizer(e.to_string())));
                }
            };
            let mut encodings = encodings.into_iter();
            let tokenized: Vec<TokenizedDocument> = chunk
                .iter()
                .map(|doc| {
                    doc.iter()
                        .map(|_| encodings.next().expect("one encoding a sentence"))
                        .map(|e| e.get_ids().to_vec())
                        .collect()
                })
                .collect();
            self.ready = tokenized.into_iter();
        }
    }
}

/// NSP pairs from a stream of tokenized documents, `buffer_documents` (≥ 2) non-empty
/// documents at a time, with the options, seeding and pair logic of
/// [`super::nsp::create_pairs`]; the random B comes from the current buffer (see the module
/// documentation). Fewer than two non-empty documents in the whole stream is an error, as for
/// `create_pairs`. MLM masks are drawn on the pairs afterwards with
/// [`mask_pairs`].
pub fn stream_pairs<I>(
    documents: I,
    options: &NspOptions,
    buffer_documents: usize,
) -> Result<PairStream<I::IntoIter>, DataError>
where
    I: IntoIterator<Item = Result<TokenizedDocument, DataError>>,
{
    if options.max_seq_length < 5 {
        return Err(DataError::Option(format!(
            "max_seq_length must be ≥ 5, got {}",
            options.max_seq_length
        )));
    }
    if buffer_documents < 2 {
        return Err(DataError::Option(format!(
            "buffer_documents must be ≥ 2 to draw random next segments, got {buffer_documents}"
        )));
    }
    Ok(PairStream {
        documents: documents.into_iter(),
        options: *options,
        buffer_documents,
        rng: StdRng::seed_from_u64(options.seed),
        previous: Vec::new(),
        ready: Vec::new().into_iter(),
        pending_error: None,
        finished: false,
    })
}

/// The iterator of [`stream_pairs`].
pub struct PairStream<I> {
    documents: I,
    options: NspOptions,
    buffer_documents: usize,
    rng: StdRng,
    previous: Vec<TokenizedDocument>,
    ready: std::vec::IntoIter<PretrainingPair>,
    pending_error: Option<DataError>,
    finished: bool,
}

impl<I: Iterator<Item = Result<TokenizedDocument, DataError>>> Iterator for PairStream<I> {
    type Item = Result<PretrainingPair, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(pair) = self.ready.next() {
                return Some(Ok(pair));
            }
            if let Some(e) = self.pending_error.take() {
                self.finished = true;
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            let mut buffer: Vec<TokenizedDocument> = Vec::with_capacity(self.buffer_documents);
            while buffer.len() < self.buffer_documents {
                match self.documents.next() {
                    Some(Ok(doc)) if doc.iter().any(|s| !s.is_empty()) => buffer.push(doc),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.pending_error = Some(e);
                        break;
                    }
                    None => {
                        self.finished = true;
                        break;
                    }
                }
            }
            if buffer.is_empty() {
                continue;
            }
            // A lone last document draws its random segments from the previous buffer.
            let borrowed = if buffer.len() < 2 {
                self.previous.len()
            } else {
                0
            };
            let pool: Vec<&[Vec<u32>]> = self.previous[self.previous.len() - borrowed..]
                .iter()
                .chain(&buffer)
                .map(Vec::as_slice)
                .collect();
            if pool.len() < 2 {
                self.finished = true;
                self.pending_error = None;
                return Some(Err(DataError::Option(
                    "next sentence prediction needs at least two non-empty documents".into(),
                )));
            }
            let mut pairs = Vec::new();
            for doc_index in borrowed..pool.len() {
                pairs_from_document(&pool, doc_index, &self.options, &mut self.rng, &mut pairs);
            }
            self.previous = buffer;
            self.ready = pairs.into_iter();
        }
    }
}

/// Pairs as MLM model inputs: `[CLS] A [SEP] B [SEP]` with token types, and masks drawn by
/// `masker` (a new mask for every pair it sees, as HF's dynamic masking). `continuation[id]`
/// marks `##` pieces for whole-word masking ([`continuation_table`]; may be empty otherwise).
pub fn mask_pairs<I>(
    pairs: I,
    masker: MlmMasker,
    cls: u32,
    sep: u32,
    continuation: Vec<bool>,
) -> MaskedPairs<I::IntoIter>
where
    I: IntoIterator<Item = Result<PretrainingPair, DataError>>,
{
    MaskedPairs {
        pairs: pairs.into_iter(),
        masker,
        cls,
        sep,
        continuation,
    }
}

/// Documents of sentences tokenized in memory ([`encode_documents`] collected).
pub fn tokenize_documents(
    tokenizer: &BertTokenizer,
    documents: &[Document],
) -> Result<Vec<TokenizedDocument>, DataError> {
    encode_documents(documents.iter().cloned().map(Ok), tokenizer, 256)?.collect()
}

/// For each id of the tokenizer's vocabulary, whether it is a `##` continuation piece.
pub fn continuation_table(tokenizer: &BertTokenizer) -> Vec<bool> {
    let mut table = vec![false; tokenizer.vocab_size()];
    for (token, id) in tokenizer.inner.get_vocab(true) {
        if let Some(c) = table.get_mut(id as usize) {
            *c = token.starts_with("##");
        }
    }
    table
}

/// The iterator of [`mask_pairs`].
pub struct MaskedPairs<I> {
    pairs: I,
    masker: MlmMasker,
    cls: u32,
    sep: u32,
    continuation: Vec<bool>,
}

/// One pretraining example: masked input ids, MLM labels, token types and the NSP label.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainingExample {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// The original id at masked positions, -100 elsewhere.
    pub mlm_labels: Vec<i64>,
    /// 0: B follows A; 1: B is random.
    pub next_sentence_label: u8,
}

impl<I: Iterator<Item = Result<PretrainingPair, DataError>>> Iterator for MaskedPairs<I> {
    type Item = Result<PretrainingExample, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pair = match self.pairs.next()? {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let (ids, token_type_ids) = pair.to_input(self.cls, self.sep);
        let is_continuation: Vec<bool> = if self.continuation.is_empty() {
            Vec::new()
        } else {
            ids.iter()
                .map(|&id| self.continuation.get(id as usize).copied().unwrap_or(false))
                .collect()
        };
        let masked = self.masker.mask(&ids, &is_continuation);
        Some(Ok(PretrainingExample {
            input_ids: masked.input_ids,
            token_type_ids,
            mlm_labels: masked.labels,
            next_sentence_label: pair.next_sentence_label,
        }))
    }
}
