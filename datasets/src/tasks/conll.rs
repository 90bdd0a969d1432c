//! Token classification data: CoNLL-2003 (space-separated columns, the NER tag last,
//! `-DOCSTART-` lines skipped) and two-column `token<TAB>tag` BIO files; a blank line ends a
//! sentence. Labels are aligned to word pieces as HF's `run_ner.py` does: the first piece of a
//! word gets the word's label, the other pieces -100 (or the label with `label_all_tokens`),
//! special tokens -100.

use std::collections::BTreeSet;
use std::path::Path;

use crate::collate::TokenClassificationItem;
use crate::tasks::{decode_utf8, file_err, line_err, read_bytes};
use crate::{BertTokenizer, DataError};

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

/// [`label_list`] completed with both the B- and the I- tag of every entity type (an
/// evaluation set may hold a tag the training set lacks), sorted.
pub fn bio_label_list(sentences: &[TaggedSentence]) -> Vec<String> {
    let mut labels = label_list(sentences);
    let types: Vec<String> = labels
        .iter()
        .filter_map(|l| l.split_once('-').map(|(_, t)| t.to_string()))
        .collect();
    for t in types {
        for p in ["B", "I"] {
            let tag = format!("{p}-{t}");
            if !labels.contains(&tag) {
                labels.push(tag);
            }
        }
    }
    labels.sort();
    labels
}

/// HF `run_ner.py`'s `tokenize_and_align_labels`: the sentences' words tokenized (truncated as
/// `tokenizer` is) with their tags aligned to the pieces ([`align_labels`]). `name` (the file)
/// names the data in errors.
pub fn tokenize_and_align_labels(
    tokenizer: &BertTokenizer,
    sentences: &[TaggedSentence],
    labels: &[String],
    label_all_tokens: bool,
    name: &str,
) -> Result<Vec<TokenClassificationItem>, DataError> {
    let words: Vec<Vec<&str>> = sentences
        .iter()
        .map(|s| s.words.iter().map(String::as_str).collect())
        .collect();
    let encodings = tokenizer.encode_batch(words)?;
    encodings
        .iter()
        .zip(sentences)
        .map(|(e, s)| {
            let labels = align_labels(e.get_word_ids(), &s.tags, labels, label_all_tokens)
                .map_err(|err| file_err(name, err.to_string()))?;
            Ok(TokenClassificationItem {
                text: e.into(),
                labels,
            })
        })
        .collect()
}

/// A word of a tagged text, with its character span.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaggedWord {
    pub word: String,
    pub tag: String,
    pub start: usize,
    pub end: usize,
}

/// An entity: a B-/I- run of words, its type and character span.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entity {
    pub entity: String,
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// HF's token-classification pipeline with `aggregation_strategy="first"`: each word (the
/// tokens of one word id) takes its first piece's predicted tag; the words' BIO tags group into
/// entities. `tags[i]` is token `i`'s predicted tag name; spans are in characters of `text`.
pub fn group_words(
    text: &str,
    encoding: &tokenizers::Encoding,
    tags: &[String],
) -> (Vec<TaggedWord>, Vec<Entity>) {
    let chars: Vec<char> = text.chars().collect();
    let span = |a: usize, z: usize| {
        chars[a.min(z)..z.min(chars.len())]
            .iter()
            .collect::<String>()
    };
    let mut words: Vec<TaggedWord> = Vec::new();
    let mut last = None;
    for (i, w) in encoding.get_word_ids().iter().enumerate() {
        let Some(w) = w else { continue };
        let (a, z) = encoding.get_offsets()[i];
        match words.last_mut() {
            Some(word) if last == Some(*w) => {
                word.end = z;
                word.word = span(word.start, z);
            }
            _ => words.push(TaggedWord {
                word: span(a, z),
                tag: tags.get(i).cloned().unwrap_or_else(|| "O".into()),
                start: a,
                end: z,
            }),
        }
        last = Some(*w);
    }
    let word_tags: Vec<&str> = words.iter().map(|w| w.tag.as_str()).collect();
    let entities = crate::metrics::bio_entities(&word_tags)
        .into_iter()
        .map(|(ty, s, e)| Entity {
            entity: ty,
            word: span(words[s].start, words[e - 1].end),
            start: words[s].start,
            end: words[e - 1].end,
        })
        .collect();
    (words, entities)
}
