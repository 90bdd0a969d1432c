//! The standard task formats: text classification / regression (CSV, TSV, JSONL), token
//! classification (CoNLL-2003, two-column BIO), extractive QA (SQuAD v1.1/v2.0).

pub mod classification;
pub mod conll;
pub mod squad;
pub mod swag;

use crate::DataError;

/// Reads a file as UTF-8 (a BOM is dropped), naming the line of the first invalid byte.
pub(crate) fn read_utf8(path: &std::path::Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        DataError::Line {
            path: path.display().to_string(),
            line: e.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            message: "invalid UTF-8".into(),
        }
    })?;
    let text = text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text);
    if text.trim().is_empty() {
        return Err(DataError::File {
            path: path.display().to_string(),
            message: "the file is empty".into(),
        });
    }
    Ok(text)
}
