//! Corpora for pretraining: documents as lists of sentences.

use std::path::Path;

use crate::DataError;

/// One document: its sentences, in order.
pub type Document = Vec<String>;

/// BERT's input format: one sentence per line, a blank line between documents.
pub fn read_documents(path: impl AsRef<Path>) -> Result<Vec<Document>, DataError> {
    let path = path.as_ref();
    let text = crate::tasks::read_utf8(path)?;
    let mut docs = vec![Document::new()];
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !docs.last().is_some_and(Vec::is_empty) {
                docs.push(Document::new());
            }
        } else {
            docs.last_mut()
                .expect("one document")
                .push(line.to_string());
        }
    }
    docs.retain(|d| !d.is_empty());
    if docs.is_empty() {
        return Err(DataError::File {
            path: path.display().to_string(),
            message: "no sentences (the file is empty)".into(),
        });
    }
    Ok(docs)
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
