//! Token classification data: CoNLL-2003 (space-separated columns, the NER tag last,
//! `-DOCSTART-` lines skipped) and two-column `token<TAB>tag` BIO files; a blank line ends a
//! sentence. Labels are aligned to word pieces as HF's `run_ner.py` does: the first piece of a
//! word gets the word's label, the other pieces -100 (or the label with `label_all_tokens`),
//! special tokens -100.

use std::collections::BTreeSet;
use std::path::Path;

use crate::DataError;
use crate::tasks::{decode_utf8, file_err, line_err, read_bytes};

/// One sentence: words and their tags.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedSentence {
    pub words: Vec<String>,
    pub tags: Vec<String>,
}

/// Reads CoNLL-2003 or two-column BIO. Every line of a file must have the same number of
/// columns (at least two).
pub fn read_conll(path: impl AsRef<Path>) -> Result<Vec<TaggedSentence>, DataError> {
    let path = path.as_ref();
    parse_conll(&read_bytes(path)?, &path.display().to_string())
}

/// [`read_conll`] on the bytes of a file; `name` names it in errors.
pub fn parse_conll(data: &[u8], name: &str) -> Result<Vec<TaggedSentence>, DataError> {
    let text = decode_utf8(data, name)?;
    let mut sentences = Vec::new();
    let mut current = TaggedSentence {
        words: vec![],
        tags: vec![],
    };
    let mut columns: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("-DOCSTART-") {
            if !current.words.is_empty() {
                sentences.push(std::mem::replace(
                    &mut current,
                    TaggedSentence {
                        words: vec![],
                        tags: vec![],
                    },
                ));
            }
            continue;
        }
        let fields: Vec<&str> = trimmed
            .split(['\t', ' '])
            .filter(|f| !f.is_empty())
            .collect();
        let expected = *columns.get_or_insert(fields.len());
        if fields.len() < 2 || fields.len() != expected {
            return Err(line_err(
                name,
                line_no,
                format!(
                    "ragged line: {} columns, expected {expected} (token … tag)",
                    fields.len()
                ),
            ));
        }
        current.words.push(fields[0].to_string());
        current.tags.push(fields[fields.len() - 1].to_string());
    }
    if !current.words.is_empty() {
        sentences.push(current);
    }
    if sentences.is_empty() {
        return Err(file_err(name, "no sentences"));
    }
    Ok(sentences)
}

/// Sorted tag names of the sentences (index = label id).
pub fn label_list(sentences: &[TaggedSentence]) -> Vec<String> {
    sentences
        .iter()
        .flat_map(|s| s.tags.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Labels per token from word ids (`None` for special tokens): first piece → label, later
/// pieces → -100 or, with `label_all_tokens`, the label too. Unknown tags are an error.
pub fn align_labels(
    word_ids: &[Option<u32>],
    tags: &[String],
    labels: &[String],
    label_all_tokens: bool,
) -> Result<Vec<i64>, DataError> {
    let mut out = Vec::with_capacity(word_ids.len());
    let mut previous = None;
    for w in word_ids {
        out.push(match w {
            None => -100,
            Some(w) => {
                let tag = tags.get(*w as usize).ok_or_else(|| {
                    DataError::Option(format!("word id {w} beyond {} tags", tags.len()))
                })?;
                let id = labels.iter().position(|l| l == tag).ok_or_else(|| {
                    DataError::Option(format!("unknown label `{tag}` (known: {labels:?})"))
                })? as i64;
                if previous == Some(*w) && !label_all_tokens {
                    -100
                } else {
                    id
                }
            }
        });
        previous = *w;
    }
    Ok(out)
}
