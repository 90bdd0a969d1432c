//! Mixed precision and gradient checkpointing.
//!
//! - `--bf16` keeps f32 master weights: after 5 AdamW steps the parameters differ from the f32
//!   run's by < 1e-2 relative (the products round to bf16, the updates do not), and they are
//!   still f32.
//! - `--fp16` trains with loss scaling to the end with finite losses and saves its scaler.
//! - Gradient checkpointing recomputes activations and gives the same gradients bit for bit.
//!
//! - Pure bf16 (`--dtype bf16`) on the same steps is reported beside it and drifts further: it
//!   runs in a child process, as a device's float type is set once per process.
//!
//! Half types run on the backends that take them: flex and tch here (others skip, saying so).

mod common;

use std::path::Path;

use bert::{BertForSequenceClassification, BertPretrained};
use bert_train::{InMemoryBatches, TrainingArguments, train};
use burn::tensor::{DType, Device};
use common::*;

fn backend() -> String {
    std::env::var("BERT_TEST_BACKEND").unwrap_or_else(|_| "flex".into())
}

/// Half-precision products on this backend (flex, tch and the NVIDIA backends; lavapipe,
/// ndarray and CubeCL's CPU backend are left out).
fn takes_half() -> bool {
    let name = backend();
    let ok = matches!(
        name.split(':').next(),
        Some("flex" | "tch" | "tch-cuda" | "cuda")
    );
    if !ok {
        eprintln!("skipped: half precision is tested on flex, tch and the NVIDIA backends");
    }
    ok
}

/// The RNG lock, the test device (autodiff) and the batches, where the backend takes
/// half-precision products ([`takes_half`]).
fn half_precision_setup() -> Option<(
    std::sync::MutexGuard<'static, ()>,
    Device,
    InMemoryBatches<Batch>,
)> {
    if !takes_half() {
        return None;
    }
    Some(setup(false, 0))
}

fn args(dir: &Path, steps: usize) -> TrainingArguments {
    run_args(dir, steps, 1e-3)
}

/// Every parameter, flattened, in f32.
fn params(model: &BertForSequenceClassification) -> Vec<f32> {
    bert::hub::state_dict(model)
        .values()
        .flat_map(|t| t.to_f32())
        .collect()
}

/// ‖a − b‖ / ‖b‖.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        d += ((x - y) as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    (d / n).sqrt()
}

#[test]
fn bf16_keeps_f32_master_weights_on_the_f32_trajectory() {
    let Some((_l, device, data)) = half_precision_setup() else {
        return;
    };
    let run = |bf16: bool, tag: &str| {
        let dir = tmp(tag);
        let mut a = args(&dir, 5);
        a.bf16 = bf16;
        train(&a, model(&device, 1), &data, &ClassifierTask, &device).unwrap()
    };
    let f32_run = run(false, "f32");
    let bf16_run = run(true, "bf16");
    let start = params(&model(&device, 1));
    let (p32, p16) = (params(&f32_run.model), params(&bf16_run.model));
    let moved = relative(&p32, &start);
    let diff = relative(&p16, &p32);
    // Pure bf16 against f32 from the same initial weights, dropout off (the backends draw
    // their masks and initial values differently in bf16).
    let init = tmp("pure-bf16-init");
    let mut config = model(&device, 1).bert.config.clone();
    config.disable_dropout();
    device.seed(1);
    let start_nodrop = BertForSequenceClassification::new(&config, &device);
    start_nodrop.save_pretrained(&init).unwrap();
    let dir = tmp("f32-nodrop");
    let f32_nodrop = train(
        &args(&dir, 5),
        start_nodrop,
        &data,
        &ClassifierTask,
        &device,
    )
    .unwrap();
    let pure = relative(&pure_bf16_params(&init), &params(&f32_nodrop.model));
    eprintln!(
        "after 5 steps: parameters moved {moved:.3e} (relative) from init; bf16 mixed vs f32 {diff:.3e}, pure bf16 vs f32 {pure:.3e}"
    );
    assert!(diff < 1e-2, "bf16 mixed drifted {diff} from f32");
    assert!(
        pure > 2.0 * diff,
        "pure bf16 ({pure}) should drift further than mixed ({diff}): its weights are rounded"
    );
    assert!(
        moved > 10.0 * diff,
        "the steps moved the weights ({moved}) beyond the bf16 noise ({diff})"
    );
    let weight = bf16_run.model.bert.embeddings.word_embeddings.weight.val();
    assert_eq!(weight.dtype(), DType::F32, "master weights stay f32");
    for ((_, a), (_, b)) in f32_run.step_losses.iter().zip(&bf16_run.step_losses) {
        assert!((a - b).abs() < 0.05 * a.abs().max(1.0), "{a} vs {b}");
    }
}

/// The same 5 steps in pure bf16 (`--dtype bf16`: weights, gradients and AdamW state all
/// bf16) from the model saved in `init`, run by [`pure_bf16_child`] in a child process (a
/// device's float type is set once per process), as f32 values.
fn pure_bf16_params(init: &Path) -> Vec<f32> {
    let dir = tmp("pure-bf16-params");
    let out = dir.join("params.bin");
    // The child's test name: `pure_bf16_child` in this file's own test binary, prefixed by
    // its module where a binary includes the file as one (benches/tests/gpu.rs).
    let child = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::pure_bf16_child"),
        None => "pure_bf16_child".to_string(),
    };
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([child.as_str(), "--exact", "--test-threads", "1"])
        .env("BERT_PURE_BF16_OUT", &out)
        .env("BERT_PURE_BF16_INIT", init)
        .status()
        .unwrap();
    assert!(status.success(), "the pure bf16 child failed");
    let bytes = std::fs::read(&out)
        .unwrap_or_else(|e| panic!("the child test `{child}` wrote no {}: {e}", out.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Run only as the child of [`pure_bf16_params`] (a no-op otherwise): the model of
/// `$BERT_PURE_BF16_INIT` loaded onto a device configured to bf16 (its weights cast on loading),
/// 5 steps, the parameters written to `$BERT_PURE_BF16_OUT`.
#[test]
fn pure_bf16_child() {
    let Some(out) = std::env::var_os("BERT_PURE_BF16_OUT") else {
        return;
    };
    let name = backend();
    let backend: bert::backend::Backend = name.parse().unwrap();
    let device = backend
        .device_with(bert::backend::Precision::BF16)
        .unwrap()
        .autodiff();
    let data = InMemoryBatches::new(batches(&device), false, 0);
    let dir = tmp("pure-bf16");
    let init = std::env::var_os("BERT_PURE_BF16_INIT").unwrap();
    let start = BertForSequenceClassification::from_pretrained(init, &device).unwrap();
    let trained = train(&args(&dir, 5), start, &data, &ClassifierTask, &device).unwrap();
    let weight = trained.model.bert.embeddings.word_embeddings.weight.val();
    assert_eq!(weight.dtype(), DType::BF16, "pure bf16 weights");
    let bytes: Vec<u8> = params(&trained.model)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn fp16_trains_to_the_end_with_loss_scaling() {
    let Some((_l, device, data)) = half_precision_setup() else {
        return;
    };
    let dir = tmp("fp16");
    let mut a = args(&dir, 6);
    a.fp16 = true;
    let out = train(&a, model(&device, 1), &data, &ClassifierTask, &device).unwrap();
    assert_eq!(out.step_losses.len(), 6);
    assert!(
        out.step_losses.iter().all(|s| s.1.is_finite()),
        "{:?}",
        out.step_losses
    );
    let scaler = bert_train::GradScaler::load(&dir.join("checkpoint-6")).unwrap();
    assert!(scaler.scale >= 1.0 && scaler.scale <= 65536.0, "{scaler:?}");
    // Resuming restores the scaler and continues.
    let resume_to = |steps: usize| {
        let mut r = args(&dir, steps);
        r.fp16 = true;
        r.resume = bert_train::Resume::Latest;
        train(&r, model(&device, 1), &data, &ClassifierTask, &device).unwrap()
    };
    let more = resume_to(8);
    assert_eq!(
        more.step_losses.iter().map(|s| s.0).collect::<Vec<_>>(),
        [7, 8]
    );
    // A scale of 1e300 overflows: the steps after it are skipped (the scheduler stays behind
    // the trainer by as many), and a checkpoint after skipped steps resumes. (The edit keeps
    // the file's size, which the checkpoint's manifest checks.)
    let scaler_file = dir
        .join("checkpoint-8")
        .join(bert_train::grad_scaler::SCALER_FILE);
    let text = std::fs::read_to_string(&scaler_file).unwrap();
    assert!(text.contains("\"scale\":65536.0"), "{text}");
    std::fs::write(&scaler_file, text.replace("65536.0", "1.0e300")).unwrap();
    resume_to(10);
    let after = bert_train::GradScaler::load(&dir.join("checkpoint-10")).unwrap();
    assert!(after.skipped_steps >= 1, "{after:?}");
    let resumed = resume_to(12);
    assert_eq!(
        resumed.step_losses.iter().map(|s| s.0).collect::<Vec<_>>(),
        [11, 12]
    );
}

#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    let _l = rng_lock();
    let device = bert::backend::test_device();
    let grads = |d: Device| {
        let mut config = bert::BertConfig::tiny(99, 32, 2, 4);
        config.max_position_embeddings = 64;
        config.set_num_labels(3);
        config.disable_dropout();
        d.seed(7);
        let m = BertForSequenceClassification::new(&config, &d);
        let Batch { input, labels } = batches(&d).remove(0);
        let loss = m.forward(input, Some(labels)).unwrap().loss.unwrap();
        bert::hub::grad_dict(&m, &loss.backward())
    };
    let plain = grads(device.clone().autodiff());
    let checkpointed = grads(device.autodiff().gradient_checkpointing());
    assert_eq!(plain.len(), checkpointed.len());
    assert!(plain.len() > 20);
    for (k, t) in &plain {
        assert_eq!(t.to_f32(), checkpointed[k].to_f32(), "{k}");
    }
}
