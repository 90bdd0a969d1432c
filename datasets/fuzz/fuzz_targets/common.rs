//! Shared by the classification targets: the first byte picks the options, the rest is the file.

use bert_datasets::tasks::Format;
use bert_datasets::tasks::classification::{
    ClassificationColumns, Column, Label, parse_classification,
};

pub fn classification(data: &[u8], format: Format) {
    let Some((&options, file)) = data.split_first() else {
        return;
    };
    let named = options & 1 != 0;
    let column = |name: &str, index: u8| {
        if named {
            Column::Name(name.to_string())
        } else {
            Column::Index(index as usize)
        }
    };
    let columns = ClassificationColumns {
        text: column("text", (options >> 4) & 3),
        text_pair: (options & 2 != 0).then(|| column("pair", 1)),
        label: column("label", (options >> 6) & 3),
        has_header: options & 4 != 0,
        regression: options & 8 != 0,
    };
    if let Ok(data) = parse_classification(file, format, "fuzz", &columns) {
        assert!(!data.examples.is_empty());
        for e in &data.examples {
            match e.label {
                Label::Class(c) => assert!(c < data.id2label.len()),
                Label::Value(_) => assert!(columns.regression),
            }
            assert_eq!(e.text_pair.is_some(), columns.text_pair.is_some());
        }
    }
}
