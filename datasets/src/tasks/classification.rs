//! Sequence classification and regression data from CSV, TSV, JSONL or Parquet: one text or
//! a text pair, and a label, in named (or, without a header, numbered) columns. Class names
//! become ids in sorted order (as HF's `run_glue.py`), kept as `id2label`; a Parquet label
//! column that HF datasets saved as a `ClassLabel` keeps its ids and names.
//!
//! Already-tokenized rows (`input_ids`, optional `attention_mask` and `token_type_ids`, and a
//! label) from JSONL or Parquet are read by [`read_tokenized_classification`], no tokenizer
//! needed.

use std::collections::BTreeSet;
use std::path::Path;

use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;
use serde_json::{Map, Value};

use crate::collate::{ClassificationItem, TokenizedText};
pub use crate::tasks::Format;
use crate::tasks::{decode_utf8, file_err, line_err, read_bytes};
use crate::{BertTokenizer, DataError};

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
    /// The first CSV/TSV row names the columns (JSONL and Parquet always have names).
    pub has_header: bool,
    /// Labels are numbers to regress on, not class names.
    pub regression: bool,
}

impl ClassificationColumns {
    /// The fixtures' movie-review polarity sentences: `"label","text"`, no header.
    pub fn polarity() -> Self {
        Self {
            text: 1.into(),
            text_pair: None,
            label: 0.into(),
            has_header: false,
            regression: false,
        }
    }
}

/// A label: a class id, a regression target, or a multi-hot row (multi-label).
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Class(usize),
    Value(f32),
    MultiHot(Vec<f32>),
}

impl Label {
    /// The class id or target as a number (the first value of a multi-hot row).
    pub fn value(&self) -> f32 {
        match self {
            Label::Class(c) => *c as f32,
            Label::Value(v) => *v,
            Label::MultiHot(v) => v.first().copied().unwrap_or(0.0),
        }
    }
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

impl ClassificationData {
    /// The class names: `given` (comma-separated, in sorted label order, e.g.
    /// `negative,positive`) or the data's own. A count other than the data's is an error.
    pub fn label_names(&self, given: Option<&str>) -> Result<Vec<String>, DataError> {
        let Some(given) = given else {
            return Ok(self.id2label.clone());
        };
        let names: Vec<String> = given.split(',').map(|s| s.trim().to_string()).collect();
        if names.len() != self.id2label.len() {
            return Err(DataError::Option(format!(
                "{} label names {names:?} but the data has {} labels {:?}",
                names.len(),
                self.id2label.len(),
                self.id2label
            )));
        }
        Ok(names)
    }
}

/// Tokenized examples and the class names (index = id; empty for regression).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedClassificationData {
    pub items: Vec<ClassificationItem>,
    pub id2label: Vec<String>,
}

impl ClassificationData {
    /// The examples at `indices`, with the same class names.
    pub fn select(&self, indices: &[usize]) -> Self {
        Self {
            examples: indices.iter().map(|&i| self.examples[i].clone()).collect(),
            id2label: self.id2label.clone(),
        }
    }

    /// Renumbers the class ids onto `names` (the training data's), as HF's `run_glue.py` maps
    /// an evaluation set's labels through the training set's `label2id`. A class not in
    /// `names` is an error naming the data (`name`) and the label.
    pub fn align_labels(&mut self, names: &[String], name: &str) -> Result<(), DataError> {
        for e in &mut self.examples {
            if let Label::Class(c) = e.label {
                let label = &self.id2label[c];
                let id = names.iter().position(|n| n == label).ok_or_else(|| {
                    file_err(
                        name,
                        format!(
                            "label `{label}` does not occur in the training data (labels: {names:?})"
                        ),
                    )
                })?;
                e.label = Label::Class(id);
            }
        }
        self.id2label = names.to_vec();
        Ok(())
    }

    /// Multi-label data: each label field lists classes (a JSON array or comma-separated
    /// names) and becomes a multi-hot row over `names` (the training data's), or over the
    /// sorted names found here when `None`. A name outside given `names` is an error.
    pub fn to_multi_hot(&mut self, names: Option<&[String]>, name: &str) -> Result<(), DataError> {
        let sets: Vec<Vec<String>> = self
            .examples
            .iter()
            .map(|e| match &e.label {
                Label::Class(c) => label_set(&self.id2label[*c]),
                other => vec![other.value().to_string()],
            })
            .collect();
        let mut found: Vec<String> = sets.iter().flatten().cloned().collect();
        found.sort();
        found.dedup();
        let names = match names {
            Some(n) => {
                let unknown: Vec<&String> = found.iter().filter(|f| !n.contains(f)).collect();
                if !unknown.is_empty() {
                    return Err(file_err(
                        name,
                        format!("labels not in the training data: {unknown:?}"),
                    ));
                }
                n.to_vec()
            }
            None => found,
        };
        for (e, set) in self.examples.iter_mut().zip(&sets) {
            e.label = Label::MultiHot(
                names
                    .iter()
                    .map(|n| if set.contains(n) { 1.0 } else { 0.0 })
                    .collect(),
            );
        }
        self.id2label = names;
        Ok(())
    }

    /// Tokenized items (pairs when the examples have a second text), truncated as
    /// `tokenizer` is.
    pub fn tokenize(
        &self,
        tokenizer: &BertTokenizer,
    ) -> Result<Vec<ClassificationItem>, DataError> {
        let encodings = match self.examples.first().and_then(|e| e.text_pair.as_ref()) {
            Some(_) => tokenizer.encode_batch(
                self.examples
                    .iter()
                    .map(|e| (e.text.as_str(), e.text_pair.as_deref().unwrap_or_default()))
                    .collect(),
            )?,
            None => {
                tokenizer.encode_batch(self.examples.iter().map(|e| e.text.as_str()).collect())?
            }
        };
        Ok(encodings
            .iter()
            .zip(&self.examples)
            .map(|(enc, e)| ClassificationItem {
                text: enc.into(),
                label: e.label.clone(),
            })
            .collect())
    }
}

/// HF `run_glue.py`'s data: the training file and the validation file, or without one a
/// held-out `validation_split` of the training file (fixed by `seed`, [`train_test_split`]).
/// Single-label: the evaluation classes are renumbered onto the training classes, and fewer
/// than two classes is an error (one class would make a regression head). Multi-label: the
/// label fields become multi-hot rows over the training data's names.
///
/// [`train_test_split`]: crate::tasks::train_test_split
pub fn load_train_eval(
    train: &Path,
    validation: Option<&Path>,
    columns: &ClassificationColumns,
    problem_type: bert::ProblemType,
    validation_split: f64,
    seed: u64,
) -> Result<(ClassificationData, ClassificationData), DataError> {
    use bert::ProblemType::*;
    let train_name = train.display().to_string();
    let data = read_classification(train, columns)?;
    let (mut train_data, mut eval_data, eval_name) = match validation {
        Some(p) => (
            data,
            read_classification(p, columns)?,
            p.display().to_string(),
        ),
        None => {
            let (tr, ev) =
                crate::tasks::train_test_split(data.examples.len(), validation_split, seed)?;
            (data.select(&tr), data.select(&ev), train_name.clone())
        }
    };
    match problem_type {
        SingleLabelClassification => {
            if train_data.id2label.len() < 2 {
                return Err(file_err(
                    &train_name,
                    format!(
                        "{} class(es) {:?} in the training data: classification needs at least 2 (for numbers to regress on, ask for regression)",
                        train_data.id2label.len(),
                        train_data.id2label
                    ),
                ));
            }
            if validation.is_some() {
                eval_data.align_labels(&train_data.id2label.clone(), &eval_name)?;
            }
        }
        MultiLabelClassification => {
            train_data.to_multi_hot(None, &train_name)?;
            eval_data.to_multi_hot(Some(&train_data.id2label.clone()), &eval_name)?;
        }
        Regression => {}
    }
    Ok((train_data, eval_data))
}

/// Splits a multi-label field: a JSON array or comma-separated names.
pub fn label_set(field: &str) -> Vec<String> {
    let field = field.trim();
    if field.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<Value>>(field)
    {
        return v
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect();
    }
    field
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A row of a file, before its label has an id: its 1-based line, its text (raw: the text and
/// the optional pair; or tokenized) and its label as written.
struct Row<T> {
    line: usize,
    text: T,
    label: String,
}

/// A raw row's text and optional pair.
type RawRow = Row<(String, Option<String>)>;

/// Reads CSV (`.csv`), TSV (`.tsv`, `.txt`), JSONL (`.jsonl`, `.json`) or Parquet
/// (`.parquet`) by extension. For Parquet, the `line` of an error is the 1-based row.
pub fn read_classification(
    path: impl AsRef<Path>,
    columns: &ClassificationColumns,
) -> Result<ClassificationData, DataError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    match Format::from_path(path) {
        // Parquet is read from the file as needed, not loaded whole.
        Format::Parquet => classification_from_parquet(open(path)?, &name, columns),
        format => parse_classification(&read_bytes(path)?, format, &name, columns),
    }
}

/// [`read_classification`] on the bytes of a file in `format`; `name` names it in errors.
pub fn parse_classification(
    data: &[u8],
    format: Format,
    name: &str,
    columns: &ClassificationColumns,
) -> Result<ClassificationData, DataError> {
    let rows = match format {
        Format::Csv => delimited_rows(name, decode_utf8(data, name)?, b',', columns)?,
        Format::Tsv => delimited_rows(name, decode_utf8(data, name)?, b'\t', columns)?,
        Format::Jsonl => {
            let (tn, pn, ln) = (
                json_name(&columns.text)?,
                columns.text_pair.as_ref().map(json_name).transpose()?,
                json_name(&columns.label)?,
            );
            let mut rows = Vec::new();
            json_rows(name, decode_utf8(data, name)?, |row| {
                rows.push(row.raw(&tn, pn.as_deref(), &ln)?);
                Ok(())
            })?;
            rows
        }
        Format::Parquet => {
            let bytes = bytes::Bytes::copy_from_slice(data);
            return classification_from_parquet(bytes, name, columns);
        }
    };
    finish(name, rows, columns.regression, None)
}

fn open(path: &Path) -> Result<std::fs::File, DataError> {
    std::fs::File::open(path).map_err(|e| file_err(&path.display().to_string(), e.to_string()))
}

fn classification_from_parquet<R: ChunkReader + 'static>(
    reader: R,
    name: &str,
    c: &ClassificationColumns,
) -> Result<ClassificationData, DataError> {
    let mut wanted = vec![&c.text, &c.label];
    wanted.extend(&c.text_pair);
    let mut rows = Vec::new();
    let class_names = parquet_rows(name, reader, &wanted, &[], &c.label, |row, names| {
        let column =
            |col: &Column| names[wanted.iter().position(|w| *w == col).expect("asked")].clone();
        let pair = c.text_pair.as_ref().map(column);
        rows.push(row.raw(&column(&c.text), pair.as_deref(), &column(&c.label))?);
        Ok(())
    })?;
    finish(name, rows, c.regression, class_names)
}

/// A dataset of texts (raw or tokenized) with their labels, and the label names.
trait FromLabelled<T>: Sized {
    fn from_labelled(labelled: impl Iterator<Item = (T, Label)>, id2label: Vec<String>) -> Self;
}

impl FromLabelled<(String, Option<String>)> for ClassificationData {
    fn from_labelled(
        labelled: impl Iterator<Item = ((String, Option<String>), Label)>,
        id2label: Vec<String>,
    ) -> Self {
        let examples = labelled.map(|((text, text_pair), label)| ClassificationExample {
            text,
            text_pair,
            label,
        });
        Self {
            examples: examples.collect(),
            id2label,
        }
    }
}

impl FromLabelled<TokenizedText> for TokenizedClassificationData {
    fn from_labelled(
        labelled: impl Iterator<Item = (TokenizedText, Label)>,
        id2label: Vec<String>,
    ) -> Self {
        let items = labelled.map(|(text, label)| ClassificationItem { text, label });
        Self {
            items: items.collect(),
            id2label,
        }
    }
}

/// The texts of `rows` with their [`labels`]: class names sorted into ids (or the ids of HF
/// `ClassLabel` names), or numbers for regression; no rows is an error.
fn finish<T, D: FromLabelled<T>>(
    name: &str,
    rows: Vec<Row<T>>,
    regression: bool,
    class_names: Option<Vec<String>>,
) -> Result<D, DataError> {
    if rows.is_empty() {
        return Err(file_err(name, "no examples"));
    }
    let (labels, id2label) = labels(
        name,
        rows.iter().map(|r| (r.line, r.label.as_str())),
        regression,
        class_names,
    )?;
    let texts = rows.into_iter().map(|r| r.text);
    Ok(D::from_labelled(texts.zip(labels), id2label))
}

fn labels<'a>(
    name: &str,
    raw: impl Iterator<Item = (usize, &'a str)> + Clone,
    regression: bool,
    class_names: Option<Vec<String>>,
) -> Result<(Vec<Label>, Vec<String>), DataError> {
    if regression {
        let values = raw
            .map(|(line, l)| {
                l.trim()
                    .parse()
                    .map(Label::Value)
                    .map_err(|_| line_err(name, line, format!("label `{l}` is not a number")))
            })
            .collect::<Result<_, _>>()?;
        return Ok((values, Vec::new()));
    }
    if let Some(names) = class_names {
        let ids = raw
            .map(|(line, l)| {
                l.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < names.len())
                    .map(Label::Class)
                    .ok_or_else(|| {
                        line_err(
                            name,
                            line,
                            format!(
                                "label `{l}` is not a class id of the ClassLabel names {names:?} \
                                 (-1 marks an unlabelled split)"
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        return Ok((ids, names));
    }
    let id2label: Vec<String> = raw
        .clone()
        .map(|(_, l)| l.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids = raw
        .map(|(_, l)| {
            Label::Class(
                id2label
                    .binary_search_by(|n| n.as_str().cmp(l))
                    .expect("label collected"),
            )
        })
        .collect();
    Ok((ids, id2label))
}

fn delimited_rows(
    path: &str,
    text: &str,
    delimiter: u8,
    c: &ClassificationColumns,
) -> Result<Vec<RawRow>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(c.has_header)
        // Every row as wide as the header (or the first row): a ragged row is an error naming
        // its line, not fields silently dropped or missing.
        .flexible(false)
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
    let mut last = (1, 0);
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            let byte = e.position().map_or(0, |p| p.byte() as usize);
            if unclosed_quote(delimiter, &text[byte.min(text.len())..]) {
                return line_err(path, line, UNCLOSED);
            }
            let message = match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
                    "the row has {len} fields, the header (or first row) {expected_len}: a ragged row, or a field with an unquoted delimiter"
                ),
                _ => e.to_string(),
            };
            line_err(path, line, message)
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        last = (line, record.position().map_or(0, |p| p.byte() as usize));
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
            text: (
                field(ti, "text")?,
                pi.map(|i| field(i, "text pair")).transpose()?,
            ),
            label: field(li, "label")?,
        });
    }
    // A quote opened and never closed swallows the rest of the file into one field (the csv
    // reader does not complain when the row keeps its width): odd quotes to the end.
    if unclosed_quote(delimiter, &text[last.1.min(text.len())..]) {
        return Err(line_err(path, last.0, UNCLOSED));
    }
    Ok(rows)
}

const UNCLOSED: &str = "a quoted field is not closed before the end of the file";

/// Whether `rest` (from the start of a row to the end of a CSV file) ends inside a quoted
/// field: a field that starts with `"` and is never closed (`""` inside is an escaped quote; a
/// quote inside an unquoted field is a plain character, as the csv reader reads them).
fn unclosed_quote(delimiter: u8, rest: &str) -> bool {
    if delimiter != b',' {
        return false;
    }
    let (mut in_quotes, mut field_start) = (false, true);
    let mut bytes = rest.bytes().peekable();
    while let Some(b) = bytes.next() {
        if in_quotes {
            if b == b'"' {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                } else {
                    in_quotes = false;
                }
            }
            continue;
        }
        match b {
            b'"' if field_start => in_quotes = true,
            b',' | b'\n' | b'\r' => {
                field_start = true;
                continue;
            }
            _ => {}
        }
        field_start = false;
    }
    in_quotes
}

fn json_name(col: &Column) -> Result<String, DataError> {
    match col {
        Column::Name(n) => Ok(n.clone()),
        Column::Index(_) => Err(DataError::Option(
            "JSONL columns are named, not numbered".into(),
        )),
    }
}

/// Calls `f` with each non-blank line of JSONL as an object.
fn json_rows(
    name: &str,
    text: &str,
    mut f: impl FnMut(JsonRow<'_>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l)
            .map_err(|e| line_err(name, line, format!("invalid JSON: {e}")))?;
        let Value::Object(row) = v else {
            return Err(line_err(name, line, "not a JSON object"));
        };
        f(JsonRow {
            name,
            line,
            row: &row,
        })?;
    }
    Ok(())
}

/// A value for a message, cut short.
fn show(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A row of a JSONL or Parquet file as a JSON object, with where it stands (for messages).
#[derive(Clone, Copy)]
struct JsonRow<'a> {
    name: &'a str,
    /// 1-based line (JSONL) or row (Parquet).
    line: usize,
    row: &'a Map<String, Value>,
}

impl JsonRow<'_> {
    fn err(&self, message: impl Into<String>) -> DataError {
        line_err(self.name, self.line, message)
    }

    /// A field as text: strings as they are, numbers and booleans as JSON writes them.
    fn text(&self, k: &str) -> Result<String, DataError> {
        match self.row.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            None => Err(self.err(format!("no field `{k}`"))),
            Some(Value::Null) => Err(self.err(format!("field `{k}` is null"))),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
            Some(v) => Err(self.err(format!("field `{k}` is not text or a number: {}", show(v)))),
        }
    }

    /// A field as a list of non-negative integers below 2^32 (none when absent or null).
    fn ids(&self, k: &str) -> Result<Option<Vec<u32>>, DataError> {
        let v = match self.row.get(k) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        let Value::Array(items) = v else {
            return Err(self.err(format!("`{k}` is not a list of ids: {}", show(v))));
        };
        let id = |(i, x): (usize, &Value)| {
            let bad = |what: &str| self.err(format!("`{k}`[{i}] = {} {what}", show(x)));
            match x {
                Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => Err(bad("is negative")),
                Value::Number(n) if n.as_u64().is_some() => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("is too large for an id")),
                _ => Err(bad("is not an integer")),
            }
        };
        items
            .iter()
            .enumerate()
            .map(id)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn raw(&self, text: &str, pair: Option<&str>, label: &str) -> Result<RawRow, DataError> {
        Ok(RawRow {
            line: self.line,
            text: (self.text(text)?, pair.map(|p| self.text(p)).transpose()?),
            label: self.text(label)?,
        })
    }
}

/// Reads the `columns` (and those of `optional` that the file has) of a Parquet file row by
/// row, calling `f` with the row as a JSON object (numbered from 1) and the names of `columns`.
/// Returns the class names when HF datasets saved `label` as a `ClassLabel` (in the file's
/// `huggingface` metadata).
fn parquet_rows<R: ChunkReader + 'static>(
    name: &str,
    reader: R,
    columns: &[&Column],
    optional: &[&str],
    label: &Column,
    mut f: impl FnMut(JsonRow<'_>, &[String]) -> Result<(), DataError>,
) -> Result<Option<Vec<String>>, DataError> {
    let file_length = reader.len();
    let reader = guarded(|| SerializedFileReader::new(reader))
        .map_err(|e| file_err(name, format!("not a readable Parquet file: {e}")))?;
    // The `parquet` crate panics on column chunks with negative offsets or sizes.
    for (g, group) in reader.metadata().row_groups().iter().enumerate() {
        for c in group.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let size = c.compressed_size();
            if start < 0 || size < 0 || (start as u64).saturating_add(size as u64) > file_length {
                return Err(file_err(
                    name,
                    format!(
                        "corrupt Parquet metadata: column `{}` of row group {g} lies outside \
                         the file",
                        c.column_path()
                    ),
                ));
            }
        }
    }
    let meta = reader.metadata().file_metadata();
    let schema = meta.schema();
    let fields = schema.get_fields();
    let field_names: Vec<&str> = fields.iter().map(|t| t.name()).collect();
    let resolve = |col: &Column| -> Result<usize, DataError> {
        match col {
            Column::Name(n) => field_names.iter().position(|f| f == n),
            Column::Index(i) => Some(*i).filter(|&i| i < fields.len()),
        }
        .ok_or_else(|| {
            let what = match col {
                Column::Name(n) => format!("no column `{n}`"),
                Column::Index(i) => format!("no column {i}"),
            };
            file_err(name, format!("{what}; the file has {field_names:?}"))
        })
    };
    let indices = columns
        .iter()
        .map(|c| resolve(c))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = indices
        .iter()
        .map(|&i| field_names[i].to_string())
        .collect();
    let class_names = class_label_names(meta.key_value_metadata(), field_names[resolve(label)?]);
    let mut selected: Vec<usize> = indices.clone();
    selected.extend(
        optional
            .iter()
            .filter_map(|o| field_names.iter().position(|f| f == o)),
    );
    selected.sort_unstable();
    selected.dedup();
    let projection = Type::group_type_builder(schema.name())
        .with_fields(selected.iter().map(|&i| fields[i].clone()).collect())
        .build()
        .map_err(|e| file_err(name, format!("Parquet schema: {e}")))?;
    let mut rows = guarded(|| reader.get_row_iter(Some(projection)))
        .map_err(|e| file_err(name, format!("Parquet: {e}")))?;
    for line in 1.. {
        let Some(row) = guarded(|| rows.next().transpose())
            .map_err(|e| line_err(name, line, format!("Parquet: {e}")))?
        else {
            break;
        };
        let object: Map<String, Value> = row
            .get_column_iter()
            .map(|(k, v)| (k.clone(), field_json(v)))
            .collect();
        let row = JsonRow {
            name,
            line,
            row: &object,
        };
        f(row, &names)?;
    }
    Ok(class_names)
}

/// Calls into the `parquet` crate, a panic on corrupt data (it has some, see its `# Panics`
/// sections) becoming an error: with unwinding (Rust's default), not with `panic = "abort"`.
fn guarded<T>(call: impl FnOnce() -> parquet::errors::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("corrupt data (the decoder panicked: {message})"))
        }
    }
}

/// A Parquet value as JSON: numbers, strings, booleans, lists; other types (dates, decimals,
/// binary, …) as Parquet displays them.
fn field_json(f: &Field) -> Value {
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        // Through its shortest decimal form, so 0.1f32 stays 0.1.
        Field::Float(x) => x
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Field::Double(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        Field::ListInternal(l) => Value::Array(l.elements().iter().map(field_json).collect()),
        other => Value::String(other.to_string()),
    }
}

/// The names of a `ClassLabel` column from HF datasets' `huggingface` metadata
/// (`{"info": {"features": {column: {"_type": "ClassLabel", "names": [...]}}}}`).
fn class_label_names(
    metadata: Option<&Vec<parquet::file::metadata::KeyValue>>,
    column: &str,
) -> Option<Vec<String>> {
    let value = metadata?
        .iter()
        .find(|kv| kv.key == "huggingface")?
        .value
        .as_deref()?;
    let info: Value = serde_json::from_str(value).ok()?;
    let feature = info.get("info")?.get("features")?.get(column)?;
    if feature.get("_type")?.as_str()? != "ClassLabel" {
        return None;
    }
    feature
        .get("names")?
        .as_array()?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// Reads already-tokenized rows from JSONL or Parquet (by extension): `input_ids` (a list of
/// ids), optional `attention_mask` (ones then zeros: padding on the right is dropped) and
/// `token_type_ids` (zeros when absent), and a label in `label_column` (class names or ids
/// sorted into ids as by [`read_classification`], or numbers with `regression`).
pub fn read_tokenized_classification(
    path: impl AsRef<Path>,
    label_column: &str,
    regression: bool,
) -> Result<TokenizedClassificationData, DataError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    match Format::from_path(path) {
        Format::Parquet => tokenized_from_parquet(open(path)?, &name, label_column, regression),
        format => parse_tokenized_classification(
            &read_bytes(path)?,
            format,
            &name,
            label_column,
            regression,
        ),
    }
}

/// [`read_tokenized_classification`] on the bytes of a file in `format` (JSONL or Parquet);
/// `name` names it in errors.
pub fn parse_tokenized_classification(
    data: &[u8],
    format: Format,
    name: &str,
    label_column: &str,
    regression: bool,
) -> Result<TokenizedClassificationData, DataError> {
    match format {
        Format::Jsonl => {
            let mut rows = Vec::new();
            json_rows(name, decode_utf8(data, name)?, |row| {
                rows.push(tokenized_row(row, label_column)?);
                Ok(())
            })?;
            finish(name, rows, regression, None)
        }
        Format::Parquet => tokenized_from_parquet(
            bytes::Bytes::copy_from_slice(data),
            name,
            label_column,
            regression,
        ),
        Format::Csv | Format::Tsv => Err(DataError::Option(format!(
            "{name}: tokenized rows are read from JSONL or Parquet, not {format:?}"
        ))),
    }
}

fn tokenized_from_parquet<R: ChunkReader + 'static>(
    reader: R,
    name: &str,
    label_column: &str,
    regression: bool,
) -> Result<TokenizedClassificationData, DataError> {
    let wanted_refs = [&Column::from("input_ids"), &Column::from(label_column)];
    let mut rows = Vec::new();
    let class_names = parquet_rows(
        name,
        reader,
        &wanted_refs,
        &["attention_mask", "token_type_ids"],
        wanted_refs[1],
        |row, _| {
            rows.push(tokenized_row(row, label_column)?);
            Ok(())
        },
    )?;
    finish(name, rows, regression, class_names)
}

type TokenizedRow = Row<TokenizedText>;

fn tokenized_row(row: JsonRow<'_>, label_column: &str) -> Result<TokenizedRow, DataError> {
    let mut input_ids = (row.ids("input_ids")?).ok_or_else(|| row.err("no field `input_ids`"))?;
    let same_length = |k: &str, v: &[u32], n: usize| match v.len() == n {
        true => Ok(()),
        false => Err(row.err(format!("`{k}` has {} entries, `input_ids` {n}", v.len()))),
    };
    let mut token_type_ids = match row.ids("token_type_ids")? {
        Some(t) => {
            same_length("token_type_ids", &t, input_ids.len())?;
            t
        }
        None => vec![0; input_ids.len()],
    };
    if let Some(mask) = row.ids("attention_mask")? {
        same_length("attention_mask", &mask, input_ids.len())?;
        if let Some(i) = mask.iter().position(|&m| m > 1) {
            let message = format!("`attention_mask`[{i}] = {} is not 0 or 1", mask[i]);
            return Err(row.err(message));
        }
        let n = mask.iter().take_while(|&&m| m == 1).count();
        if mask[n..].contains(&1) {
            return Err(
                row.err("`attention_mask` is not ones then zeros (only right padding is dropped)")
            );
        }
        input_ids.truncate(n);
        token_type_ids.truncate(n);
    }
    if input_ids.is_empty() {
        return Err(row.err("no tokens (`input_ids` is empty or all padding)"));
    }
    Ok(TokenizedRow {
        line: row.line,
        text: TokenizedText {
            input_ids,
            token_type_ids,
        },
        label: row.text(label_column)?,
    })
}
