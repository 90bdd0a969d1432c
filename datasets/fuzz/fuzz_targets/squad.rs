#![no_main]

//! SQuAD JSON, then (for small inputs) the windows and answer mapping with a tiny WordPiece
//! vocabulary, and the post-processing on the windows.

use std::sync::OnceLock;

use bert_datasets::tasks::squad::{best_answer, parse_squad, prepare_features, span_text};
use bert_datasets::{BertTokenizer, WordPieceOptions};
use libfuzzer_sys::fuzz_target;

fn tokenizer() -> &'static BertTokenizer {
    static TOKENIZER: OnceLock<BertTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for c in ('a'..='z').chain('0'..='9') {
            vocab.push(c.to_string());
            vocab.push(format!("##{c}"));
        }
        vocab.extend(["the", "an", "is", "of", "##ing", ".", ",", "?", "!"].map(String::from));
        let path = std::env::temp_dir().join(format!("bert-fuzz-vocab-{}.txt", std::process::id()));
        std::fs::write(&path, vocab.join("\n")).unwrap();
        BertTokenizer::from_vocab(&path, WordPieceOptions::default()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(examples) = parse_squad(data, "fuzz") else {
        return;
    };
    if data.len() > 2000 {
        return;
    }
    // A question longer than the window is an error, not a panic.
    let Ok(features) = prepare_features(tokenizer(), &examples, 24, 6) else {
        return;
    };
    for f in &features {
        let ex = &examples[f.example_index];
        assert!(f.start_position <= f.end_position && f.end_position < f.encoding.len());
        let _ = span_text(ex, f, f.start_position, f.end_position);
    }
    for (i, ex) in examples.iter().enumerate() {
        let fs: Vec<_> = features.iter().filter(|f| f.example_index == i).collect();
        let logits: Vec<(Vec<f32>, Vec<f32>)> = fs
            .iter()
            .map(|f| {
                let n = f.encoding.len();
                let s = (0..n).map(|k| ((k * 7 + i) % 5) as f32).collect();
                let e = (0..n).map(|k| ((k * 3 + i) % 4) as f32).collect();
                (s, e)
            })
            .collect();
        let _ = best_answer(ex, &fs, &logits, 5, 8, true);
    }
});
