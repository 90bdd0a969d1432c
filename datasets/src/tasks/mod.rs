//! The standard task formats: text classification / regression (CSV, TSV, JSONL, Parquet),
//! token classification (CoNLL-2003, two-column BIO), extractive QA (SQuAD v1.1/v2.0).
//!
//! Every reader taking a path has a `parse_*` twin taking the bytes and a display name (used
//! in errors), for data that is not in a file and for fuzzing (`datasets/fuzz`).

pub mod classification;
pub mod conll;
pub mod squad;
pub mod swag;

use std::path::Path;

use crate::DataError;

/// A table format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated, quoted fields.
    Csv,
    /// Tab-separated, no quoting.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet (the files HF datasets ship).
    Parquet,
}

impl Format {
    /// By extension: `.jsonl`/`.json` → JSONL, `.tsv`/`.txt` → TSV, `.parquet` → Parquet,
    /// anything else CSV.
    pub fn from_path(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "json" => Format::Jsonl,
            "tsv" | "txt" => Format::Tsv,
            "parquet" => Format::Parquet,
            _ => Format::Csv,
        }
    }
}

/// The bytes of a file, a read failure naming it.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Bytes as UTF-8 (a BOM is dropped), naming the line of the first invalid byte; empty or
/// blank input is an error.
pub(crate) fn decode_utf8<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DataError::Line {
        path: name.to_string(),
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
        message: "invalid UTF-8".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(file_err(name, "the file is empty"));
    }
    Ok(text)
}

pub(crate) fn line_err(name: &str, line: usize, message: impl Into<String>) -> DataError {
    DataError::Line {
        path: name.to_string(),
        line,
        message: message.into(),
    }
}

pub(crate) fn file_err(name: &str, message: impl Into<String>) -> DataError {
    DataError::File {
        path: name.to_string(),
        message: message.into(),
    }
}
