//! Corpora for pretraining: documents as lists of sentences, read whole ([`read_documents`])
//! or lazily from any reader ([`documents`]) for a corpus larger than memory.

use std::io::BufRead;
use std::path::Path;

use crate::DataError;

/// One document: its sentences, in order.
pub type Document = Vec<String>;

/// BERT's input format: one sentence per line, a blank line between documents.
pub fn read_documents(path: impl AsRef<Path>) -> Result<Vec<Document>, DataError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| DataError::File {
        path: name.clone(),
        message: e.to_string(),
    })?;
    let docs =
        documents(std::io::BufReader::new(file), name.clone()).collect::<Result<Vec<_>, _>>()?;
    if docs.is_empty() {
        return Err(DataError::File {
            path: name,
            message: "no sentences (the file is empty)".into(),
        });
    }
    Ok(docs)
}

/// Documents read lazily from `reader` in BERT's input format, as [`read_documents`] reads a
/// file: one sentence per line (trimmed), blank lines between documents, a leading BOM
/// dropped. Only the current document is held in memory. `name` names the input in errors
/// (an I/O failure, or the line of invalid UTF-8); the iterator ends after an error.
pub fn documents<R: BufRead>(reader: R, name: impl Into<String>) -> DocumentReader<R> {
    DocumentReader {
        reader,
        name: name.into(),
        line: 0,
        buf: Vec::new(),
        finished: false,
    }
}

/// The iterator of [`documents`].
#[derive(Debug)]
pub struct DocumentReader<R> {
    reader: R,
    name: String,
    line: usize,
    buf: Vec<u8>,
    finished: bool,
}

impl<R: BufRead> DocumentReader<R> {
    fn fail(&mut self, message: String) -> Option<Result<Document, DataError>> {
        self.finished = true;
        Some(Err(DataError::Line {
            path: self.name.clone(),
            line: self.line,
            message,
        }))
    }
}

impl<R: BufRead> Iterator for DocumentReader<R> {
    type Item = Result<Document, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let mut doc = Document::new();
        loop {
            self.buf.clear();
            let read = self.reader.read_until(b'\n', &mut self.buf);
            self.line += 1;
            match read {
                Err(e) => return self.fail(e.to_string()),
                Ok(0) => {
                    self.finished = true;
                    return (!doc.is_empty()).then_some(Ok(doc));
                }
                Ok(_) => {}
            }
            let bytes = match self.buf.strip_prefix("\u{feff}".as_bytes()) {
                Some(rest) if self.line == 1 => rest,
                _ => &self.buf[..],
            };
            let sentence = match std::str::from_utf8(bytes) {
                Ok(s) => s.trim(),
                Err(_) => return self.fail("invalid UTF-8".into()),
            };
            if !sentence.is_empty() {
                doc.push(sentence.to_string());
            } else if !doc.is_empty() {
                return Some(Ok(doc));
            }
        }
    }
}

/// How a corpus file lays out its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusFormat {
    /// BERT's: one sentence per line, a blank line between documents ([`documents`]).
    Sentences,
    /// Plain paragraphs; a heading (a paragraph of fewer than `heading_words` words) starts a
    /// document ([`paragraph_documents`]).
    Paragraphs { heading_words: usize },
}

/// A corpus file's documents, read lazily (only the current document is held).
pub type DocumentStream = Box<dyn Iterator<Item = Result<Document, DataError>> + Send>;

/// Opens `path` and reads its documents lazily in `format`.
pub fn stream_documents(path: &Path, format: CorpusFormat) -> Result<DocumentStream, DataError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| DataError::File {
        path: name.clone(),
        message: e.to_string(),
    })?;
    let reader = std::io::BufReader::new(file);
    Ok(match format {
        CorpusFormat::Sentences => Box::new(documents(reader, name)),
        CorpusFormat::Paragraphs { heading_words } => {
            Box::new(paragraph_documents(reader, name, heading_words))
        }
    })
}

/// A corpus file, its layout, and its split into training and held-out documents (HF
/// `run_mlm.py`'s `validation_split_percentage`).
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    pub path: std::path::PathBuf,
    pub format: CorpusFormat,
    /// Fraction of documents held out for evaluation.
    pub eval_fraction: f64,
    pub seed: u64,
}

impl Corpus {
    /// All documents, shuffled and split by the seed (`crate::tasks::split`). Fewer than
    /// 4 documents is an error: NSP draws its random B segments from other documents.
    pub fn documents(&self) -> Result<(Vec<Document>, Vec<Document>), DataError> {
        let docs = stream_documents(&self.path, self.format)?.collect::<Result<Vec<_>, _>>()?;
        if docs.len() < 4 {
            return Err(DataError::File {
                path: self.path.display().to_string(),
                message: format!(
                    "{} documents; pretraining needs at least 4 (blank lines separate documents)",
                    docs.len()
                ),
            });
        }
        crate::tasks::split(docs, self.eval_fraction, self.seed)
    }

    /// The training (`held_out = false`) or held-out documents, streamed: a document is held
    /// out by [`is_held_out`] of its index, so the two streams never meet and need no memory.
    pub fn stream(&self, held_out: bool) -> Result<DocumentStream, DataError> {
        let (fraction, seed) = (self.eval_fraction, self.seed);
        let docs = stream_documents(&self.path, self.format)?.enumerate();
        Ok(Box::new(
            docs.filter(move |(i, _)| is_held_out(*i, fraction, seed) == held_out)
                .map(|(_, d)| d),
        ))
    }
}

/// A split of a stream by document index (a stream cannot be shuffled and cut as HF's
/// `train_test_split` does): document `i` is held out when a hash of `(seed, i)` falls below
/// `fraction`, so about that fraction is, spread over the whole corpus, the same each time.
pub fn is_held_out(index: usize, fraction: f64, seed: u64) -> bool {
    // SplitMix64 of (seed, index): uniform in [0, 1).
    let mut z = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// Plain paragraphs (blank-line separated, lines wrapped) to documents of sentences.
/// Sentences end at `.`, `!` or `?` followed by white space; a short line of fewer than
/// `heading_words` words (a heading) starts a new document.
pub fn split_paragraphs(text: &str, heading_words: usize) -> Vec<Document> {
    paragraph_documents(text.as_bytes(), "text", heading_words)
        .collect::<Result<_, _>>()
        .expect("a &str is UTF-8 and reading it cannot fail")
}

/// [`split_paragraphs`] read lazily from `reader`: only the current paragraph and document are
/// held, for a corpus larger than memory. `name` names the input in errors.
pub fn paragraph_documents<R: BufRead>(
    reader: R,
    name: impl Into<String>,
    heading_words: usize,
) -> ParagraphDocuments<R> {
    ParagraphDocuments {
        lines: documents(reader, name),
        heading_words,
        doc: Document::new(),
    }
}

/// The iterator of [`paragraph_documents`]: [`documents`]' blank-line-separated groups of
/// lines are its paragraphs.
#[derive(Debug)]
pub struct ParagraphDocuments<R> {
    lines: DocumentReader<R>,
    heading_words: usize,
    doc: Document,
}

impl<R: BufRead> Iterator for ParagraphDocuments<R> {
    type Item = Result<Document, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let paragraph = match self.lines.next() {
                Some(Ok(lines)) => lines.join(" "),
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    let doc = std::mem::take(&mut self.doc);
                    return (!doc.is_empty()).then_some(Ok(doc));
                }
            };
            let paragraph = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
            if paragraph.split(' ').count() < self.heading_words {
                if !self.doc.is_empty() {
                    return Some(Ok(std::mem::take(&mut self.doc)));
                }
                continue;
            }
            self.doc.extend(sentences(&paragraph));
        }
    }
}

/// The sentences of a paragraph: each ends at `.`, `!` or `?` followed by a space or the end.
fn sentences(paragraph: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = paragraph.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if matches!(c, '.' | '!' | '?') && chars.get(k + 1).is_none_or(|&(_, n)| n == ' ') {
            let s = paragraph[start..i + c.len_utf8()].trim();
            if !s.is_empty() {
                out.push(s.to_string());
            }
            start = i + c.len_utf8();
        }
    }
    let rest = paragraph[start..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_become_documents_of_sentences() {
        let text = "Title\n\nFirst sentence here. Second one\nwraps here! Third?\n\nShort head\n\nNew doc starts now. And ends.";
        let docs = split_paragraphs(text, 3);
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0],
            ["First sentence here.", "Second one wraps here!", "Third?"]
        );
        assert_eq!(docs[1], ["New doc starts now.", "And ends."]);
    }

    #[test]
    fn held_out_documents_are_the_asked_fraction_and_fixed_by_seed() {
        let held: Vec<usize> = (0..20_000).filter(|&i| is_held_out(i, 0.05, 42)).collect();
        assert!((900..1100).contains(&held.len()), "{}", held.len());
        let again: Vec<usize> = (0..20_000).filter(|&i| is_held_out(i, 0.05, 42)).collect();
        assert_eq!(held, again);
        let other: Vec<usize> = (0..20_000).filter(|&i| is_held_out(i, 0.05, 43)).collect();
        assert_ne!(held, other);
        assert!(!(0..1000).any(|i| is_held_out(i, 0.0, 1)));
    }

    #[test]
    fn paragraphs_read_lazily_match_the_whole_text() {
        let text = "Title\n\nFirst sentence here. Second one\nwraps here! Third?\n\n\nShort head\n\nNew doc starts now. And ends.\n";
        let lazy: Vec<Document> = paragraph_documents(std::io::Cursor::new(text), "t", 3)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lazy, split_paragraphs(text, 3));
        assert_eq!(lazy.len(), 2);
    }
}
