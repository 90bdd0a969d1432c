#![no_main]

use bert_datasets::tasks::Format;
use bert_datasets::tasks::classification::{Label, parse_tokenized_classification};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&options, file)) = data.split_first() else {
        return;
    };
    let regression = options & 1 != 0;
    if let Ok(d) = parse_tokenized_classification(file, Format::Jsonl, "fuzz", "label", regression)
    {
        assert!(!d.items.is_empty());
        for item in &d.items {
            assert!(!item.text.input_ids.is_empty());
            assert_eq!(item.text.input_ids.len(), item.text.token_type_ids.len());
            match item.label {
                Label::Class(c) => assert!(!regression && c < d.id2label.len()),
                Label::Value(_) => assert!(regression),
            }
        }
    }
});
