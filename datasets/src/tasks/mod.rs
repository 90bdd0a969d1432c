//! The standard task formats: text classification / regression (CSV, TSV, JSONL, Parquet),
//! token classification (CoNLL-2003, two-column BIO), extractive QA (SQuAD v1.1/v2.0).
//!
//! Every reader taking a path has a `parse_*` twin taking the bytes and a display name (used
//! in errors), for data that is not in a file and for fuzzing (`datasets/fuzz`).

pub mod classification;
pub mod conll;
pub mod squad;
pub mod swag;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::DataError;

/// A fixed split of `n` items, HF's `train_test_split`: `(train, test)` indices, a
/// `test_fraction` of them (in (0, 1)) shuffled out by `seed`. Both lists stay in the shuffled
/// order, so that the first N training items (`--max-train-samples N`, HF's
/// `select(range(N))`) are a random subset even of a file sorted by label.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::Option(format!(
            "the held-out fraction is {test_fraction}; it must be in (0, 1)"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_test = ((n as f64) * test_fraction).round() as usize;
    let train = order.split_off(n_test);
    Ok((train, order))
}

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

/// `items` split by [`train_test_split`]: `(train, test)`, each in the shuffled order.
pub fn split<T>(
    items: Vec<T>,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<T>, Vec<T>), DataError> {
    let (train, test) = train_test_split(items.len(), test_fraction, seed)?;
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let mut take = |idx: Vec<usize>| -> Vec<T> {
        idx.into_iter()
            .map(|i| slots[i].take().expect("each index once"))
            .collect()
    };
    let test = take(test);
    Ok((take(train), test))
}

/// The training file's items and the evaluation items with the file they come from: those of
/// the validation file, or without one a held-out `validation_split` of the training file
/// ([`split`] by `seed`), as HF's example scripts make their `validation` split.
pub fn train_and_validation<T>(
    train: &Path,
    validation: Option<&Path>,
    read: impl Fn(&Path) -> Result<Vec<T>, DataError>,
    validation_split: f64,
    seed: u64,
) -> Result<(Vec<T>, Vec<T>, PathBuf), DataError> {
    let items = read(train)?;
    Ok(match validation {
        Some(p) => (items, read(p)?, p.to_path_buf()),
        None => {
            let (train_items, eval) = split(items, validation_split, seed)?;
            (train_items, eval, train.to_path_buf())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::train_test_split;

    #[test]
    fn split_is_fixed_disjoint_and_keeps_the_shuffled_order() {
        let (train, eval) = train_test_split(4000, 0.2, 42).unwrap();
        assert_eq!((train.len(), eval.len()), (3200, 800));
        let mut all: Vec<usize> = train.iter().chain(&eval).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..4000).collect::<Vec<_>>());
        assert_eq!(
            (train.clone(), eval.clone()),
            train_test_split(4000, 0.2, 42).unwrap()
        );
        // A file sorted by label (2000 of each, as the polarity sentences): the first 24
        // training items hold both halves.
        let first = &train[..24];
        assert!(first.iter().any(|&i| i < 2000) && first.iter().any(|&i| i >= 2000));
    }

    #[test]
    fn a_fraction_outside_0_1_is_refused() {
        for f in [0.0, 1.0, 1.5, -0.2, f64::NAN] {
            let e = train_test_split(10, f, 0).unwrap_err().to_string();
            assert!(e.contains("must be in (0, 1)"), "{f}: {e}");
        }
    }
}
