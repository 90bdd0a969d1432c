//! Extractive QA from SQuAD v1.1 / v2.0 JSON. Long contexts are split into windows of
//! `max_length` tokens overlapping by `doc_stride`, as HF's `run_qa.py` prepares training
//! features: the answer's character span is mapped to start/end tokens through the offsets,
//! and a window that does not hold the whole answer (or an unanswerable question) points at
//! `[CLS]` (index 0).

use std::path::Path;

use serde::Deserialize;
use tokenizers::{Encoding, PostProcessor, TruncationStrategy};

use crate::tasks::{decode_utf8, file_err, read_bytes};
use crate::{BertTokenizer, DataError};

/// One question over one context.
#[derive(Debug, Clone, PartialEq)]
pub struct SquadExample {
    pub id: String,
    pub question: String,
    pub context: String,
    /// `(text, start)` with `start` in characters of `context`.
    pub answers: Vec<(String, usize)>,
    pub is_impossible: bool,
}

#[derive(Deserialize)]
struct File {
    data: Vec<Article>,
}
#[derive(Deserialize)]
struct Article {
    paragraphs: Vec<Paragraph>,
}
#[derive(Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Qa>,
}
#[derive(Deserialize)]
struct Qa {
    id: String,
    question: String,
    #[serde(default)]
    answers: Vec<Answer>,
    #[serde(default)]
    is_impossible: bool,
}
#[derive(Deserialize)]
struct Answer {
    text: String,
    answer_start: usize,
}

/// Reads a SQuAD JSON file; every answer must lie inside its context.
pub fn read_squad(path: impl AsRef<Path>) -> Result<Vec<SquadExample>, DataError> {
    let path = path.as_ref();
    parse_squad(&read_bytes(path)?, &path.display().to_string())
}

/// [`read_squad`] on the bytes of a file; `name` names it in errors.
pub fn parse_squad(data: &[u8], name: &str) -> Result<Vec<SquadExample>, DataError> {
    let text = decode_utf8(data, name)?;
    let file: File = serde_json::from_str(text).map_err(|e| DataError::Line {
        path: name.to_string(),
        line: e.line(),
        message: format!("not SQuAD JSON: {e}"),
    })?;
    let mut out = Vec::new();
    for p in file.data.into_iter().flat_map(|a| a.paragraphs) {
        let chars: Vec<char> = p.context.chars().collect();
        for qa in p.qas {
            for a in &qa.answers {
                // `checked_add`: an absurd `answer_start` is an error, not an overflow.
                let found: Option<String> = a
                    .answer_start
                    .checked_add(a.text.chars().count())
                    .and_then(|end| chars.get(a.answer_start..end))
                    .map(|s| s.iter().collect());
                if found.as_deref() != Some(a.text.as_str()) {
                    let found = found.unwrap_or_default();
                    return Err(file_err(
                        name,
                        format!(
                            "question {}: answer {:?} is not at character {} of its context (found {found:?})",
                            qa.id, a.text, a.answer_start
                        ),
                    ));
                }
            }
            out.push(SquadExample {
                id: qa.id,
                question: qa.question,
                context: p.context.clone(),
                answers: qa
                    .answers
                    .into_iter()
                    .map(|a| (a.text, a.answer_start))
                    .collect(),
                is_impossible: qa.is_impossible,
            });
        }
    }
    if out.is_empty() {
        return Err(file_err(name, "no questions"));
    }
    Ok(out)
}

/// One window of one example, ready for `BertForQuestionAnswering`.
#[derive(Debug, Clone)]
pub struct SquadFeature {
    pub example_index: usize,
    pub encoding: Encoding,
    /// Token indices of the answer; 0 (`[CLS]`) when the window does not hold it.
    pub start_position: usize,
    pub end_position: usize,
}

/// Windows of `max_length` tokens (`[CLS] question [SEP] context [SEP]`), `doc_stride` tokens
/// of context shared between neighbours; the first answer is the training target.
pub fn prepare_features(
    tokenizer: &BertTokenizer,
    examples: &[SquadExample],
    max_length: usize,
    doc_stride: usize,
) -> Result<Vec<SquadFeature>, DataError> {
    let specials = tokenizer
        .inner
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(true));
    if max_length <= specials + doc_stride {
        return Err(DataError::Option(format!(
            "max_length {max_length} leaves no context beyond doc_stride {doc_stride} \
             ({specials} special tokens)"
        )));
    }
    let tok = tokenizer.clone().with_truncation(
        max_length,
        TruncationStrategy::OnlySecond,
        doc_stride,
    )?;
    let mut plain = tokenizer.inner.clone();
    plain.with_padding(None);
    plain
        .with_truncation(None)
        .map_err(|e| DataError::Tokenizer(e.to_string()))?;
    let length = |text: &str| {
        plain
            .encode(text, false)
            .map(|e| e.len())
            .map_err(|e| DataError::Tokenizer(e.to_string()))
    };
    let mut features = Vec::new();
    for (example_index, ex) in examples.iter().enumerate() {
        // `tokenizers` panics when the context must be cut into windows of at most
        // `doc_stride` tokens: a long question leaves too little room.
        let question = length(&ex.question)?;
        let room = max_length.saturating_sub(specials + question);
        if room <= doc_stride && specials + question + length(&ex.context)? > max_length {
            return Err(DataError::Option(format!(
                "question {}: its {question} tokens leave {room} of max_length {max_length} \
                 for the context, not more than doc_stride {doc_stride}; raise max_length or \
                 lower doc_stride",
                ex.id
            )));
        }
        let first = tok.encode_pair(&ex.question, &ex.context)?;
        let mut windows = vec![first.clone()];
        windows.extend(first.get_overflowing().iter().cloned());
        for mut encoding in windows {
            encoding.get_overflowing_mut().clear();
            let (start_position, end_position) =
                match ex.answers.first().filter(|_| !ex.is_impossible) {
                    Some((text, start)) => {
                        answer_tokens(&encoding, *start, start + text.chars().count())
                    }
                    None => (0, 0),
                };
            features.push(SquadFeature {
                example_index,
                encoding,
                start_position,
                end_position,
            });
        }
    }
    Ok(features)
}

/// HF's mapping of a character span `[start, end)` of the context to token indices, or
/// `(0, 0)` when the window does not contain it.
fn answer_tokens(e: &Encoding, start: usize, end: usize) -> (usize, usize) {
    let seq = e.get_sequence_ids();
    let offsets = e.get_offsets();
    let Some(first) = seq.iter().position(|s| *s == Some(1)) else {
        return (0, 0);
    };
    let last = seq
        .iter()
        .rposition(|s| *s == Some(1))
        .expect("a context token");
    if !(offsets[first].0 <= start && offsets[last].1 >= end) {
        return (0, 0);
    }
    let mut s = first;
    while s <= last && offsets[s].0 <= start {
        s += 1;
    }
    let mut t = last;
    while t >= first && offsets[t].1 >= end {
        t -= 1;
    }
    (s - 1, t + 1)
}

/// The context text between the start and end tokens of a feature (character offsets).
pub fn span_text(
    example: &SquadExample,
    feature: &SquadFeature,
    start: usize,
    end: usize,
) -> String {
    let offsets = feature.encoding.get_offsets();
    let (a, b) = (offsets[start].0, offsets[end].1);
    example
        .context
        .chars()
        .skip(a)
        .take(b.saturating_sub(a))
        .collect()
}

/// A candidate answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerCandidate {
    pub text: String,
    pub score: f32,
}

/// HF's `postprocess_qa_predictions` for one example: over all its windows, the `n_best`
/// highest start and end logits form spans inside the context, no longer than
/// `max_answer_length` tokens; the best by `start + end` wins. With `version_2`, the empty
/// answer wins when the `[CLS]` score (the lowest over windows) beats the best span.
/// `logits[i]` are the `(start_logits, end_logits)` of `features[i]`.
pub fn best_answer(
    example: &SquadExample,
    features: &[&SquadFeature],
    logits: &[(Vec<f32>, Vec<f32>)],
    n_best: usize,
    max_answer_length: usize,
    version_2: bool,
) -> AnswerCandidate {
    let top = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        idx.truncate(n_best);
        idx
    };
    let mut best: Option<AnswerCandidate> = None;
    let mut null_score = f32::INFINITY;
    for (f, (start, end)) in features.iter().zip(logits) {
        null_score = null_score.min(start[0] + end[0]);
        let seq = f.encoding.get_sequence_ids();
        for &s in &top(start) {
            for &e in &top(end) {
                let in_context = |i: usize| seq.get(i).copied().flatten() == Some(1);
                if !in_context(s) || !in_context(e) || e < s || e - s + 1 > max_answer_length {
                    continue;
                }
                let score = start[s] + end[e];
                if best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(AnswerCandidate {
                        text: span_text(example, f, s, e),
                        score,
                    });
                }
            }
        }
    }
    match best {
        Some(b) if !(version_2 && null_score > b.score) => b,
        _ => AnswerCandidate {
            text: String::new(),
            score: null_score,
        },
    }
}

/// The n-best post-processing options of HF's `postprocess_qa_predictions`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Postprocess {
    /// Start and end logits considered per window.
    pub n_best_size: usize,
    /// Longest answer in tokens.
    pub max_answer_length: usize,
    /// SQuAD v2: the empty answer may win.
    pub version_2_with_negative: bool,
}

impl Default for Postprocess {
    /// HF's `run_qa.py`: 20, 30, v1.
    fn default() -> Self {
        Self {
            n_best_size: 20,
            max_answer_length: 30,
            version_2_with_negative: false,
        }
    }
}

/// HF's `postprocess_qa_predictions`: the best answer of every example over all its windows.
/// `logits[i]` are the `(start_logits, end_logits)` of `features[i]`, trimmed to its tokens.
pub fn postprocess_qa_predictions(
    examples: &[SquadExample],
    features: &[SquadFeature],
    logits: &[(Vec<f32>, Vec<f32>)],
    p: &Postprocess,
) -> Vec<AnswerCandidate> {
    let mut by_example: Vec<Vec<usize>> = vec![Vec::new(); examples.len()];
    for (i, f) in features.iter().enumerate() {
        if let Some(v) = by_example.get_mut(f.example_index) {
            v.push(i);
        }
    }
    examples
        .iter()
        .zip(by_example)
        .map(|(example, idx)| {
            let feats: Vec<&SquadFeature> = idx.iter().map(|&i| &features[i]).collect();
            let l: Vec<_> = idx.iter().map(|&i| logits[i].clone()).collect();
            best_answer(
                example,
                &feats,
                &l,
                p.n_best_size,
                p.max_answer_length,
                p.version_2_with_negative,
            )
        })
        .collect()
}
