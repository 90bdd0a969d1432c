#![no_main]

use bert_datasets::tasks::Format;
use bert_datasets::tasks::swag::parse_swag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&options, file)) = data.split_first() else {
        return;
    };
    let format = [Format::Csv, Format::Tsv, Format::Jsonl][options as usize % 3];
    if let Ok(examples) = parse_swag(file, format, "fuzz") {
        for e in &examples {
            assert!(e.choices.len() >= 2 && e.label < e.choices.len());
        }
    }
});
