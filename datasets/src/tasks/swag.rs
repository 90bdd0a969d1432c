//! Multiple choice from SWAG-style CSV or JSONL: a context (`sent1`), the start of each ending
//! (`sent2`), `ending0..endingN`, and the index of the right ending (`label`). Each choice is
//! encoded as the pair (`sent1`, `sent2 + " " + ending_i`), as HF's `run_swag.py` does.

use std::path::Path;

use crate::DataError;
use crate::tasks::{Format, decode_utf8, file_err, line_err, read_bytes};

#[derive(Debug, Clone, PartialEq)]
pub struct MultipleChoiceExample {
    pub context: String,
    /// `sent2 + " " + ending_i` for each choice.
    pub choices: Vec<String>,
    pub label: usize,
}

/// Reads SWAG CSV (with header) or JSONL (by extension); every row needs `sent1`, `sent2`,
/// `ending0`…, and a `label` below the number of endings.
pub fn read_swag(path: impl AsRef<Path>) -> Result<Vec<MultipleChoiceExample>, DataError> {
    let path = path.as_ref();
    let format = match Format::from_path(path) {
        Format::Jsonl => Format::Jsonl,
        _ => Format::Csv,
    };
    parse_swag(&read_bytes(path)?, format, &path.display().to_string())
}

/// [`read_swag`] on the bytes of a file in `format` (CSV, TSV or JSONL); `name` names it in
/// errors.
pub fn parse_swag(
    data: &[u8],
    format: Format,
    name: &str,
) -> Result<Vec<MultipleChoiceExample>, DataError> {
    let delimiter = match format {
        Format::Csv => b',',
        Format::Tsv => b'\t',
        Format::Jsonl => 0,
        Format::Parquet => {
            return Err(DataError::Option(
                "SWAG is read from CSV, TSV or JSONL, not Parquet".into(),
            ));
        }
    };
    let text = decode_utf8(data, name)?;
    let jsonl = format == Format::Jsonl;
    let mut rows: Vec<(usize, std::collections::HashMap<String, String>)> = Vec::new();
    if jsonl {
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l)
                .map_err(|e| line_err(name, i + 1, format!("invalid JSON: {e}")))?;
            let row = v
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect();
            rows.push((i + 1, row));
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(delimiter == b',')
            // Every row as wide as the header: a ragged row is an error naming its line.
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| line_err(name, 1, e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        for record in reader.records() {
            let record = record.map_err(|e| {
                line_err(
                    name,
                    e.position().map_or(0, |p| p.line() as usize),
                    e.to_string(),
                )
            })?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            rows.push((
                line,
                headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_string))
                    .collect(),
            ));
        }
    }
    let mut out = Vec::new();
    for (line, row) in rows {
        let get = |k: &str| {
            row.get(k)
                .cloned()
                .ok_or_else(|| line_err(name, line, format!("no `{k}` column")))
        };
        let (sent1, sent2) = (get("sent1")?, get("sent2")?);
        let endings: Vec<String> = (0..)
            .map_while(|i| row.get(&format!("ending{i}")).cloned())
            .collect();
        if endings.len() < 2 {
            return Err(line_err(name, line, "needs at least ending0 and ending1"));
        }
        let label: usize = get("label")?
            .trim()
            .parse()
            .map_err(|_| line_err(name, line, "label is not a choice index"))?;
        if label >= endings.len() {
            return Err(line_err(
                name,
                line,
                format!("label {label} but only {} endings", endings.len()),
            ));
        }
        out.push(MultipleChoiceExample {
            context: sent1,
            choices: endings.iter().map(|e| format!("{sent2} {e}")).collect(),
            label,
        });
    }
    if out.is_empty() {
        return Err(file_err(name, "no examples"));
    }
    Ok(out)
}

/// Each example's context paired with each of its endings, tokenized (truncated as
/// `tokenizer` is). Every example needs the same number of endings; `name` (the file) names
/// the data in errors.
pub fn tokenize_choices(
    tokenizer: &crate::BertTokenizer,
    examples: &[MultipleChoiceExample],
    name: &str,
) -> Result<Vec<crate::collate::MultipleChoiceItem>, DataError> {
    let n = examples.first().map_or(0, |e| e.choices.len());
    if let Some(e) = examples.iter().find(|e| e.choices.len() != n) {
        return Err(crate::tasks::file_err(
            name,
            format!(
                "every item needs the same number of endings ({n}), one has {}: {:?}",
                e.choices.len(),
                e.context
            ),
        ));
    }
    let pairs: Vec<(&str, &str)> = examples
        .iter()
        .flat_map(|e| e.choices.iter().map(|c| (e.context.as_str(), c.as_str())))
        .collect();
    let encodings = tokenizer.encode_batch(pairs)?;
    Ok(examples
        .iter()
        .zip(encodings.chunks(n.max(1)))
        .map(|(e, enc)| crate::collate::MultipleChoiceItem {
            choices: enc
                .iter()
                .map(crate::collate::TokenizedText::from)
                .collect(),
            label: e.label,
        })
        .collect())
}
