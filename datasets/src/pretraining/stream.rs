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
    let encode = Encode(BertTokenizer { inner });
    Ok(ByChunk::new(documents, chunk_documents, |_| true, encode))
}

/// The iterator of [`encode_documents`].
pub type DocumentEncoder<I> = ByChunk<I, Document, Encode>;

/// [`encode_documents`]' work on one chunk.
pub struct Encode(BertTokenizer);

impl ChunkMap<Document> for Encode {
    type Output = TokenizedDocument;

    fn map(&mut self, chunk: Vec<Document>) -> Result<Vec<TokenizedDocument>, DataError> {
        let sentences: Vec<&str> = chunk.iter().flatten().map(String::as_str).collect();
        let encodings = (self.0.inner)
            .encode_batch(sentences, false)
            .map_err(|e| DataError::Tokenizer(e.to_string()))?;
        let mut encodings = encodings.into_iter();
        Ok(chunk
            .iter()
            .map(|doc| {
                doc.iter()
                    .map(|_| encodings.next().expect("one encoding a sentence"))
                    .map(|e| e.get_ids().to_vec())
                    .collect()
            })
            .collect())
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
    let pairing = Pairing {
        options: *options,
        rng: StdRng::seed_from_u64(options.seed),
        previous: Vec::new(),
    };
    let non_empty = |doc: &TokenizedDocument| doc.iter().any(|s| !s.is_empty());
    Ok(ByChunk::new(
        documents,
        buffer_documents,
        non_empty,
        pairing,
    ))
}

/// The iterator of [`stream_pairs`].
pub type PairStream<I> = ByChunk<I, TokenizedDocument, Pairing>;

/// [`stream_pairs`]' work on one buffer of documents.
pub struct Pairing {
    options: NspOptions,
    rng: StdRng,
    previous: Vec<TokenizedDocument>,
}

impl ChunkMap<TokenizedDocument> for Pairing {
    type Output = PretrainingPair;

    fn map(&mut self, buffer: Vec<TokenizedDocument>) -> Result<Vec<PretrainingPair>, DataError> {
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
            return Err(DataError::Option(
                "next sentence prediction needs at least two non-empty documents".into(),
            ));
        }
        let mut pairs = Vec::new();
        for doc_index in borrowed..pool.len() {
            pairs_from_document(&pool, doc_index, &self.options, &mut self.rng, &mut pairs);
        }
        self.previous = buffer;
        Ok(pairs)
    }
}

/// The work a [`ByChunk`] stream does on each chunk of its input.
pub trait ChunkMap<T> {
    type Output;
    fn map(&mut self, chunk: Vec<T>) -> Result<Vec<Self::Output>, DataError>;
}

/// A stream that reads up to `size` items of its input at a time (those `keep` accepts),
/// maps each chunk with `M` and yields the results one by one. An error of the input comes
/// after the results of the items read before it; any error ends the stream.
pub struct ByChunk<I, T, M: ChunkMap<T>> {
    input: I,
    size: usize,
    keep: fn(&T) -> bool,
    map: M,
    ready: std::vec::IntoIter<M::Output>,
    pending: Option<DataError>,
    finished: bool,
}

impl<I, T, M: ChunkMap<T>> ByChunk<I, T, M> {
    fn new(
        input: impl IntoIterator<IntoIter = I, Item = Result<T, DataError>>,
        size: usize,
        keep: fn(&T) -> bool,
        map: M,
    ) -> Self {
        ByChunk {
            input: input.into_iter(),
            size,
            keep,
            map,
            ready: Vec::new().into_iter(),
            pending: None,
            finished: false,
        }
    }
}

impl<I, T, M> Iterator for ByChunk<I, T, M>
where
    I: Iterator<Item = Result<T, DataError>>,
    M: ChunkMap<T>,
{
    type Item = Result<M::Output, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.ready.next() {
                return Some(Ok(x));
            }
            if let Some(e) = self.pending.take() {
                self.finished = true;
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            let mut chunk = Vec::with_capacity(self.size);
            while chunk.len() < self.size {
                match self.input.next() {
                    Some(Ok(x)) if (self.keep)(&x) => chunk.push(x),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.pending = Some(e);
                        break;
                    }
                    None => {
                        self.finished = true;
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                continue;
            }
            match self.map.map(chunk) {
                Ok(out) => self.ready = out.into_iter(),
                Err(e) => {
                    (self.finished, self.pending) = (true, None);
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Pairs as MLM model inputs: `[CLS] A [SEP] B [SEP]` with token types, and masks drawn by
/// `masker` (a new mask for every pair it sees, as HF's dynamic masking; whole-word masking
/// reads the `##` pieces from its options' `continuation`).
pub fn mask_pairs<I>(pairs: I, masker: MlmMasker, cls: u32, sep: u32) -> MaskedPairs<I::IntoIter>
where
    I: IntoIterator<Item = Result<PretrainingPair, DataError>>,
{
    MaskedPairs {
        pairs: pairs.into_iter(),
        masker,
        cls,
        sep,
    }
}

/// Documents of sentences tokenized in memory ([`encode_documents`] collected).
pub fn tokenize_documents(
    tokenizer: &BertTokenizer,
    documents: &[Document],
) -> Result<Vec<TokenizedDocument>, DataError> {
    encode_documents(documents.iter().cloned().map(Ok), tokenizer, 256)?.collect()
}

/// The iterator of [`mask_pairs`].
pub struct MaskedPairs<I> {
    pairs: I,
    masker: MlmMasker,
    cls: u32,
    sep: u32,
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
        let masked = self.masker.mask(&ids);
        Some(Ok(PretrainingExample {
            input_ids: masked.input_ids,
            token_type_ids,
            mlm_labels: masked.labels,
            next_sentence_label: pair.next_sentence_label,
        }))
    }
}
