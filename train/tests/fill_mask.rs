//! HF's fill-mask pipeline, matched: all-MiniLM-L6-v2's tokenizer over a tiny random
//! `BertForMaskedLM` of its vocabulary, stored by HF in float16
//! (`bert/tests/reference/fill_mask`, made by `make_reference.py --minilm DIR`). Every mask's
//! top 5 tokens, their strings, the filled-in sequences (HF decodes without special tokens for
//! one mask, with them for several) and the probabilities (1e-4) equal HF's.

use std::path::PathBuf;

use bert::{BertForMaskedLM, BertPretrained};
use bert_datasets::BertTokenizer;
use bert_train::tasks::fill_mask;
use serde_json::Value;

#[test]
fn fill_mask_matches_hf_pipeline() {
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bert/tests/reference/fill_mask");
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("fill_mask.json")).unwrap())
            .unwrap();
    let device = bert::backend::test_device();
    let model = BertForMaskedLM::from_pretrained(&case, &device).unwrap();
    let tokenizer = BertTokenizer::from_pretrained(
        bert::fixtures::dir()
            .unwrap()
            .join("models/all-MiniLM-L6-v2"),
    )
    .unwrap();
    for r in want["results"].as_array().unwrap() {
        let text = r["text"].as_str().unwrap();
        let got = fill_mask(
            |input| Ok(model.forward(input, None)?.logits),
            &tokenizer,
            text,
            5,
            &device,
        )
        .unwrap();
        let masks = r["masks"].as_array().unwrap();
        assert_eq!(got.len(), masks.len(), "{text}");
        for (g, w) in got.iter().zip(masks) {
            for (c, e) in g.candidates.iter().zip(w.as_array().unwrap()) {
                assert_eq!(
                    c.token as u64,
                    e["token"].as_u64().unwrap(),
                    "{text}: {c:?}"
                );
                assert_eq!(c.token_str, e["token_str"].as_str().unwrap(), "{text}");
                assert_eq!(c.sequence, e["sequence"].as_str().unwrap(), "{text}");
                let score = e["score"].as_f64().unwrap();
                assert!(
                    (c.score as f64 - score).abs() < 1e-4,
                    "{text}: {c:?} vs {score}"
                );
            }
        }
    }
}
