//! Fine-tuning steps equal torch `AdamW` (two groups) + HF's linear warmup schedule, with and
//! without `clip_grad_norm_(1.0)`; and gradient accumulation equals the large batch.
//! References: `tests/reference/adamw.json` from `make_train_reference.py`.

use std::path::PathBuf;

use bert::hub::{BertPretrained, state_dict};
use bert::{BertForSequenceClassification, BertInput, SequenceClassificationLabels};
use bert_train::{
    AdamW, AdamWArgs, ParamGroupSummary, SchedulerType, accumulate_scaled, adamw_with_no_decay,
    clip_grad_norm, get_scheduler,
};
use burn::lr_scheduler::LrScheduler;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

fn device() -> Device {
    bert::backend::test_device().autodiff()
}

/// The HF model of the parity tests, from the checkout this binary was built from, else under
/// the working directory (a binary carried to a GPU machine, run from the repository root).
fn case_dir() -> PathBuf {
    let case = "bert/tests/reference/seq_cls_single";
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(case);
    if built.is_dir() { built } else { case.into() }
}

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/adamw.json")).unwrap()
}

fn int2(v: &Value, device: &Device) -> Tensor<2, Int> {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone()).unwrap();
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_data(TensorData::new(rows.concat(), shape), device)
}

fn batch(b: &Value, device: &Device) -> (BertInput, SequenceClassificationLabels) {
    let input = BertInput::new(int2(&b["input_ids"], device))
        .with_attention_mask(int2(&b["attention_mask"], device))
        .with_token_type_ids(int2(&b["token_type_ids"], device));
    let labels: Vec<i64> = serde_json::from_value(b["labels"].clone()).unwrap();
    let n = labels.len();
    let labels = Tensor::from_data(TensorData::new(labels, [n]), device);
    (input, SequenceClassificationLabels::Classes(labels))
}

/// Which optimizer steps the model.
#[derive(Clone, Copy, PartialEq)]
enum Optim {
    /// Burn's `ModuleOptimizer` after [`clip_grad_norm`].
    Burn,
    /// [`AdamW`], what the trainer uses (clipping in the step, its own state), with the
    /// device's fused kernels (flex, ndarray, libtorch, CubeCL).
    Ours,
    /// [`AdamW::composed`]: the same arithmetic from tensor ops, the kernels' reference.
    Composed,
}

fn finetune(clip: bool, optim_kind: Optim) {
    let r = reference();
    let run = &r[if clip { "clip" } else { "no_clip" }];
    let device = device();
    let mut model = BertForSequenceClassification::from_pretrained(case_dir(), &device).unwrap();
    let args = AdamWArgs {
        learning_rate: r["lr"].as_f64().unwrap(),
        weight_decay: r["weight_decay"].as_f64().unwrap() as f32,
        ..AdamWArgs::default()
    };
    let summary = ParamGroupSummary::of(&model);
    assert!(
        summary
            .no_decay_paths
            .iter()
            .all(|p| p.ends_with("bias") || p.ends_with("LayerNorm.weight"))
    );
    // embeddings LayerNorm (2) + 10 per layer + pooler and classifier biases (2)
    assert_eq!(summary.no_decay_tensors, 2 + 2 * 10 + 2, "{summary}");
    let mut optim = adamw_with_no_decay(&args);
    let mut multi = match optim_kind {
        Optim::Composed => AdamW::new(&args).composed(),
        _ => AdamW::new(&args),
    };
    let max_norm = if clip { 1.0 } else { f64::INFINITY };
    let mut schedule = get_scheduler(
        SchedulerType::Linear,
        args.learning_rate,
        r["warmup"].as_u64().unwrap() as usize,
        r["total"].as_u64().unwrap() as usize,
    )
    .unwrap();
    for (step, (b, want)) in r["batches"]
        .as_array()
        .unwrap()
        .iter()
        .zip(run["steps"].as_array().unwrap())
        .enumerate()
    {
        let lr = schedule.step();
        assert!((lr - want["lr"].as_f64().unwrap()).abs() < 1e-15);
        let (input, labels) = batch(b, &device);
        let loss = model.forward(input, Some(labels)).unwrap().loss.unwrap();
        let loss_value: f32 = loss.clone().into_scalar();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = if optim_kind != Optim::Burn {
            let (stepped, norm) = multi.step(lr, model, grads, max_norm).unwrap();
            model = stepped;
            norm
        } else {
            let norm = clip_grad_norm(&model, &mut grads, max_norm);
            model = optim.step(lr, model, grads);
            norm
        };
        let norm = norm.into_scalar::<f32>() as f64;
        let (want_loss, want_norm) = (
            want["loss"].as_f64().unwrap(),
            want["grad_norm"].as_f64().unwrap(),
        );
        assert!(
            ((loss_value as f64 - want_loss) / want_loss).abs() < 1e-5,
            "step {step}: loss {loss_value} vs {want_loss}"
        );
        assert!(
            ((norm - want_norm) / want_norm).abs() < 1e-4,
            "step {step}: grad norm {norm} vs {want_norm}"
        );
    }
    let params = state_dict(&model);
    for (name, want) in run["params"].as_object().unwrap() {
        let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
        let got = params[name].to_f32();
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-6,
            "{name}: max abs diff {diff:e} after the last step"
        );
    }
}

#[test]
fn adamw_two_groups_linear_warmup_matches_torch() {
    finetune(false, Optim::Burn);
}

#[test]
fn adamw_with_global_clipping_matches_torch() {
    finetune(true, Optim::Burn);
}

#[test]
fn trainer_adamw_matches_torch() {
    finetune(false, Optim::Ours);
}

#[test]
fn trainer_adamw_clipping_in_the_step_matches_torch() {
    finetune(true, Optim::Ours);
}

#[test]
fn composed_adamw_clipping_in_the_step_matches_torch() {
    finetune(true, Optim::Composed);
}

/// Every gradient of `a` equals `b`'s within `tol`.
fn assert_same_grads<M: Module>(
    model: &M,
    a: &mut GradientsParams,
    b: &mut GradientsParams,
    tol: f32,
) {
    struct Cmp<'a> {
        a: &'a mut GradientsParams,
        b: &'a mut GradientsParams,
        tol: f32,
        n: usize,
    }
    impl ModuleVisitor for Cmp<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let (Some(x), Some(y)) = (self.a.get::<D>(p.id), self.b.get::<D>(p.id)) else {
                return;
            };
            let diff: f32 = (x - y).abs().max().into_scalar();
            assert!(diff < self.tol, "gradient differs by {diff:e}");
            self.n += 1;
        }
    }
    let mut c = Cmp { a, b, tol, n: 0 };
    model.visit(&mut c);
    assert!(c.n > 20, "compared {} gradients", c.n);
}

/// 4 micro-batches with accumulation 4 give the gradients of the one batch of 4x the size.
#[test]
fn accumulation_equals_the_large_batch() {
    let r = reference();
    let device = device();
    let model = BertForSequenceClassification::from_pretrained(case_dir(), &device).unwrap();
    let micro: Vec<_> = r["batches"].as_array().unwrap()[..4]
        .iter()
        .map(|b| batch(b, &device))
        .collect();

    let mut acc = None;
    for (input, labels) in micro.clone() {
        let loss = model.forward(input, Some(labels)).unwrap().loss.unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        acc = Some(accumulate_scaled(&model, acc, grads, 0.25));
    }
    let cat = |f: &dyn Fn(&BertInput) -> Tensor<2, Int>| {
        Tensor::cat(micro.iter().map(|(i, _)| f(i)).collect(), 0)
    };
    let input = BertInput::new(cat(&|i| i.input_ids.clone()))
        .with_attention_mask(cat(&|i| i.attention_mask.clone().unwrap()))
        .with_token_type_ids(cat(&|i| i.token_type_ids.clone().unwrap()));
    let labels = Tensor::cat(
        micro
            .iter()
            .map(|(_, l)| match l {
                SequenceClassificationLabels::Classes(c) => c.clone(),
                _ => unreachable!(),
            })
            .collect(),
        0,
    );
    let loss = model
        .forward(input, Some(SequenceClassificationLabels::Classes(labels)))
        .unwrap()
        .loss
        .unwrap();
    let mut big = GradientsParams::from_grads(loss.backward(), &model);
    assert_same_grads(&model, &mut acc.unwrap(), &mut big, 1e-5);
}
