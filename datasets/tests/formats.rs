//! The task formats on the real fetched samples (polarity CSV, Quora TSV, SNLI JSONL,
//! WNUT-16, CoNLL-2003, SQuAD), on Parquet files written by pyarrow
//! (`reference/make_parquet.py`) and on generated edge cases, each bad input named by file,
//! line and problem.

use std::path::PathBuf;

use bert_datasets::BertTokenizer;
use bert_datasets::fixtures::assert_err;
use bert_datasets::tasks::Format;
use bert_datasets::tasks::classification::{
    ClassificationColumns, Column, Label, parse_classification, parse_tokenized_classification,
    read_classification, read_tokenized_classification,
};
use bert_datasets::tasks::conll::{align_labels, label_list, read_conll};
use bert_datasets::tasks::squad::{parse_squad, prepare_features, read_squad, span_text};

fn fixtures() -> PathBuf {
    bert_datasets::fixtures::dir().unwrap()
}

fn scratch(name: &str, content: &[u8]) -> bert::fixtures::Scratch {
    bert::fixtures::Scratch::file("formats", name, content)
}

fn cols(text: Column, pair: Option<Column>, label: Column, header: bool) -> ClassificationColumns {
    ClassificationColumns {
        text,
        text_pair: pair,
        label,
        has_header: header,
        regression: false,
    }
}

#[test]
fn polarity_csv_with_bom_and_no_header() {
    let data = read_classification(
        fixtures().join("data/polarity/sentences.csv"),
        &cols(1.into(), None, 0.into(), false),
    )
    .unwrap();
    assert_eq!(data.examples.len(), 4000);
    assert_eq!(data.id2label, ["-1", "1"]);
    let positives = data
        .examples
        .iter()
        .filter(|e| e.label == Label::Class(1))
        .count();
    assert_eq!(positives, 2000);
    assert!(
        data.examples[0]
            .text
            .starts_with("the rock is destined to be the 21st century's new \" conan \" and")
    );
}

#[test]
fn quora_tsv_pairs_and_snli_jsonl() {
    let q = read_classification(
        fixtures().join("data/samples/quora_paraphrase.tsv"),
        &cols(1.into(), Some(2.into()), 0.into(), false),
    )
    .unwrap();
    assert_eq!(q.id2label, ["0", "1"]);
    assert_eq!(
        q.examples[0].text_pair.as_deref(),
        Some("How do I not sleep in a boring class ?")
    );
    let s = read_classification(
        fixtures().join("data/samples/snli.jsonl"),
        &cols(
            "sentence1".into(),
            Some("sentence2".into()),
            "gold_label".into(),
            true,
        ),
    )
    .unwrap();
    assert!(
        s.id2label.contains(&"entailment".to_string())
            && s.id2label.contains(&"neutral".to_string())
    );
    assert!(s.examples[0].text.starts_with("A person on a horse"));
}

#[test]
fn classification_edge_cases_are_named() {
    let p = scratch(
        "named.csv",
        b"sentence,score\n\"a, quoted\",0.5\nplain,1.25\n",
    );
    let mut c = cols("sentence".into(), None, "score".into(), true);
    c.regression = true;
    let d = read_classification(&p, &c).unwrap();
    assert_eq!(d.examples[0].text, "a, quoted");
    assert_eq!(d.examples[1].label, Label::Value(1.25));
    assert_err(
        read_classification(&p, &cols("text".into(), None, "score".into(), true)),
        &["named.csv:1", "no column `text`"],
    );
    let p = scratch("bad.csv", b"sentence,score\nfine,0.5\nfine,lots\n");
    assert_err(
        read_classification(&p, &c),
        &["bad.csv:3", "label `lots` is not a number"],
    );
    let p = scratch("short.tsv", b"1\ttext\n0\n");
    assert_err(
        read_classification(&p, &cols(1.into(), None, 0.into(), false)),
        &[
            "short.tsv:2",
            "the row has 1 fields, the header (or first row) 2",
        ],
    );
    // A row with more fields than the header: an error, not the extra fields dropped.
    let p = scratch(
        "long.csv",
        b"text,label
fine,1
too,many,fields,0
",
    );
    assert_err(
        read_classification(&p, &cols("text".into(), None, "label".into(), true)),
        &["long.csv:3", "the row has 4 fields"],
    );
    // A quote never closed: an error, not the rest of the file merged into one field.
    let p = scratch("quote.csv", b"text,label\nfine,1\n\"open quote,0\nnext,1\n");
    assert_err(
        read_classification(&p, &cols("text".into(), None, "label".into(), true)),
        &["quote.csv:3", "not closed before the end of the file"],
    );
    // A quote inside an unquoted field is a plain character.
    let p = scratch(
        "inch.csv",
        b"text,label\nthe 5\" screen,1\n\"a \"\"quoted\"\" word\",0\n",
    );
    let d = read_classification(&p, &cols("text".into(), None, "label".into(), true)).unwrap();
    assert_eq!(d.examples[0].text, "the 5\" screen");
    assert_eq!(d.examples[1].text, "a \"quoted\" word");
    // Multi-line quoted fields are fine.
    let p = scratch("multi.csv", b"text,label\n\"two\nlines\",1\nfine,0\n");
    let d = read_classification(&p, &cols("text".into(), None, "label".into(), true)).unwrap();
    assert_eq!(d.examples[0].text, "two\nlines");
    let p = scratch("bad.jsonl", b"{\"t\": \"x\", \"l\": 1}\n{\"t\": \"y\"}\n");
    assert_err(
        read_classification(&p, &cols("t".into(), None, "l".into(), true)),
        &["bad.jsonl:2", "no field `l`"],
    );
    let p = scratch("empty.csv", b"");
    assert_err(
        read_classification(&p, &cols(0.into(), None, 1.into(), false)),
        &["empty.csv", "empty"],
    );
    let p = scratch("latin1.csv", b"ok,1\nbad \xe9,0\n");
    assert_err(
        read_classification(&p, &cols(0.into(), None, 1.into(), false)),
        &["latin1.csv:2", "invalid UTF-8"],
    );
}

#[test]
fn wnut16_and_conll2003_with_aligned_labels() {
    let wnut = read_conll(fixtures().join("data/wnut16/train.txt")).unwrap();
    assert_eq!(wnut.len(), 2394);
    assert_eq!(wnut.iter().map(|s| s.words.len()).sum::<usize>(), 46469);
    let labels = label_list(&wnut);
    assert_eq!(labels.len(), 21, "{labels:?}"); // O + B/I of 10 types
    let conll = read_conll(fixtures().join("data/samples/conll2003.txt")).unwrap();
    assert_eq!(conll.len(), 2);
    assert_eq!(conll[0].words[..3], ["U.N.", "official", "Ekeus"]);
    assert_eq!(conll[0].tags[..3], ["I-ORG", "O", "I-PER"]);

    let tok = BertTokenizer::from_pretrained(fixtures().join("models/all-MiniLM-L6-v2")).unwrap();
    let words = ["Ekeus", "heads", "for", "Baghdad"];
    let tags: Vec<String> = ["B-PER", "O", "O", "B-LOC"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let labels: Vec<String> = ["B-LOC", "B-PER", "O"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = tok
        .inner
        .encode(tokenizers::InputSequence::from(words.to_vec()), true)
        .unwrap();
    // [CLS] ek ##eus heads for baghdad [SEP]
    assert_eq!(
        e.get_tokens(),
        ["[CLS]", "ek", "##eus", "heads", "for", "baghdad", "[SEP]"]
    );
    assert_eq!(
        align_labels(e.get_word_ids(), &tags, &labels, false).unwrap(),
        [-100, 1, -100, 2, 2, 0, -100]
    );
    assert_eq!(
        align_labels(e.get_word_ids(), &tags, &labels, true).unwrap(),
        [-100, 1, 1, 2, 2, 0, -100]
    );
    let e = align_labels(
        e.get_word_ids(),
        &vec!["B-MISC".to_string(); 4],
        &labels,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown label `B-MISC`"), "{e}");
}

#[test]
fn ragged_conll_line_is_named() {
    let p = scratch("ragged.conll", b"EU NNP I-NP I-ORG\nrejects VBZ I-VP\n");
    assert_err(read_conll(&p), &["ragged.conll:2", "3 columns, expected 4"]);
}

#[test]
fn squad_windows_round_trip_the_answers() {
    let examples = read_squad(fixtures().join("data/samples/squad.json")).unwrap();
    assert_eq!(examples.len(), 5);
    let tok = BertTokenizer::from_pretrained(fixtures().join("models/all-MiniLM-L6-v2")).unwrap();
    let features = prepare_features(&tok, &examples, 64, 16).unwrap();
    assert!(
        features.len() > 2 * examples.len(),
        "long contexts make several windows: {}",
        features.len()
    );
    let mut found = 0;
    for f in &features {
        assert!(f.encoding.len() <= 64);
        if f.start_position == 0 {
            continue;
        }
        let ex = &examples[f.example_index];
        assert_eq!(
            span_text(ex, f, f.start_position, f.end_position),
            ex.answers[0].0,
            "question {}",
            ex.id
        );
        found += 1;
    }
    // Every answer is inside at least one window.
    let answered: std::collections::BTreeSet<_> = features
        .iter()
        .filter(|f| f.start_position > 0)
        .map(|f| f.example_index)
        .collect();
    assert_eq!(answered.len(), examples.len());
    assert!(found >= examples.len());
}

#[test]
fn squad_answer_outside_its_context_is_named() {
    let p = scratch(
        "bad_squad.json",
        br#"{"data": [{"paragraphs": [{"context": "Short context.", "qas": [{"id": "q1", "question": "?", "answers": [{"text": "context", "answer_start": 40}]}]}]}]}"#,
    );
    assert_err(read_squad(&p), &["question q1", "not at character 40"]);
    // A start near usize::MAX used to overflow the end (a panic).
    assert_err(parse_squad(
        br#"{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q2", "question": "?", "answers": [{"text": "a", "answer_start": 18446744073709551615}]}]}]}]}"#,
        "huge.json",
    ), &["huge.json", "question q2", "not at character"]);
}

#[test]
fn swag_csv_and_jsonl() {
    use bert_datasets::tasks::swag::read_swag;
    let csv = scratch(
        "swag.csv",
        b"video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n\
          a,1,x,Students lower their eyes nervously.,She,gold,pats her shoulder.,walks away.,smiles.,cries.,2\n",
    );
    let ex = read_swag(&csv).unwrap();
    assert_eq!(ex[0].context, "Students lower their eyes nervously.");
    assert_eq!(
        ex[0].choices,
        [
            "She pats her shoulder.",
            "She walks away.",
            "She smiles.",
            "She cries."
        ]
    );
    assert_eq!(ex[0].label, 2);
    let jsonl = scratch("swag.jsonl", b"{\"sent1\": \"A\", \"sent2\": \"B\", \"ending0\": \"c\", \"ending1\": \"d\", \"label\": 5}\n");
    let e = read_swag(&jsonl).unwrap_err().to_string();
    assert!(
        e.contains("swag.jsonl:1") && e.contains("label 5 but only 2 endings"),
        "{e}"
    );
}

/// Post-processing picks the best valid span over windows, and the empty answer for v2 when
/// `[CLS]` scores higher.
#[test]
fn squad_post_processing() {
    use bert_datasets::tasks::squad::best_answer;
    let examples = read_squad(fixtures().join("data/samples/squad.json")).unwrap();
    let tok = BertTokenizer::from_pretrained(fixtures().join("models/all-MiniLM-L6-v2")).unwrap();
    let features = prepare_features(&tok, &examples, 64, 16).unwrap();
    let ex = &examples[0];
    let fs: Vec<_> = features.iter().filter(|f| f.example_index == 0).collect();
    // Logits peaked on the gold span of the window that has it, with a decoy span too long.
    let logits: Vec<(Vec<f32>, Vec<f32>)> = fs
        .iter()
        .map(|f| {
            let n = f.encoding.len();
            let (mut s, mut e) = (vec![0.0; n], vec![0.0; n]);
            if f.start_position > 0 {
                s[f.start_position] = 5.0;
                e[f.end_position] = 5.0;
                s[f.start_position.saturating_sub(20).max(1)] = 9.0; // would make a 20+ token span
            }
            (s, e)
        })
        .collect();
    let a = best_answer(ex, &fs, &logits, 20, 10, false);
    assert_eq!(a.text, ex.answers[0].0);
    let cls_wins: Vec<_> = logits
        .iter()
        .map(|(s, e)| {
            let (mut s, mut e) = (s.clone(), e.clone());
            s[0] = 20.0;
            e[0] = 20.0;
            (s, e)
        })
        .collect();
    assert_eq!(best_answer(ex, &fs, &cls_wins, 20, 10, true).text, "");
    assert_eq!(
        best_answer(ex, &fs, &cls_wins, 20, 10, false).text,
        ex.answers[0].0
    );
}

fn reference(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}

fn classes(data: &[Label]) -> Vec<usize> {
    data.iter()
        .map(|l| match l {
            Label::Class(c) => *c,
            other => panic!("not a class: {other:?}"),
        })
        .collect()
}

#[test]
fn parquet_text_pairs_class_labels_and_regression() {
    // String labels, three row groups, non-ASCII text.
    let d = read_classification(
        reference("pq_text.parquet"),
        &cols("text".into(), None, "label".into(), true),
    )
    .unwrap();
    assert_eq!(d.id2label, ["neg", "neutral", "pos"]);
    let texts: Vec<&str> = d.examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "a fine film",
            "dull and long",
            "café au lait ☕",
            "so-so",
            "loved it",
            "meh"
        ]
    );
    let labels: Vec<Label> = d.examples.iter().map(|e| e.label.clone()).collect();
    assert_eq!(classes(&labels), [2, 0, 2, 1, 2, 0]);
    assert!(d.examples.iter().all(|e| e.text_pair.is_none()));

    // Pairs with int labels, by name and by position; the bytes read as the file.
    let by_name = cols(
        "sentence1".into(),
        Some("sentence2".into()),
        "label".into(),
        true,
    );
    let p = read_classification(reference("pq_pairs.parquet"), &by_name).unwrap();
    assert_eq!(p.id2label, ["0", "1", "2"]);
    assert_eq!(p.examples[1].text, "It rains.");
    assert_eq!(p.examples[1].text_pair.as_deref(), Some("The sun shines."));
    let labels: Vec<Label> = p.examples.iter().map(|e| e.label.clone()).collect();
    assert_eq!(classes(&labels), [0, 2, 1]);
    let by_index = read_classification(
        reference("pq_pairs.parquet"),
        &cols(1.into(), Some(2.into()), 3.into(), false),
    )
    .unwrap();
    assert_eq!(by_index, p);
    let bytes = std::fs::read(reference("pq_pairs.parquet")).unwrap();
    assert_eq!(
        parse_classification(&bytes, Format::Parquet, "pairs", &by_name).unwrap(),
        p
    );

    // An HF ClassLabel keeps its ids and names.
    let c = read_classification(
        reference("pq_class_label.parquet"),
        &cols("sentence".into(), None, "label".into(), true),
    )
    .unwrap();
    assert_eq!(c.id2label, ["unacceptable", "acceptable"]);
    let labels: Vec<Label> = c.examples.iter().map(|e| e.label.clone()).collect();
    assert_eq!(classes(&labels), [1, 0]);

    // float32 and float64 regression targets.
    for column in ["score32", "score64"] {
        let mut c = cols("sentence".into(), None, column.into(), true);
        c.regression = true;
        let r = read_classification(reference("pq_regression.parquet"), &c).unwrap();
        assert!(r.id2label.is_empty());
        let values: Vec<Label> = r.examples.iter().map(|e| e.label.clone()).collect();
        assert_eq!(
            values,
            [Label::Value(0.1), Label::Value(2.5), Label::Value(-1.0)],
            "{column}"
        );
    }
}

#[test]
fn parquet_errors_name_file_and_problem() {
    let nulls = reference("pq_nulls.parquet");
    assert_err(
        read_classification(&nulls, &cols("text".into(), None, "label".into(), true)),
        &[
            "pq_nulls.parquet:",
            "no column `label`",
            r#"["text", "target"]"#,
        ],
    );
    assert_err(
        read_classification(&nulls, &cols("text".into(), None, "target".into(), true)),
        &["pq_nulls.parquet:2:", "field `text` is null"],
    );
    assert_err(
        read_classification(&nulls, &cols(5.into(), None, 1.into(), false)),
        &["no column 5"],
    );
    let mut c = cols("text".into(), None, "label".into(), true);
    c.regression = true;
    assert_err(
        read_classification(reference("pq_text.parquet"), &c),
        &["pq_text.parquet:1:", "label `pos` is not a number"],
    );
    assert_err(
        parse_classification(b"PAR1 not really", Format::Parquet, "junk.parquet", &c),
        &["junk.parquet", "not a readable Parquet file"],
    );
}

#[test]
fn tokenized_rows_from_jsonl_and_parquet() {
    let p = scratch(
        "tokenized.jsonl",
        br#"{"input_ids": [101, 7592, 102, 0, 0], "attention_mask": [1, 1, 1, 0, 0], "label": "pos"}
{"input_ids": [101, 2088, 102, 2003, 102], "token_type_ids": [0, 0, 0, 1, 1], "label": "neg"}

{"input_ids": [101, 102], "attention_mask": null, "label": "pos", "extra": [1.5]}
"#,
    );
    let d = read_tokenized_classification(&p, "label", false).unwrap();
    assert_eq!(d.id2label, ["neg", "pos"]);
    assert_eq!(d.items.len(), 3);
    assert_eq!(d.items[0].text.input_ids, [101, 7592, 102]);
    assert_eq!(d.items[0].text.token_type_ids, [0, 0, 0]);
    assert_eq!(d.items[0].label, Label::Class(1));
    assert_eq!(d.items[1].text.input_ids, [101, 2088, 102, 2003, 102]);
    assert_eq!(d.items[1].text.token_type_ids, [0, 0, 0, 1, 1]);
    assert_eq!(d.items[2].text.input_ids, [101, 102]);

    // As `datasets.map(tokenizer)` saves it: int32 ids, int8 masks.
    let q =
        read_tokenized_classification(reference("pq_tokenized.parquet"), "label", false).unwrap();
    assert_eq!(q.id2label, ["0", "1"]);
    assert_eq!(q.items[0].text.input_ids, [101, 7592, 102]);
    assert_eq!(q.items[0].text.token_type_ids, [0, 0, 0]);
    assert_eq!(q.items[0].label, Label::Class(1));
    assert_eq!(q.items[1].text.input_ids, [101, 2088, 102, 2003, 102]);
    assert_eq!(q.items[1].text.token_type_ids, [0, 0, 0, 1, 1]);
    assert_eq!(q.items[1].label, Label::Class(0));

    let r = parse_tokenized_classification(
        br#"{"input_ids": [5, 6], "score": 0.25}"#,
        Format::Jsonl,
        "reg",
        "score",
        true,
    )
    .unwrap();
    assert_eq!(r.items[0].label, Label::Value(0.25));
    assert!(r.id2label.is_empty());
}

#[test]
fn tokenized_row_errors_are_named() {
    let check = |row: &str, expected: &str| {
        let data = format!("{{\"input_ids\": [1, 2], \"label\": 0}}\n{row}\n");
        let e = parse_tokenized_classification(
            data.as_bytes(),
            Format::Jsonl,
            "rows.jsonl",
            "label",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("rows.jsonl:2: ") && e.contains(expected),
            "{row}: {e}"
        );
    };
    check(
        r#"{"input_ids": [101, "x"], "label": 0}"#,
        r#"`input_ids`[1] = "x" is not an integer"#,
    );
    check(
        r#"{"input_ids": [101, 1.5], "label": 0}"#,
        "`input_ids`[1] = 1.5 is not an integer",
    );
    check(
        r#"{"input_ids": [-3, 7], "label": 0}"#,
        "`input_ids`[0] = -3 is negative",
    );
    check(
        r#"{"input_ids": [4294967296], "label": 0}"#,
        "too large for an id",
    );
    check(
        r#"{"input_ids": "101 102", "label": 0}"#,
        "`input_ids` is not a list of ids",
    );
    check(r#"{"label": 0}"#, "no field `input_ids`");
    for (row, problem) in [
        (
            r#"{"input_ids": [1, 2, 3], "attention_mask": [1, 1], "label": 0}"#,
            "`attention_mask` has 2 entries, `input_ids` 3",
        ),
        (
            r#"{"input_ids": [1, 2, 3], "token_type_ids": [0, 0, 0, 0], "label": 0}"#,
            "`token_type_ids` has 4 entries, `input_ids` 3",
        ),
        (
            r#"{"input_ids": [1, 2, 3], "attention_mask": [1, 0, 1], "label": 0}"#,
            "not ones then zeros",
        ),
        (
            r#"{"input_ids": [1, 2, 3], "attention_mask": [1, 2, 0], "label": 0}"#,
            "`attention_mask`[1] = 2 is not 0 or 1",
        ),
        (
            r#"{"input_ids": [1, 2], "attention_mask": [0, 0], "label": 0}"#,
            "no tokens",
        ),
    ] {
        check(row, problem);
    }
    check(r#"{"input_ids": [1, 2]}"#, "no field `label`");
    check(r#"[1, 2]"#, "not a JSON object");
    assert_err(
        parse_tokenized_classification(b"1,2", Format::Csv, "rows.csv", "label", false),
        &["rows.csv", "JSONL or Parquet"],
    );
    let e = read_tokenized_classification(reference("pq_tokenized.parquet"), "target", false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pq_tokenized.parquet") && e.contains("no column `target`"),
        "{e}"
    );
}

/// `tokenizers` panics when a window has room for no more context than `doc_stride`; found
/// by fuzzing (`fuzz/`), now an error naming the question.
#[test]
fn squad_question_too_long_for_the_window_is_an_error() {
    let mut examples = read_squad(fixtures().join("data/samples/squad.json")).unwrap();
    let tok = BertTokenizer::from_pretrained(fixtures().join("models/all-MiniLM-L6-v2")).unwrap();
    let error = |examples: &[_], max_length| match prepare_features(&tok, examples, max_length, 16)
    {
        Ok(f) => panic!("{} features", f.len()),
        Err(e) => e.to_string(),
    };
    // 64 - 3 special tokens - 46 = 15 context tokens a window, not more than the stride.
    examples[1].question = "why ".repeat(46);
    let e = error(&examples, 64);
    assert!(
        e.contains(&format!("question {}", examples[1].id))
            && e.contains("its 46 tokens leave 15 of max_length 64"),
        "{e}"
    );
    // Room for 17 > 16 context tokens a window: fine.
    examples[1].question = "why ".repeat(44);
    let features = prepare_features(&tok, &examples, 64, 16).unwrap();
    let long = features.iter().filter(|f| f.example_index == 1);
    assert!(long.clone().count() >= 1);
    assert!(
        long.clone().all(|f| f.encoding.get_ids().len() <= 64),
        "every window fits max_length"
    );
    let e = error(&examples, 19);
    assert!(e.contains("max_length 19 leaves no context"), "{e}");
}

/// Corrupt Parquet files found by fuzzing (`fuzz/`, target `classification_parquet`): the
/// `parquet` crate panics on them (a negative column offset, a bit-reader assertion, a missing
/// dictionary decoder); the reader returns errors instead.
#[test]
fn corrupt_parquet_is_an_error_not_a_panic() {
    let c = cols(0.into(), None, 1.into(), true);
    let e = read_classification(reference("fuzz_negative_offset.parquet"), &c)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fuzz_negative_offset.parquet") && e.contains("corrupt Parquet metadata"),
        "{e}"
    );
    for name in ["fuzz_short_buffer.parquet", "fuzz_no_dictionary.parquet"] {
        let path = reference(name);
        let a = read_classification(&path, &c)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let b = read_tokenized_classification(&path, "label", false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let errors: Vec<String> = [a, b].into_iter().filter_map(Result::err).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains(name) && e.contains("corrupt data")),
            "{name}: {errors:?}"
        );
    }
}
