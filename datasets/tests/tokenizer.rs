//! Tokenizer parity with HF: ids, token types, attention mask, offsets and word ids equal
//! `BertTokenizerFast` (all-MiniLM-L6-v2's tokenizer.json), and the pipeline built from
//! vocab.txt equals the slow `BertTokenizer`, on sentences and pairs with accents, Chinese
//! characters, punctuation and truncation. References: `make_tokenizer_reference.py`.

use std::path::PathBuf;

use bert_datasets::fixtures::assert_err;
use bert_datasets::tokenization::truncation_strategy;
use bert_datasets::{BertTokenizer, WordPieceOptions};
use serde_json::Value;

fn model_dir() -> PathBuf {
    bert_datasets::fixtures::dir()
        .unwrap()
        .join("models/all-MiniLM-L6-v2")
}

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/tokenizer.json")).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn tokenizer_json_matches_bert_tokenizer_fast() {
    let base = BertTokenizer::from_pretrained(model_dir()).unwrap();
    let mut checked = 0;
    for case in reference()["cases"].as_array().unwrap() {
        let want = &case["expected"];
        if want.get("error").is_some() {
            continue;
        }
        let tok = match case["truncation"].as_str() {
            Some(s) => base
                .clone()
                .with_truncation(
                    case["max_length"].as_u64().unwrap() as usize,
                    truncation_strategy(s).unwrap(),
                    0,
                )
                .unwrap(),
            None => base.clone(),
        };
        let a = case["a"].as_str().unwrap();
        let e = match case["b"].as_str() {
            Some(b) => tok.encode_pair(a, b).unwrap(),
            None => tok.encode(a).unwrap(),
        };
        let what = format!("{a:?} {:?} {:?}", case["b"], case["truncation"]);
        assert_eq!(e.get_ids(), u32s(&want["input_ids"]), "ids of {what}");
        assert_eq!(
            e.get_type_ids(),
            u32s(&want["token_type_ids"]),
            "types of {what}"
        );
        assert_eq!(
            e.get_attention_mask(),
            u32s(&want["attention_mask"]),
            "mask of {what}"
        );
        let offsets: Vec<(usize, usize)> = serde_json::from_value(want["offsets"].clone()).unwrap();
        assert_eq!(e.get_offsets(), offsets.as_slice(), "offsets of {what}");
        let word_ids: Vec<Option<u32>> = serde_json::from_value(want["word_ids"].clone()).unwrap();
        assert_eq!(e.get_word_ids(), word_ids.as_slice(), "word ids of {what}");
        checked += 1;
    }
    assert!(checked >= 15, "checked {checked}");
}

#[test]
fn vocab_txt_pipeline_matches_slow_bert_tokenizer() {
    let tok = BertTokenizer::from_vocab(model_dir().join("vocab.txt"), WordPieceOptions::default())
        .unwrap();
    let mut checked = 0;
    for case in reference()["cases"].as_array().unwrap() {
        let Some(want) = case.get("slow_ids") else {
            continue;
        };
        let a = case["a"].as_str().unwrap();
        let e = match case["b"].as_str() {
            Some(b) => tok.encode_pair(a, b).unwrap(),
            None => tok.encode(a).unwrap(),
        };
        assert_eq!(e.get_ids(), u32s(want), "{a:?}");
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn padding_matches_hf() {
    let r = reference();
    let tok = BertTokenizer::from_pretrained(model_dir())
        .unwrap()
        .with_padding(None)
        .unwrap();
    let texts: Vec<String> = serde_json::from_value(r["padding_longest"]["texts"].clone()).unwrap();
    let batch = tok.encode_batch(texts).unwrap();
    let ids: Vec<Vec<u32>> = batch.iter().map(|e| e.get_ids().to_vec()).collect();
    let mask: Vec<Vec<u32>> = batch
        .iter()
        .map(|e| e.get_attention_mask().to_vec())
        .collect();
    assert_eq!(
        serde_json::to_value(ids).unwrap(),
        r["padding_longest"]["input_ids"]
    );
    assert_eq!(
        serde_json::to_value(mask).unwrap(),
        r["padding_longest"]["attention_mask"]
    );
    let fixed = &r["padding_max_length"];
    let tok = BertTokenizer::from_pretrained(model_dir())
        .unwrap()
        .with_padding(Some(fixed["max_length"].as_u64().unwrap() as usize))
        .unwrap();
    let e = tok.encode(fixed["text"].as_str().unwrap()).unwrap();
    assert_eq!(e.get_ids(), u32s(&fixed["input_ids"]));
}

#[test]
fn bad_tokenizer_inputs_are_named() {
    let e = BertTokenizer::from_file("/nonexistent/tokenizer.json")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
    assert_err(
        truncation_strategy("do_not_truncate"),
        &["unknown truncation strategy `do_not_truncate`"],
    );
}

/// `add_tokens` as HF's: new tokens get the next ids and are never split, matched on
/// normalized (lower-cased) text; a token already there is not added again. The ids are HF's
/// (transformers 5.24 `AutoTokenizer` on all-MiniLM-L6-v2: `add_tokens(["hyperparameterization",
/// "covid19"])` returns 2, then `("The Hyperparameterization works, covid19!")`).
#[test]
fn added_tokens_are_whole_as_hf_adds_them() {
    let mut tok = BertTokenizer::from_pretrained(model_dir()).unwrap();
    let ids = |tok: &BertTokenizer, text: &str| tok.encode(text).unwrap().get_ids().to_vec();
    assert_eq!(tok.vocab_size(), 30522);
    assert_eq!(
        ids(&tok, "The Hyperparameterization works"),
        [101, 1996, 23760, 28689, 22828, 3989, 2573, 102]
    );
    assert_eq!(tok.add_tokens(&["hyperparameterization", "covid19"]), 2);
    assert_eq!(tok.add_tokens(&["hyperparameterization"]), 0);
    assert_eq!(tok.vocab_size(), 30524);
    assert_eq!(
        ids(&tok, "The Hyperparameterization works, covid19!"),
        [101, 1996, 30522, 2573, 1010, 30523, 999, 102]
    );
}
