#![no_main]

use bert_datasets::tasks::conll::{label_list, parse_conll};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sentences) = parse_conll(data, "fuzz") {
        assert!(!sentences.is_empty());
        for s in &sentences {
            assert!(!s.words.is_empty());
            assert_eq!(s.words.len(), s.tags.len());
        }
        assert!(!label_list(&sentences).is_empty());
    }
});
