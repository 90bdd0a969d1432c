#![no_main]

//! Parquet bytes (decoded by the `parquet` crate) into classification rows and tokenized rows.
//! The reader turns the `parquet` crate's panics on corrupt data into errors (`catch_unwind`);
//! libfuzzer-sys's abort-on-panic hook is replaced so those count as handled, each distinct
//! panic site printed once (`caught panic at …`). A panic escaping the reader still aborts.

use std::collections::HashSet;
use std::sync::Mutex;

use bert_datasets::tasks::Format;
use bert_datasets::tasks::classification::{
    ClassificationColumns, parse_classification, parse_tokenized_classification,
};
use libfuzzer_sys::fuzz_target;

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fuzz_target!(
    init: {
        std::panic::set_hook(Box::new(|info| {
            let site = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let mut seen = SEEN.lock().unwrap();
            if seen.get_or_insert_with(HashSet::new).insert(site.clone()) {
                eprintln!("caught panic at {site}: {info}");
            }
        }));
    },
    |data: &[u8]| {
        let columns = ClassificationColumns {
            text: 0.into(),
            text_pair: None,
            label: 1.into(),
            has_header: true,
            regression: false,
        };
        let _ = parse_classification(data, Format::Parquet, "fuzz", &columns);
        let _ = parse_tokenized_classification(data, Format::Parquet, "fuzz", "label", false);
    }
);
