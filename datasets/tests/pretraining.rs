//! MLM and NSP statistics on a real corpus (the Jargon File from the fixtures): 15% ± 0.5% of
//! non-special tokens masked, split 80/10/10 ± 1%, no special token ever masked, NSP labels
//! 50% ± 2%; the same seed gives the same data.

use std::path::PathBuf;

use bert_datasets::BertTokenizer;
use bert_datasets::pretraining::{
    MlmMasker, NspOptions, create_pairs, masking::IGNORE_INDEX, split_paragraphs,
};

fn fixtures() -> PathBuf {
    bert_datasets::fixtures::dir().unwrap()
}

#[test]
fn mlm_and_nsp_statistics_on_the_jargon_file() {
    let dir = fixtures();
    let text = std::fs::read_to_string(dir.join("data/corpus/jargon.txt")).unwrap();
    let docs = split_paragraphs(&text, 4);
    assert!(docs.len() > 500, "{} documents", docs.len());
    let tok = BertTokenizer::from_pretrained(dir.join("models/all-MiniLM-L6-v2")).unwrap();
    let special = tok.special_ids().unwrap();
    // Tokenize sentences without [CLS]/[SEP] (added when pairs are built).
    let sentences: Vec<&str> = docs.iter().flatten().map(String::as_str).collect();
    let encoded = tok.inner.encode_batch(sentences, false).unwrap();
    let mut it = encoded.into_iter();
    let tokenized: Vec<Vec<Vec<u32>>> = docs
        .iter()
        .map(|d| {
            d.iter()
                .map(|_| it.next().unwrap().get_ids().to_vec())
                .collect()
        })
        .collect();

    let options = NspOptions {
        max_seq_length: 128,
        ..NspOptions::default()
    };
    let pairs = create_pairs(&tokenized, &options).unwrap();
    assert_eq!(
        pairs,
        create_pairs(&tokenized, &options).unwrap(),
        "deterministic for a seed"
    );
    assert!(pairs.len() > 3000, "{} pairs", pairs.len());
    let random =
        pairs.iter().filter(|p| p.next_sentence_label == 1).count() as f64 / pairs.len() as f64;
    assert!((random - 0.5).abs() < 0.02, "NSP random fraction {random}");
    assert!(
        pairs
            .iter()
            .all(|p| p.tokens_a.len() + p.tokens_b.len() + 3 <= 128)
    );

    let specials = vec![special.cls, special.sep, special.pad];
    let mut masker = MlmMasker::new(special.mask, tok.vocab_size() as u32, specials.clone(), 7);
    let (mut candidates, mut chosen, mut as_mask, mut as_random, mut kept) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for p in &pairs {
        let (ids, _) = p.to_input(special.cls, special.sep);
        let m = masker.mask(&ids, &[]);
        for (k, &id) in ids.iter().enumerate() {
            let is_special = specials.contains(&id);
            if m.labels[k] == IGNORE_INDEX {
                assert_eq!(m.input_ids[k], id, "unchosen tokens are unchanged");
                candidates += usize::from(!is_special);
                continue;
            }
            assert!(!is_special, "a special token was masked");
            assert_eq!(m.labels[k], id as i64);
            candidates += 1;
            chosen += 1;
            if m.input_ids[k] == special.mask {
                as_mask += 1;
            } else if m.input_ids[k] == id {
                kept += 1;
            } else {
                as_random += 1;
            }
        }
    }
    let frac = chosen as f64 / candidates as f64;
    eprintln!(
        "{} pairs, NSP random {random:.4}; {chosen} of {candidates} tokens masked ({frac:.4}): [MASK] {as_mask}, random {as_random}, kept {kept}",
        pairs.len()
    );
    assert!((frac - 0.15).abs() < 0.005, "masked fraction {frac}");
    let c = chosen as f64;
    let (m, r, k) = (as_mask as f64 / c, as_random as f64 / c, kept as f64 / c);
    // A random replacement can draw the original token (1 in 30522): counted as kept.
    assert!(
        (m - 0.8).abs() < 0.01 && (r - 0.1).abs() < 0.01 && (k - 0.1).abs() < 0.01,
        "split {m} / {r} / {k}"
    );

    // Dynamic masking: the next epoch draws different masks.
    let (ids, _) = pairs[0].to_input(special.cls, special.sep);
    let mut again = MlmMasker::new(special.mask, tok.vocab_size() as u32, specials, 7);
    let first = again.mask(&ids, &[]);
    let second = again.mask(&ids, &[]);
    assert_ne!(first, second, "a new epoch draws new masks");
}

#[test]
fn whole_word_masking_masks_all_pieces_of_a_word() {
    let mut masker = MlmMasker::new(103, 30522, vec![101, 102], 3);
    masker.whole_word_mask = true;
    masker.mlm_probability = 0.5;
    // [CLS] un ##aff ##able word [SEP]
    let ids = [101, 4895, 10354, 3085, 2773, 102];
    let cont = [false, false, true, true, false, false];
    for _ in 0..50 {
        let m = masker.mask(&ids, &cont);
        let word: Vec<bool> = (1..4).map(|k| m.labels[k] != IGNORE_INDEX).collect();
        assert!(
            word.iter().all(|&c| c == word[0]),
            "pieces masked apart: {:?}",
            m.labels
        );
        assert_eq!(m.labels[0], IGNORE_INDEX);
        assert_eq!(m.labels[5], IGNORE_INDEX);
    }
}

#[test]
fn too_few_documents_is_an_error() {
    let e = create_pairs(&[vec![vec![1, 2, 3]]], &NspOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least two non-empty documents"), "{e}");
}
