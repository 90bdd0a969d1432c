//! Sequence classification and regression data from CSV, TSV or JSONL: one text or a text
//! pair, and a label, in named (or, without a header, numbered) columns. Class names become ids
//! in sorted order (as HF's `run_glue.py`), kept as `id2label`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::DataError;
use crate::tasks::read_utf8;

/// A column by header name or by 0-based position.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Name(String),
    Index(usize),
}

impl From<&str> for Column {
    fn from(s: &str) -> Self {
        Column::Name(s.to_string())
    }
}

impl From<usize> for Column {
    fn from(i: usize) -> Self {
        Column::Index(i)
    }
}

/// Where the fields are.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationColumns {
    pub text: Column,
    pub text_pair: Option<Column>,
    pub label: Column,
    /// The first CSV/TSV row names the columns (JSONL always has names).
    pub has_header: bool,
    /// Labels are numbers to regress on, not class names.
    pub regression: bool,
}

/// A label: a class id or a regression target.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Class(usize),
    Value(f32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationExample {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: Label,
}

/// Examples and the class names (index = id; empty for regression).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationData {
    pub examples: Vec<ClassificationExample>,
    pub id2label: Vec<String>,
}

struct RawRow {
    line: usize,
    text: String,
    pair: Option<String>,
    label: String,
}

fn line_err(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Line {
        path: path.display().to_string(),
        line,
        message: message.into(),
    }
}

/// Reads CSV (`.csv`), TSV (`.tsv`, `.txt`) or JSONL (`.jsonl`, `.json`) by extension.
pub fn read_classification(
    path: impl AsRef<Path>,
    columns: &ClassificationColumns,
) -> Result<ClassificationData, DataError> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = read_utf8(path)?;
    let rows = match ext.as_str() {
        "jsonl" | "json" => jsonl_rows(path, &text, columns)?,
        "tsv" | "txt" => delimited_rows(path, &text, b'\t', columns)?,
        _ => delimited_rows(path, &text, b',', columns)?,
    };
    if rows.is_empty() {
        return Err(DataError::File {
            path: path.display().to_string(),
            message: "no examples".into(),
        });
    }
    let id2label: Vec<String> = if columns.regression {
        Vec::new()
    } else {
        rows.iter()
            .map(|r| r.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let examples = rows
        .into_iter()
        .map(|r| {
            let label = if columns.regression {
                Label::Value(r.label.trim().parse().map_err(|_| {
                    line_err(path, r.line, format!("label `{}` is not a number", r.label))
                })?)
            } else {
                Label::Class(id2label.binary_search(&r.label).expect("label collected"))
            };
            Ok(ClassificationExample {
                text: r.text,
                text_pair: r.pair,
                label,
            })
        })
        .collect::<Result<_, DataError>>()?;
    Ok(ClassificationData { examples, id2label })
}

fn delimited_rows(
    path: &Path,
    text: &str,
    delimiter: u8,
    c: &ClassificationColumns,
) -> Result<Vec<RawRow>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(c.has_header)
        .flexible(true)
        .quoting(delimiter == b',')
        .from_reader(text.as_bytes());
    let headers: Vec<String> = if c.has_header {
        reader
            .headers()
            .map_err(|e| line_err(path, 1, e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    let index = |col: &Column| -> Result<usize, DataError> {
        match col {
            Column::Index(i) => Ok(*i),
            Column::Name(n) => headers.iter().position(|h| h == n).ok_or_else(|| {
                line_err(
                    path,
                    1,
                    format!("no column `{n}`; the header has {headers:?}"),
                )
            }),
        }
    };
    let (ti, pi, li) = (
        index(&c.text)?,
        c.text_pair.as_ref().map(&index).transpose()?,
        index(&c.label)?,
    );
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            line_err(path, line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let field = |i: usize, what: &str| {
            record.get(i).map(str::to_string).ok_or_else(|| {
                line_err(
                    path,
                    line,
                    format!("no {what} column {i}: the row has {} fields", record.len()),
                )
            })
        };
        rows.push(RawRow {
            line,
            text: field(ti, "text")?,
            pair: pi.map(|i| field(i, "text pair")).transpose()?,
            label: field(li, "label")?,
        });
    }
    Ok(rows)
}

fn jsonl_rows(
    path: &Path,
    text: &str,
    c: &ClassificationColumns,
) -> Result<Vec<RawRow>, DataError> {
    let name = |col: &Column| match col {
        Column::Name(n) => Ok(n.clone()),
        Column::Index(_) => Err(DataError::Option(
            "JSONL columns are named, not numbered".into(),
        )),
    };
    let (tn, pn, ln) = (
        name(&c.text)?,
        c.text_pair.as_ref().map(name).transpose()?,
        name(&c.label)?,
    );
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l)
            .map_err(|e| line_err(path, line, format!("invalid JSON: {e}")))?;
        let get = |k: &str| -> Result<String, DataError> {
            match v.get(k) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Null) | None => {
                    Err(line_err(path, line, format!("no field `{k}`")))
                }
                Some(other) => Ok(other.to_string()),
            }
        };
        rows.push(RawRow {
            line,
            text: get(&tn)?,
            pair: pn.as_deref().map(get).transpose()?,
            label: get(&ln)?,
        });
    }
    Ok(rows)
}
