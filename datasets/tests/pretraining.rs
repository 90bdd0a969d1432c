//! MLM and NSP statistics on a real corpus (the Jargon File from the fixtures): 15% ± 0.5% of
//! non-special tokens masked, split 80/10/10 ± 1%, no special token ever masked, NSP labels
//! 50% ± 2%; the same seed gives the same data. The streaming pipeline reads lazily (an
//! endless corpus) and keeps the same statistics.

use std::path::PathBuf;

use bert_datasets::BertTokenizer;
use std::cell::Cell;
use std::io::{BufRead, Read};
use std::rc::Rc;

use bert_datasets::fixtures::assert_err;
use bert_datasets::pretraining::{
    MlmOptions, NspOptions, continuation_table, create_pairs, documents, encode_documents,
    mask_pairs, masking::IGNORE_INDEX, read_documents, split_paragraphs, stream_pairs,
};

fn fixtures() -> PathBuf {
    bert_datasets::fixtures::dir().unwrap()
}

/// BERT's token-level masking over `tok`'s vocabulary, never choosing `specials`.
fn masking(tok: &BertTokenizer, specials: Vec<u32>) -> MlmOptions {
    MlmOptions {
        special_ids: specials,
        ..MlmOptions::new(tok).unwrap()
    }
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
    let mut masker = masking(&tok, specials.clone()).masker(7);
    let (mut candidates, mut chosen, mut as_mask, mut as_random, mut kept) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    for p in &pairs {
        let (ids, _) = p.to_input(special.cls, special.sep);
        let m = masker.mask(&ids);
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
    let mut again = masking(&tok, specials).masker(7);
    let first = again.mask(&ids);
    let second = again.mask(&ids);
    assert_ne!(first, second, "a new epoch draws new masks");
}

/// HF's `mask_replace_prob` / `random_replace_prob`: what a chosen token becomes, and HF's checks.
#[test]
fn replacement_probabilities_decide_what_a_chosen_token_becomes() {
    // Ids ≥ 100 with no special among them; random tokens come from 0..5 (never an original).
    let ids: Vec<u32> = (0..2_000).map(|i| 100 + i % 50).collect();
    let options = |mask_replace_prob, random_replace_prob| MlmOptions {
        mlm_probability: 0.5,
        mask_replace_prob,
        random_replace_prob,
        mask_id: 99,
        vocab_size: 5,
        special_ids: vec![],
        whole_word_mask: false,
        continuation: vec![],
    };
    // Per chosen token: [MASK], random, kept.
    let split = |o: MlmOptions| {
        o.check().unwrap();
        let m = o.masker(11).mask(&ids);
        let mut counts = [0usize; 3];
        for (k, &id) in ids.iter().enumerate() {
            if m.labels[k] == IGNORE_INDEX {
                assert_eq!(m.input_ids[k], id);
                continue;
            }
            assert_eq!(m.labels[k], id as i64);
            counts[match m.input_ids[k] {
                99 => 0,
                x if x < 5 => 1,
                x if x == id => 2,
                x => panic!("chosen token {id} became {x}"),
            }] += 1;
        }
        let chosen = counts.iter().sum::<usize>();
        assert!(
            (900..1_100).contains(&chosen),
            "{chosen} of 2000 chosen at p = 0.5"
        );
        counts.map(|c| c as f64 / chosen as f64)
    };
    assert_eq!(
        split(options(1.0, 0.0)),
        [1.0, 0.0, 0.0],
        "HF 5's whole-word setting"
    );
    assert_eq!(split(options(0.0, 1.0)), [0.0, 1.0, 0.0]);
    assert_eq!(split(options(0.0, 0.0)), [0.0, 0.0, 1.0]);
    let [m, r, k] = split(options(0.5, 0.3));
    assert!(
        (m - 0.5).abs() < 0.05 && (r - 0.3).abs() < 0.05 && (k - 0.2).abs() < 0.05,
        "split {m} / {r} / {k}"
    );
    // The defaults are BERT's 80/10/10 and draw the masks the fixed split drew (0.8 + 0.1 is
    // 0.9 in f64): the Jargon File test above measures them.
    let defaults = MlmOptions {
        special_ids: vec![],
        ..options(0.8, 0.1)
    };
    assert_eq!(
        defaults.mask_replace_prob + defaults.random_replace_prob,
        0.9
    );

    // HF's `__post_init__` checks, in its words.
    for (o, message) in [
        (
            MlmOptions {
                mlm_probability: 1.5,
                ..options(0.8, 0.1)
            },
            "mlm_probability should be between 0 and 1.",
        ),
        (
            MlmOptions {
                mlm_probability: f64::NAN,
                ..options(0.8, 0.1)
            },
            "mlm_probability should be between 0 and 1.",
        ),
        (
            options(0.8, 0.3),
            "The sum of mask_replace_prob and random_replace_prob should not exceed 1",
        ),
        (
            options(-0.1, 0.1),
            "mask_replace_prob should be between 0 and 1.",
        ),
        (
            options(0.8, -0.1),
            "random_replace_prob should be between 0 and 1.",
        ),
        (
            MlmOptions {
                vocab_size: 0,
                ..options(0.8, 0.1)
            },
            "random_replace_prob > 0 needs a vocabulary",
        ),
    ] {
        assert_err(o.check(), &["invalid data option", message]);
    }
    MlmOptions {
        vocab_size: 0,
        ..options(1.0, 0.0)
    }
    .check()
    .unwrap();
}

#[test]
fn whole_word_masking_masks_all_pieces_of_a_word() {
    // [CLS] un ##aff ##able word [SEP]
    let ids = [101, 4895, 10354, 3085, 2773, 102];
    let mut continuation = vec![false; 30522];
    (continuation[10354], continuation[3085]) = (true, true);
    let mut masker = MlmOptions {
        mlm_probability: 0.5,
        mask_replace_prob: 0.8,
        random_replace_prob: 0.1,
        mask_id: 103,
        vocab_size: 30522,
        special_ids: vec![101, 102],
        whole_word_mask: true,
        continuation,
    }
    .masker(3);
    for _ in 0..50 {
        let m = masker.mask(&ids);
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

/// An endless corpus in BERT's format: document `d` has `2 + d % 4` sentences; counts the
/// documents it has produced.
struct Endless {
    produced: Rc<Cell<usize>>,
    pending: Vec<u8>,
    pos: usize,
}

impl Endless {
    fn new() -> (Self, Rc<Cell<usize>>) {
        let produced = Rc::new(Cell::new(0));
        let reader = Self {
            produced: produced.clone(),
            pending: Vec::new(),
            pos: 0,
        };
        (reader, produced)
    }
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Endless {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos == self.pending.len() {
            let d = self.produced.get();
            self.produced.set(d + 1);
            self.pending.clear();
            for s in 0..2 + d % 4 {
                self.pending.extend(
                    format!("Document {d} says thing number {s} about the stream.\n").bytes(),
                );
            }
            self.pending.extend(b"\n");
            self.pos = 0;
        }
        Ok(&self.pending[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

fn tokenizer() -> BertTokenizer {
    BertTokenizer::from_pretrained(fixtures().join("models/all-MiniLM-L6-v2")).unwrap()
}

#[test]
fn an_endless_corpus_is_read_lazily() {
    let (reader, produced) = Endless::new();
    let docs: Vec<_> = documents(reader, "endless")
        .take(5)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 5);
    assert_eq!(docs[1].len(), 3);
    assert_eq!(
        docs[1][2],
        "Document 1 says thing number 2 about the stream."
    );
    assert!(produced.get() <= 6, "read {} documents", produced.get());

    // Tokenized in chunks of 8 documents, paired from buffers of 16.
    let tok = tokenizer();
    let (reader, produced) = Endless::new();
    let encoded = encode_documents(documents(reader, "endless"), &tok, 8).unwrap();
    let first: Vec<_> = encoded.take(3).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        first[0][0],
        tok.inner
            .encode("Document 0 says thing number 0 about the stream.", false)
            .unwrap()
            .get_ids()
    );
    assert!(produced.get() <= 9, "read {} documents", produced.get());

    let (reader, produced) = Endless::new();
    let special = tok.special_ids().unwrap();
    let options = NspOptions {
        max_seq_length: 32,
        ..NspOptions::default()
    };
    let pairs = stream_pairs(
        encode_documents(documents(reader, "endless"), &tok, 8).unwrap(),
        &options,
        16,
    )
    .unwrap();
    let masker = masking(&tok, vec![special.cls, special.sep]).masker(1);
    let examples: Vec<_> = mask_pairs(pairs, masker, special.cls, special.sep)
        .take(100)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(examples.len(), 100);
    assert!(examples.iter().all(|e| e.input_ids.len() <= 32
        && e.input_ids.len() == e.token_type_ids.len()
        && e.input_ids.len() == e.mlm_labels.len()));
    assert!(
        produced.get() < 200,
        "100 pairs read {} documents",
        produced.get()
    );
}

#[test]
fn streamed_documents_follow_the_rules_of_read_documents() {
    let text = "\u{feff}First one.\r\n  Second one.  \n\n\n\nOther doc.\n \t \nLast.";
    let streamed: Vec<_> = documents(text.as_bytes(), "mem")
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        streamed,
        [
            vec!["First one.", "Second one."],
            vec!["Other doc."],
            vec!["Last."]
        ]
    );
    let path = bert::fixtures::Scratch::file("stream", "corpus.txt", text);
    assert_eq!(read_documents(&path).unwrap(), streamed);

    let bad = b"fine\n\nstill fine\nbad \xff byte\nnever read\n";
    let mut it = documents(&bad[..], "bad.txt");
    assert_eq!(it.next().unwrap().unwrap(), ["fine"]);
    let e = it.next().unwrap().unwrap_err().to_string();
    assert_eq!(e, "bad.txt:4: invalid UTF-8");
    assert!(it.next().is_none(), "the stream ends after an error");
    std::fs::write(&path, "\n \n").unwrap();
    let e = read_documents(&path).unwrap_err().to_string();
    assert!(e.contains("no sentences"), "{e}");
}

#[test]
fn streaming_pairs_on_the_jargon_file() {
    let dir = fixtures();
    let text = std::fs::read_to_string(dir.join("data/corpus/jargon.txt")).unwrap();
    // The Jargon File in BERT's format, then streamed back.
    let docs = split_paragraphs(&text, 4);
    let corpus: String = docs.iter().map(|d| d.join("\n") + "\n\n").collect();
    let tok = tokenizer();
    let special = tok.special_ids().unwrap();
    let options = NspOptions::default();
    // With a buffer holding the whole corpus, the pairs are those of `create_pairs`.
    let tokenized: Vec<Vec<Vec<u32>>> =
        encode_documents(documents(corpus.as_bytes(), "jargon"), &tok, 64)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(tokenized.len(), docs.len());
    let whole: Vec<_> = stream_pairs(tokenized.iter().cloned().map(Ok), &options, docs.len())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(whole, create_pairs(&tokenized, &options).unwrap());

    // A buffer of 100 documents.
    let specials = vec![special.cls, special.sep, special.pad];
    let masker = masking(&tok, specials.clone()).masker(7);
    let (mut pairs, mut random, mut candidates, mut chosen) = (0usize, 0usize, 0usize, 0usize);
    let encoded = encode_documents(documents(corpus.as_bytes(), "jargon"), &tok, 64).unwrap();
    let pairs_stream = stream_pairs(encoded, &options, 100).unwrap();
    for e in mask_pairs(pairs_stream, masker, special.cls, special.sep) {
        let e = e.unwrap();
        assert!(e.input_ids.len() <= options.max_seq_length);
        pairs += 1;
        random += usize::from(e.next_sentence_label);
        for (k, &label) in e.mlm_labels.iter().enumerate() {
            let original = if label == IGNORE_INDEX {
                e.input_ids[k]
            } else {
                label as u32
            };
            if specials.contains(&original) {
                assert_eq!(label, IGNORE_INDEX, "a special token was masked");
                continue;
            }
            candidates += 1;
            chosen += usize::from(label != IGNORE_INDEX);
        }
    }
    let nsp = random as f64 / pairs as f64;
    let frac = chosen as f64 / candidates as f64;
    eprintln!(
        "streamed: {pairs} pairs, NSP random {nsp:.4}; masked {frac:.4} of {candidates} tokens"
    );
    assert!(pairs > 3000, "{pairs} pairs");
    assert!((nsp - 0.5).abs() < 0.02, "NSP random fraction {nsp}");
    assert!((frac - 0.15).abs() < 0.005, "masked fraction {frac}");
}

#[test]
fn whole_word_masking_in_the_stream_uses_the_vocabulary() {
    let tok = tokenizer();
    let special = tok.special_ids().unwrap();
    let table = continuation_table(&tok);
    assert!(table[tok.token_to_id("##s").unwrap() as usize]);
    assert!(!table[tok.token_to_id("the").unwrap() as usize]);
    let corpus = "Unaffable hyperparameterization everywhere.\nAnother sentence here.\n\nSecond document now.\nWith two lines.\n";
    let masker = MlmOptions {
        mlm_probability: 0.5,
        whole_word_mask: true,
        ..masking(&tok, vec![special.cls, special.sep])
    }
    .masker(3);
    let options = NspOptions {
        short_seq_prob: 0.0,
        ..NspOptions::default()
    };
    for round in 0..20 {
        let pairs = stream_pairs(
            encode_documents(documents(corpus.as_bytes(), "c"), &tok, 2).unwrap(),
            &NspOptions {
                seed: round,
                ..options
            },
            2,
        )
        .unwrap();
        for e in mask_pairs(pairs, masker.clone(), special.cls, special.sep) {
            let e = e.unwrap();
            // A continuation piece is chosen exactly when the piece before it is.
            for k in 1..e.input_ids.len() {
                let original = |i: usize| match e.mlm_labels[i] {
                    IGNORE_INDEX => e.input_ids[i],
                    l => l as u32,
                };
                if table[original(k) as usize] {
                    assert_eq!(
                        e.mlm_labels[k] == IGNORE_INDEX,
                        e.mlm_labels[k - 1] == IGNORE_INDEX,
                        "pieces masked apart: {:?}",
                        e.mlm_labels
                    );
                }
            }
        }
    }
}

#[test]
fn streaming_needs_two_documents_and_passes_errors_on() {
    let tok = tokenizer();
    let one = encode_documents(documents(&b"Only one.\nDocument.\n"[..], "one"), &tok, 4).unwrap();
    let mut pairs = stream_pairs(one, &NspOptions::default(), 4).unwrap();
    assert_err(pairs.next().unwrap(), &["at least two non-empty documents"]);
    assert!(pairs.next().is_none());

    let bad = b"A doc.\n\nAnother doc.\n\n\xfe\n";
    let encoded: Vec<_> = encode_documents(documents(&bad[..], "bad"), &tok, 8)
        .unwrap()
        .collect();
    assert_eq!(encoded.len(), 3, "two documents, then the error");
    let docs: Vec<_> = encoded[..2].iter().map(|d| d.as_ref().unwrap()).collect();
    assert!(
        docs.iter().all(|d| !d.is_empty()),
        "two non-empty documents"
    );
    let e = encoded[2].as_ref().unwrap_err().to_string();
    assert_eq!(e, "bad:5: invalid UTF-8");
    assert!(stream_pairs(Vec::new(), &NspOptions::default(), 1).is_err());
    assert!(encode_documents(Vec::new(), &tok, 0).is_err());
}
