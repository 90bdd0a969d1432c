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

/// Plain paragraphs (blank-line separated, lines wrapped) to documents of sentences.
/// Sentences end at `.`, `!` or `?` followed by white space; a short line of fewer than
/// `heading_words` words (a heading) starts a new document.
pub fn split_paragraphs(text: &str, heading_words: usize) -> Vec<Document> {
    let mut docs: Vec<Document> = vec![Vec::new()];
    for paragraph in text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
    {
        if paragraph.is_empty() {
            continue;
        }
        if paragraph.split(' ').count() < heading_words {
            if !docs.last().is_some_and(Vec::is_empty) {
                docs.push(Vec::new());
            }
            continue;
        }
        let doc = docs.last_mut().expect("one document");
        let mut start = 0;
        let chars: Vec<(usize, char)> = paragraph.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            let ends =
                matches!(c, '.' | '!' | '?') && chars.get(k + 1).is_none_or(|&(_, n)| n == ' ');
            if ends {
                let s = paragraph[start..i + c.len_utf8()].trim();
                if !s.is_empty() {
                    doc.push(s.to_string());
                }
                start = i + c.len_utf8();
            }
        }
        let rest = paragraph[start..].trim();
        if !rest.is_empty() {
            doc.push(rest.to_string());
        }
    }
    docs.retain(|d| !d.is_empty());
    docs
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
}
