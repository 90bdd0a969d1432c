//! Parity with HF transformers: every head's outputs and losses, gradients, generation, and
//! the real all-MiniLM-L6-v2, against references made by `tests/reference/make_reference.py`.
//! Runs on the backend named by `$BERT_TEST_BACKEND` (default flex).

mod common;

use std::path::PathBuf;

use bert::hub::{BertPretrained, grad_dict, state_dict};
use bert::tensors_file::NamedTensors;
use bert::{
    AnyBert, BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering,
    BertForSequenceClassification, BertInput, MaskedPositions, SequenceClassificationLabels,
};
use burn::tensor::{Int, Tensor};
use common::*;

const TOL: f32 = 1e-4;

fn check_case(case: &str) {
    let device = device();
    let class = case_json(case)["cls"].as_str().unwrap().to_string();
    let (model, report) = AnyBert::from_pretrained(case_dir(case), None, &device).unwrap();
    assert_eq!(model.class(), class);
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{case}: {:?}",
        report.warnings()
    );
    let got = model.forward(&inputs(case), &device).unwrap();
    assert_close(case, &got, &outputs(case), TOL, |n| {
        !n.starts_with("grad.") && n != "sequences"
    });
}

#[test]
fn bert_model_matches_hf() {
    check_case("bert_model");
}

#[test]
fn pretraining_from_pytorch_bin_matches_hf() {
    assert!(case_dir("pretraining").join("pytorch_model.bin").is_file());
    check_case("pretraining");
}

#[test]
fn masked_lm_matches_hf() {
    check_case("masked_lm");
}

#[test]
fn lm_head_with_cross_attention_matches_hf() {
    check_case("lm_head_cross");
}

#[test]
fn next_sentence_prediction_matches_hf() {
    check_case("nsp");
}

#[test]
fn sequence_classification_single_label_matches_hf() {
    check_case("seq_cls_single");
}

#[test]
fn sequence_classification_regression_matches_hf() {
    check_case("seq_cls_regression");
}

#[test]
fn sequence_classification_multi_label_matches_hf() {
    check_case("seq_cls_multi");
}

#[test]
fn multiple_choice_matches_hf() {
    check_case("multiple_choice");
}

#[test]
fn token_classification_with_active_loss_mask_matches_hf() {
    check_case("token_cls");
}

#[test]
fn question_answering_with_clamped_positions_matches_hf() {
    check_case("qa");
}

/// Sharded checkpoints of the `qa` case — HF's own (`save_pretrained(max_shard_size="20KB")`:
/// five safetensors shards and `model.safetensors.index.json`) and transformers 4's pickle
/// layout (two `pytorch_model-0000K-of-00002.bin`, `pytorch_model.bin.index.json`) — load with
/// no missing or unexpected key, match HF's outputs and give the single file's parameters, bit
/// for bit.
#[test]
fn sharded_checkpoints_match_hf_and_the_single_file() {
    let device = device();
    let params = |case: &str| {
        let model = BertForQuestionAnswering::from_pretrained(case_dir(case), &device).unwrap();
        bert::hub::state_dict(&model)
    };
    let single = params("qa");
    assert_eq!(single.len(), 39, "every parameter");
    for (case, index, file) in [
        (
            "qa_sharded",
            "model.safetensors.index.json",
            "model.safetensors",
        ),
        (
            "qa_sharded_bin",
            "pytorch_model.bin.index.json",
            "pytorch_model.bin",
        ),
    ] {
        let dir = case_dir(case);
        assert!(
            dir.join(index).is_file() && !dir.join(file).exists(),
            "{case}"
        );
        check_case(case);
        assert!(
            params(case) == single,
            "{case}: the sharded checkpoint's parameters differ from the single file's"
        );
    }
}

/// HF's `resize_token_embeddings(vocab + 5)` (its default mean resizing) of the masked-LM
/// case: the same logits, new tokens' included, and loss within the parity tolerance (HF adds
/// ~1e-6 of noise to the mean rows); resizing back keeps the first rows bit for bit; the config
/// follows; an empty vocabulary is refused.
#[test]
fn resize_token_embeddings_matches_hf() {
    let device = device();
    let new = case_json("masked_lm_resized")["new_num_tokens"]
        .as_u64()
        .unwrap() as usize;
    let model = BertForMaskedLM::from_pretrained(case_dir("masked_lm"), &device).unwrap();
    let (old, before) = (model.config().vocab_size, state_dict(&model));
    assert!(new > old);
    let resized = model.resize_token_embeddings(new).unwrap();
    assert_eq!(resized.config().vocab_size, new);
    let got = AnyBert::BertForMaskedLM(resized.clone())
        .forward(&inputs("masked_lm"), &device)
        .unwrap();
    let want = outputs("masked_lm_resized");
    assert_close("masked_lm_resized", &got, &want, TOL, |n| n == "loss");
    // The old tokens' logits to the parity tolerance; the new tokens' to 1e-3: HF draws their
    // rows around the mean with covariance 1e-9·Σ (a standard deviation of ~3e-5·σ per
    // coordinate: ~2e-4 on these logits), the mean rows here.
    let (g, w) = (got["logits"].to_f32(), want["logits"].to_f32());
    assert_eq!(got["logits"].shape, want["logits"].shape);
    assert_eq!(got["logits"].shape.last(), Some(&new));
    let mut worst = [0f32; 2];
    for (i, (g, w)) in g.iter().zip(&w).enumerate() {
        let added = usize::from(i % new >= old);
        worst[added] = worst[added].max((g - w).abs());
    }
    assert!(
        worst[0] <= TOL,
        "old tokens' logits: max abs diff {:e}",
        worst[0]
    );
    assert!(
        worst[1] <= 1e-3,
        "new tokens' logits: max abs diff {:e}",
        worst[1]
    );
    assert!(worst[1] > 0.0, "HF's noise is in its reference");
    let back = resized.resize_token_embeddings(old).unwrap();
    assert_eq!(back.config().vocab_size, old);
    assert!(
        state_dict(&back) == before,
        "resizing back changed the kept rows"
    );
    let err = back.resize_token_embeddings(0).unwrap_err().to_string();
    assert!(err.contains("the new vocabulary is empty"), "{err}");
}

#[test]
fn greedy_generation_matches_hf_with_and_without_cache() {
    let case = "lm_head_generate";
    let device = device();
    let (model, _) = AnyBert::from_pretrained(case_dir(case), None, &device).unwrap();
    let n = case_json(case)["max_new_tokens"].as_u64().unwrap() as usize;
    let want = &outputs(case)["sequences"];
    let with_cache = model.generate(&inputs(case), n, true, &device).unwrap();
    let without_cache = model.generate(&inputs(case), n, false, &device).unwrap();
    assert_eq!(&with_cache, want, "with cache");
    assert_eq!(&without_cache, want, "without cache");
    let got = model.forward(&inputs(case), &device).unwrap();
    assert_close(case, &got, &outputs(case), TOL, |n| n == "logits");
}

fn check_grads(case: &str, grads: NamedTensors) {
    let want = outputs(case);
    let renamed: NamedTensors = grads
        .into_iter()
        .map(|(k, v)| (format!("grad.{k}"), v))
        .collect();
    assert_close(case, &renamed, &want, TOL, |n| n.starts_with("grad."));
}

/// `case`'s model loaded on an autodiff device, `loss(model, HF's input, HF's labels)`
/// backpropagated: every parameter's gradient matches HF's.
fn gradients_match_hf<M: BertPretrained, const D: usize>(
    case: &str,
    loss: impl FnOnce(&M, BertInput, Tensor<D, Int>) -> Tensor<1>,
) {
    let device = device().autodiff();
    let model = M::from_pretrained(case_dir(case), &device).unwrap();
    let x = inputs(case);
    let labels = x["labels"].int("labels", &device).unwrap();
    let grads = loss(&model, hf_input(&x, &device), labels).backward();
    check_grads(case, grad_dict(&model, &grads));
}

#[test]
fn masked_lm_gradients_match_hf_through_the_tied_decoder() {
    gradients_match_hf("masked_lm", |m: &BertForMaskedLM, input, labels| {
        m.forward(input, Some(labels)).unwrap().loss.unwrap()
    });
}

/// The model input of HF's inputs `x` (ids, attention mask, token types).
fn hf_input(x: &NamedTensors, device: &burn::tensor::Device) -> BertInput {
    let int = |name: &str| x[name].int(name, device).unwrap();
    BertInput::new(int("input_ids"))
        .with_attention_mask(int("attention_mask"))
        .with_token_type_ids(int("token_type_ids"))
}

/// HF's inputs of `case` and its labels as masked rows (padded to a multiple of 8).
fn masked_case(case: &str, device: &burn::tensor::Device) -> (BertInput, MaskedPositions) {
    let x = inputs(case);
    let input = hf_input(&x, device);
    let labels: Vec<i64> = x["labels"].to_f32().iter().map(|&l| l as i64).collect();
    let seq = x["labels"].shape[1];
    let masked = MaskedPositions::from_labels(&labels, seq, 8, device).unwrap();
    assert!(masked.num_labelled > 0 && masked.num_labelled < labels.len() / 2);
    (input, masked)
}

/// The MLM head on the masked rows only gives HF's loss and HF's gradients (the tied decoder
/// included), from the full-sequence forward HF runs.
#[test]
fn masked_lm_on_masked_positions_matches_hf() {
    let case = "masked_lm";
    let device = device().autodiff();
    let model = BertForMaskedLM::from_pretrained(case_dir(case), &device).unwrap();
    let (input, masked) = masked_case(case, &device);
    let out = model.forward_masked(input, &masked).unwrap();
    let loss = NamedTensors::from([(
        "loss".to_string(),
        bert::tensors_file::HostTensor::scalar(out.loss.clone()),
    )]);
    assert_close(case, &loss, &outputs(case), TOL, |n| n == "loss");
    check_grads(case, grad_dict(&model, &out.loss.backward()));
}

#[test]
fn pretraining_on_masked_positions_matches_hf() {
    let case = "pretraining";
    let device = device();
    let model = BertForPreTraining::from_pretrained(case_dir(case), &device).unwrap();
    let (input, masked) = masked_case(case, &device);
    let nsp = inputs(case)["next_sentence_label"]
        .int("next_sentence_label", &device)
        .unwrap();
    let out = model.forward_masked(input, &masked, nsp).unwrap();
    let loss = NamedTensors::from([(
        "loss".to_string(),
        bert::tensors_file::HostTensor::scalar(out.loss),
    )]);
    assert_close(case, &loss, &outputs(case), TOL, |n| n == "loss");
}

#[test]
fn sequence_classification_gradients_match_hf() {
    gradients_match_hf(
        "seq_cls_single",
        |m: &BertForSequenceClassification, input, l| {
            let labels = SequenceClassificationLabels::Classes(l);
            m.forward(input, Some(labels)).unwrap().loss.unwrap()
        },
    );
}

#[test]
fn real_all_minilm_l6_v2_matches_hf() {
    let case = "minilm";
    let device = device();
    let dir = fixtures().join("models/all-MiniLM-L6-v2");
    let (model, report) = AnyBert::from_pretrained(&dir, Some("BertModel"), &device).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty(),
        "{:?}",
        report.warnings()
    );
    let got = model.forward(&inputs(case), &device).unwrap();
    assert_close(case, &got, &outputs(case), TOL, |_| true);
}

/// Saves every case with `save_pretrained`, loads it back, and checks the outputs are
/// unchanged. The directories go to `$BERT_ROUNDTRIP_DIR` (for the HF side of the check:
/// `make_reference.py --check-roundtrip DIR` in CI) or a temporary folder.
#[test]
fn save_pretrained_round_trip() {
    let device = device();
    let keep = std::env::var("BERT_ROUNDTRIP_DIR")
        .ok()
        .filter(|d| !d.is_empty());
    let tmp = bert::fixtures::Scratch::dir("roundtrip");
    let root = keep.map(PathBuf::from).unwrap_or(tmp.to_path_buf());
    for case in [
        "bert_model",
        "pretraining",
        "masked_lm",
        "lm_head_cross",
        "lm_head_generate",
        "nsp",
        "seq_cls_single",
        "seq_cls_regression",
        "seq_cls_multi",
        "multiple_choice",
        "token_cls",
        "qa",
    ] {
        let (model, _) = AnyBert::from_pretrained(case_dir(case), None, &device).unwrap();
        let dir = root.join(case);
        model.save_pretrained(&dir).unwrap();
        let (back, report) = AnyBert::from_pretrained(&dir, None, &device).unwrap();
        assert_eq!(back.class(), model.class());
        assert!(
            report.missing.is_empty() && report.unexpected.is_empty(),
            "{case}: {:?}",
            report.warnings()
        );
        let x = inputs(case);
        let a = model.forward(&x, &device).unwrap();
        let b = back.forward(&x, &device).unwrap();
        assert_close(case, &b, &a, 0.0, |_| true);
    }
}

/// Writes `case`'s weights again, renamed by `rename` and stored as `dtype` (F32, F16 or
/// BF16), with its config, into a scratch directory.
fn rewritten_case(
    case: &str,
    tag: &str,
    dtype: &str,
    rename: fn(&str) -> String,
) -> bert::fixtures::Scratch {
    use safetensors::{Dtype, tensor::TensorView};
    let dir = bert::fixtures::Scratch::dir(&format!("parity-{tag}"));
    std::fs::copy(case_dir(case).join("config.json"), dir.join("config.json")).unwrap();
    let weights = bert::Checkpoint::read(case_dir(case)).unwrap().tensors;
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(k, t)| {
            let bytes = match dtype {
                "F32" => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                "F16" => t
                    .data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => t
                    .data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (rename(&k), t.shape, bytes)
        })
        .collect();
    let st_dtype = match dtype {
        "F32" => Dtype::F32,
        "F16" => Dtype::F16,
        _ => Dtype::BF16,
    };
    let views: Vec<(String, TensorView)> = encoded
        .iter()
        .map(|(k, shape, b)| {
            (
                k.clone(),
                TensorView::new(st_dtype, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    dir
}

/// HF checkpoints in other shapes load into the same model: old TF-converted names (LayerNorm
/// `gamma`/`beta`) with the MLM output bias stored only as the decoder's (exactly the same
/// outputs), and weights stored in f16 or bf16 (cast to the device's float type on loading;
/// outputs within the halves' rounding, and not bit-equal, so the cast really happened).
#[test]
fn legacy_names_and_half_precision_checkpoints_load_the_same_model() {
    let case = "masked_lm";
    let device = device();
    let logits = |dir: &std::path::Path| {
        let (model, report) = AnyBert::from_pretrained(dir, None, &device).unwrap();
        assert!(
            report.missing.is_empty() && report.unexpected.is_empty(),
            "{dir:?}: {:?}",
            report.warnings()
        );
        model.forward(&inputs(case), &device).unwrap()["logits"].clone()
    };
    let want = logits(&case_dir(case));
    let legacy = |k: &str| {
        k.replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta")
            .replace("cls.predictions.bias", "cls.predictions.decoder.bias")
    };
    let dir = rewritten_case(case, "legacy", "F32", legacy);
    assert_eq!(max_abs_diff("logits", &logits(&dir), &want), 0.0);
    for (dtype, tol) in [("F16", 2e-2), ("BF16", 1e-1)] {
        let dir = rewritten_case(case, dtype, dtype, |k| k.to_string());
        let diff = max_abs_diff("logits", &logits(&dir), &want);
        eprintln!("{dtype}: max |Δ logits| {diff}");
        assert!(diff > 0.0 && diff < tol, "{dtype}: max |Δ logits| {diff}");
    }
}
