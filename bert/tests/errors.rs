//! Bad input gives a clear error that names the problem, never a panic inside Burn.

mod common;

use std::path::Path;

use bert::fixtures::assert_err;
use bert::tensors_file::{HostData, HostTensor, NamedTensors, read_tensors, write_tensors};
use bert::{
    AnyBert, BertConfig, BertError, BertForSequenceClassification, BertForTokenClassification,
    BertInput, BertLMHeadModel, BertModel, BertPretrained,
};
use burn::tensor::{Int, Tensor, TensorData};
use common::*;

/// A scratch copy of a reference case, removed on drop.
struct Scratch(bert::fixtures::Scratch);

impl Scratch {
    fn copy_of(case: &str, tag: &str) -> Self {
        let dir = bert::fixtures::Scratch::dir(&format!("errors-{tag}"));
        for f in ["config.json", "model.safetensors", "pytorch_model.bin"] {
            if case_dir(case).join(f).is_file() {
                std::fs::copy(case_dir(case).join(f), dir.join(f)).unwrap();
            }
        }
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn edit_weights(&self, edit: impl FnOnce(&mut NamedTensors)) {
        let file = self.0.join("model.safetensors");
        let mut t = read_tensors(&file).unwrap();
        edit(&mut t);
        write_tensors(&file, &t, &[("format", "pt")]).unwrap();
    }
}

fn load(dir: &Path) -> bert::Result<BertForSequenceClassification> {
    BertForSequenceClassification::from_pretrained(dir, &device())
}

/// A broken model folder: its name, how a copy of a real one is broken, the words of the error.
type Case = (&'static str, Box<dyn Fn(&Path)>, &'static [&'static str]);

/// Broken files in a copy of a real model folder: loading names the file and the problem.
#[test]
fn broken_model_files_are_named() {
    let write = |file: &'static str, text: &'static str| {
        move |dir: &Path| std::fs::write(dir.join(file), text).unwrap()
    };
    let remove =
        |file: &'static str| move |dir: &Path| std::fs::remove_file(dir.join(file)).unwrap();
    let heads_5 = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let text = text.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5");
        std::fs::write(dir.join("config.json"), text).unwrap();
    };
    #[rustfmt::skip]
    let cases: [Case; 5] = [
        ("malformed", Box::new(write("config.json", "{\"hidden_size\": \"big\"")), &["config.json", "malformed"]),
        ("noconfig", Box::new(remove("config.json")), &["config.json", "No such file"]),
        ("badvalue", Box::new(heads_5), &["not a multiple of num_attention_heads (5)"]),
        ("noweights", Box::new(remove("model.safetensors")), &["no model.safetensors or pytorch_model.bin", "model.safetensors.index.json"]),
        ("corrupt", Box::new(write("model.safetensors", "not a safetensors file")), &["model.safetensors", "cannot read weights"]),
    ];
    for (tag, edit, words) in cases {
        eprintln!("case {tag}");
        let s = Scratch::copy_of("seq_cls_single", tag);
        edit(s.path());
        assert_err(load(s.path()), words);
    }
}

/// A broken sharded checkpoint (a copy of HF's `qa_sharded`): loading names the index or the
/// shard and the problem.
#[test]
fn broken_sharded_checkpoints_are_named() {
    let index = "model.safetensors.index.json";
    let edit_index = |edit: fn(&mut serde_json::Value)| {
        move |dir: &Path| {
            let file = dir.join("model.safetensors.index.json");
            let mut json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            edit(&mut json);
            std::fs::write(&file, json.to_string()).unwrap();
        }
    };
    let shard = "model-00002-of-00005.safetensors";
    // The key the broken indexes move or drop.
    const KEY: &str = "bert.encoder.layer.0.attention.output.dense.weight";
    #[rustfmt::skip]
    let cases: [Case; 5] = [
        ("noshard", Box::new(move |d: &Path| std::fs::remove_file(d.join(shard)).unwrap()),
            &["model.safetensors.index.json", "its shard model-00002-of-00005.safetensors is missing"]),
        ("badindex", Box::new(move |d: &Path| std::fs::write(d.join(index), "{\"weight_map\": 3}").unwrap()),
            &["model.safetensors.index.json", "without a `weight_map` object"]),
        ("outside", Box::new(edit_index(|j| j["weight_map"][KEY] = "../qa/model.safetensors".into())),
            &["places `bert.encoder.layer.0.attention.output.dense.weight` in \"../qa/model.safetensors\"", "not a shard file beside it"]),
        ("wrongshard", Box::new(edit_index(|j| j["weight_map"][KEY] = "model-00005-of-00005.safetensors".into())),
            &["model-00005-of-00005.safetensors", "places `bert.encoder.layer.0.attention.output.dense.weight` in this shard, which does not hold it"]),
        ("unlisted", Box::new(edit_index(|j| { j["weight_map"].as_object_mut().unwrap().remove(KEY); })),
            &["bert.encoder.layer.0.attention.output.dense.weight"]),
    ];
    for (tag, edit, words) in cases {
        eprintln!("case {tag}");
        let dir = bert::fixtures::Scratch::dir(&format!("errors-sharded-{tag}"));
        for f in std::fs::read_dir(case_dir("qa_sharded")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        edit(&dir);
        assert_err(
            bert::BertForQuestionAnswering::from_pretrained(&*dir, &device()),
            words,
        );
    }
}

#[test]
fn missing_encoder_tensor_is_an_error_naming_the_key() {
    let s = Scratch::copy_of("seq_cls_single", "missing");
    s.edit_weights(|t| {
        t.remove("bert.encoder.layer.1.attention.self.key.weight")
            .unwrap();
    });
    let err = BertForSequenceClassification::from_pretrained(s.path(), &device()).unwrap_err();
    assert!(matches!(err, BertError::MissingTensor { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("bert.encoder.layer.1.attention.self.key.weight"),
        "{err}"
    );
}

#[test]
fn missing_head_tensor_is_newly_initialised_and_reported() {
    let s = Scratch::copy_of("seq_cls_single", "newhead");
    s.edit_weights(|t| {
        t.remove("classifier.weight");
        t.remove("classifier.bias");
        t.insert(
            "some.extra".into(),
            HostTensor {
                shape: vec![1],
                data: HostData::F32(vec![0.0]),
            },
        );
    });
    let (_, report) =
        BertForSequenceClassification::from_pretrained_with_report(s.path(), &device()).unwrap();
    assert_eq!(report.missing, ["classifier.weight", "classifier.bias"]);
    assert_eq!(report.unexpected, ["some.extra"]);
    let w = report.warnings().join("\n");
    assert!(
        w.contains("newly initialized") && w.contains("were not used"),
        "{w}"
    );
}

#[test]
fn tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let s = Scratch::copy_of("seq_cls_single", "shape");
    s.edit_weights(|t| {
        let w = t
            .get_mut("bert.encoder.layer.0.intermediate.dense.bias")
            .unwrap();
        w.shape = vec![36];
        w.data = HostData::F32(vec![0.0; 36]);
    });
    assert_err(
        load(s.path()),
        &[
            "bert.encoder.layer.0.intermediate.dense.bias",
            "[36]",
            "[37]",
        ],
    );
}

#[test]
fn unknown_head_lists_the_known_classes() {
    let err =
        AnyBert::from_pretrained(case_dir("seq_cls_single"), Some("BertForPoetry"), &device())
            .unwrap_err();
    let e = err.to_string();
    assert!(
        e.contains("unknown head `BertForPoetry`") && e.contains("BertForQuestionAnswering"),
        "{e}"
    );
}

fn model() -> BertModel {
    BertModel::from_pretrained(case_dir("bert_model"), &device()).unwrap()
}

fn ids(rows: &[&[i64]]) -> Tensor<2, Int> {
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(
        TensorData::new(flat, [rows.len(), rows[0].len()]),
        &device(),
    )
}

#[test]
fn mismatched_input_shapes_are_named() {
    let input = BertInput::new(ids(&[&[1, 2, 3], &[4, 5, 6]]))
        .with_attention_mask(ids(&[&[1, 1], &[1, 1]]));
    assert_err(
        model().forward(input),
        &["attention_mask has shape [2, 2], expected [2, 3]"],
    );
    let input = BertInput::new(ids(&[&[1, 2, 3]])).with_token_type_ids(ids(&[&[0, 0, 0, 0]]));
    assert_err(model().forward(input), &["token_type_ids has shape [1, 4]"]);
}

#[test]
fn sequence_longer_than_max_position_embeddings_is_refused() {
    let long: Vec<i64> = vec![5; 65]; // max_position_embeddings = 64
    assert_err(
        model().forward(BertInput::new(ids(&[&long]))),
        &["sequence length 65 is longer than max_position_embeddings (64)"],
    );
}

#[test]
fn token_id_outside_the_vocabulary_is_refused() {
    let input = BertInput::new(ids(&[&[1, 99, 3]])); // vocab_size = 99
    assert_err(
        model().forward(input),
        &["input_ids contains 99, outside 0..99"],
    );
    assert_err(
        model().forward(BertInput::new(ids(&[&[1, -1, 3]]))),
        &["input_ids contains -1"],
    );
    assert_err(
        model().forward(BertInput::new(ids(&[&[1, 2, 3]])).with_token_type_ids(ids(&[&[0, 2, 0]]))),
        &["token_type_ids contains 2"],
    );
}

/// A `[n]` integer `labels` input.
fn int_labels(values: Vec<i64>) -> HostTensor {
    HostTensor {
        shape: vec![values.len()],
        data: HostData::I64(values),
    }
}

#[test]
fn out_of_range_label_is_refused() {
    let device = device();
    let mut x = inputs("seq_cls_single");
    x.insert("labels".into(), int_labels(vec![0, 3, 1]));
    let (model, _) = AnyBert::from_pretrained(case_dir("seq_cls_single"), None, &device).unwrap();
    assert_err(
        model.forward(&x, &device),
        &["labels contains 3; expected a class in 0..3"],
    );
}

#[test]
fn unknown_or_misshapen_named_inputs_are_refused() {
    let device = device();
    let (model, _) = AnyBert::from_pretrained(case_dir("qa"), None, &device).unwrap();
    let mut x = inputs("qa");
    x.insert("labels".into(), int_labels(vec![0, 1, 1]));
    assert_err(
        model.forward(&x, &device),
        &["unknown input `labels` for BertForQuestionAnswering"],
    );
    let mut x = inputs("qa");
    x.get_mut("input_ids").unwrap().shape = vec![24];
    assert_err(
        model.forward(&x, &device),
        &["input `input_ids` has shape [24]; expected 2 dimensions"],
    );
    assert_err(
        model.forward(&NamedTensors::new(), &device),
        &["no `input_ids`"],
    );
}

#[test]
fn empty_batch_is_refused() {
    let empty: Tensor<2, Int> = Tensor::zeros([0, 4], &device());
    assert_err(
        model().forward(BertInput::new(empty)),
        &["input_ids is empty"],
    );
}

/// Safetensors bytes that lie (header length beyond the file, not JSON, offsets outside the
/// data, a shape that does not match its bytes, an integer dtype where floats are read as
/// floats) are errors naming the file, never a panic; a fuzzer's worth of prefixes of a real
/// file too.
#[test]
fn malformed_safetensors_are_errors_not_panics() {
    use bert::Checkpoint;
    let file = std::path::Path::new("weights.safetensors");
    let with_header = |header: &str, data: &[u8]| {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend(header.as_bytes());
        v.extend(data);
        v
    };
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 8],
        with_header("not json", &[]),
        with_header(
            r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,64]}}"#,
            &[0; 16],
        ),
        with_header(
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
            &[0; 16],
        ),
        with_header(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}"#,
            &[0; 16],
        ),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let e = Checkpoint::parse_safetensors(bytes, file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("weights.safetensors"), "case {i}: {e}");
    }
    let ok = with_header(
        r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
        &[0; 16],
    );
    assert_eq!(
        Checkpoint::parse_safetensors(&ok, file).unwrap()["w"].shape,
        [2, 2]
    );
    // Every prefix of a real file, and bytes flipped along it: errors or tensors, no panic.
    let real = std::fs::read(case_dir("seq_cls_single").join("model.safetensors")).unwrap();
    for cut in (0..real.len()).step_by(real.len() / 200 + 1) {
        let _ = Checkpoint::parse_safetensors(&real[..cut], file);
        let mut flipped = real.clone();
        flipped[cut] ^= 0x5a;
        let _ = Checkpoint::parse_safetensors(&flipped, file);
    }
}

/// Through the loading path itself (burn-store's stores and `apply`, where a panic would abort
/// the process): a weights file cut short anywhere fails with an error naming the file, and one
/// with a flipped byte loads or fails so, for safetensors and PyTorch's zip/pickle alike.
#[test]
fn truncated_or_corrupted_weights_files_are_errors_not_aborts() {
    for (case, file) in [
        ("seq_cls_single", "model.safetensors"),
        ("pretraining", "pytorch_model.bin"),
    ] {
        let real = std::fs::read(case_dir(case).join(file)).unwrap();
        let s = Scratch::copy_of(case, &format!("cut-{case}"));
        let load = |bytes: &[u8]| {
            std::fs::write(s.path().join(file), bytes).unwrap();
            AnyBert::from_pretrained(s.path(), None, &device()).map(|_| ())
        };
        for cut in (0..real.len()).step_by(real.len() / 24 + 1).skip(1) {
            // Cut short: always an error naming the file.
            let e = load(&real[..cut]).unwrap_err().to_string();
            assert!(e.contains(file), "{case} cut at {cut}: {e}");
            // A flipped byte: loads (a changed value) or is such an error.
            let mut flipped = real.clone();
            flipped[cut] ^= 0x5a;
            if let Err(e) = load(&flipped) {
                assert!(e.to_string().contains(file), "{case} flipped at {cut}: {e}");
            }
        }
    }
}

/// Token labels are checked as given, before the heads adjust them: a label outside the classes
/// is refused even where the attention mask ignores its position (token classification) or the
/// causal shift drops it (the first column of a causal LM's labels).
#[test]
fn token_labels_are_checked_before_masking_or_shifting() {
    let device = device();
    let mut config = BertConfig::tiny(99, 32, 1, 2);
    config.set_num_labels(3);
    let tagger = BertForTokenClassification::new(&config, &device);
    let input = BertInput::new(ids(&[&[1, 2, 3]])).with_attention_mask(ids(&[&[1, 1, 0]]));
    let labels = ids(&[&[0, 1, 7]]);
    assert_err(tagger.forward(input, Some(labels)), &["labels contains 7"]);
    config.is_decoder = true;
    let lm = BertLMHeadModel::new(&config, &device);
    let labels = ids(&[&[99, 2, 3]]);
    let input = BertInput::new(ids(&[&[1, 2, 3]]));
    assert_err(lm.forward(input, Some(labels)), &["labels contains 99"]);
}
