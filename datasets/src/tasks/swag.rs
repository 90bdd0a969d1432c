//! Multiple choice from SWAG-style CSV or JSONL: a context (`sent1`), the start of each ending
//! (`sent2`), `ending0..endingN`, and the index of the right ending (`label`). Each choice is
//! encoded as the pair (`sent1`, `sent2 + " " + ending_i`), as HF's `run_swag.py` does.

use std::path::Path;

use crate::DataError;
use crate::tasks::read_utf8;

#[derive(Debug, Clone, PartialEq)]
pub struct MultipleChoiceExample {
    pub context: String,
    /// `sent2 + " " + ending_i` for each choice.
    pub choices: Vec<String>,
    pub label: usize,
}

fn line_err(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Line {
        path: path.display().to_string(),
        line,
        message: message.into(),
    }
}

/// Reads SWAG CSV (with header) or JSONL (by extension); every row needs `sent1`, `sent2`,
/// `ending0`…, and a `label` below the number of endings.
pub fn read_swag(path: impl AsRef<Path>) -> Result<Vec<MultipleChoiceExample>, DataError> {
    let path = path.as_ref();
    let text = read_utf8(path)?;
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let mut rows: Vec<(usize, std::collections::HashMap<String, String>)> = Vec::new();
    if jsonl {
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l)
                .map_err(|e| line_err(path, i + 1, format!("invalid JSON: {e}")))?;
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
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| line_err(path, 1, e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        for record in reader.records() {
            let record = record.map_err(|e| {
                line_err(
                    path,
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
                .ok_or_else(|| line_err(path, line, format!("no `{k}` column")))
        };
        let (sent1, sent2) = (get("sent1")?, get("sent2")?);
        let endings: Vec<String> = (0..)
            .map_while(|i| row.get(&format!("ending{i}")).cloned())
            .collect();
        if endings.len() < 2 {
            return Err(line_err(path, line, "needs at least ending0 and ending1"));
        }
        let label: usize = get("label")?
            .trim()
            .parse()
            .map_err(|_| line_err(path, line, "label is not a choice index"))?;
        if label >= endings.len() {
            return Err(line_err(
                path,
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
        return Err(DataError::File {
            path: path.display().to_string(),
            message: "no examples".into(),
        });
    }
    Ok(out)
}
