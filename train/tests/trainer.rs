//! The trainer: a run killed mid-way and resumed gives the same loss at every later step as an
//! uninterrupted run; partial or corrupted checkpoints are refused; a short fine-tune learns.

use std::cell::Cell;
use std::path::Path;

use bert::{BertForSequenceClassification, BertPretrained};
use bert_train::{
    HeadLoss, InMemoryBatches, Resume, TrainError, TrainTask, TrainingArguments, train,
};
use burn::tensor::{Device, Tensor};
use serde_json::Value;

mod common;
use bert::fixtures::assert_err;
use common::*;

fn device() -> Device {
    bert::backend::test_device().autodiff()
}

/// Sequence classification; fails on the `fail_at`-th loss call (a simulated kill). Records
/// the device reads made so far (`bert::reads`) at every loss call.
struct Task {
    calls: Cell<usize>,
    fail_at: Option<usize>,
    /// The loss call from which the loss is NaN (a diverged run).
    nan_from: Option<usize>,
    reads: std::cell::RefCell<Vec<usize>>,
}

impl Task {
    fn new(fail_at: Option<usize>) -> Self {
        Self {
            calls: Cell::new(0),
            fail_at,
            nan_from: None,
            reads: Default::default(),
        }
    }
}

impl TrainTask<BertForSequenceClassification, Batch> for Task {
    /// [`ClassifierTask`]'s loss, counting calls and device reads, failing or diverging on cue.
    fn loss(
        &self,
        model: &BertForSequenceClassification,
        b: Batch,
    ) -> Result<Tensor<1>, TrainError> {
        self.calls.set(self.calls.get() + 1);
        self.reads.borrow_mut().push(bert::reads::count());
        if self.fail_at == Some(self.calls.get()) {
            return Err(TrainError::Argument("killed".into()));
        }
        let loss = model.head_loss(b)?;
        Ok(match self.nan_from {
            Some(k) if self.calls.get() >= k => loss * f32::NAN,
            _ => loss,
        })
    }
}

/// A run of the tiny model (seed 1) with `args` on `data` and the plain task.
fn run(
    args: &TrainingArguments,
    data: &InMemoryBatches<Batch>,
) -> Result<bert_train::TrainOutput<BertForSequenceClassification>, TrainError> {
    let device = device();
    train(args, model(&device, 1), data, &Task::new(None), &device)
}

fn args(dir: &Path) -> TrainingArguments {
    TrainingArguments {
        gradient_accumulation_steps: 2,
        warmup: 2.0,
        save_steps: Some(3),
        save_total_limit: Some(2),
        ..run_args(dir, 8, 1e-3)
    }
}

fn losses_in_log(dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn killed_and_resumed_run_has_the_same_losses() {
    let (_rng, device, data) = setup(true, 42);

    let full_dir = tmp("full");
    let full = train(
        &args(&full_dir),
        model(&device, 1),
        &data,
        &Task::new(None),
        &device,
    )
    .unwrap();
    assert_eq!(full.step_losses.len(), 8);
    let final_model =
        BertForSequenceClassification::from_pretrained(full_dir.join("final_model"), &device)
            .unwrap();
    assert_eq!(
        bert::hub::state_dict(&final_model),
        bert::hub::state_dict(&full.model),
        "final model in HF format"
    );
    // HF's Trainer logs the rate the step's update used, read before `lr_scheduler.step()`
    // (transformers 5.24 trainer.py, "get leaning rate before update"): linear, warmup 2 of 8
    // steps, lr(k) = 1e-3 * k / 2 up to k = 2, then 1e-3 * (8 - k) / 6, logged at step k + 1.
    let logged_lr: Vec<f64> = std::fs::read_to_string(full_dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v["learning_rate"].as_f64())
        .collect();
    let hf_lr: Vec<f64> = (0..8)
        .map(|k: usize| {
            if k <= 2 {
                1e-3 * k as f64 / 2.0
            } else {
                1e-3 * (8 - k) as f64 / 6.0
            }
        })
        .collect();
    assert_eq!(logged_lr.len(), 8, "{logged_lr:?}");
    for (a, b) in logged_lr.iter().zip(&hf_lr) {
        assert!(
            (a - b).abs() < 1e-12,
            "logged {logged_lr:?} vs HF {hf_lr:?}"
        );
    }
    let png = std::fs::read(full_dir.join("training.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG", "training.png is a PNG");

    // Killed during step 6 (micro-batch 11): the last checkpoint is step 3.
    let dir = tmp("killed");
    let killed = train(
        &args(&dir),
        model(&device, 1),
        &data,
        &Task::new(Some(11)),
        &device,
    );
    assert!(killed.is_err());
    let checkpoints: Vec<_> = bert_train::checkpoint::list_checkpoints(&dir)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(checkpoints, [3]);

    // Resumed with a differently initialised model: everything comes from the checkpoint.
    let mut resume_args = args(&dir);
    resume_args.resume = Resume::Latest;
    let resumed = train(
        &resume_args,
        model(&device, 99),
        &data,
        &Task::new(None),
        &device,
    )
    .unwrap();
    assert_eq!(resumed.step_losses.first().map(|s| s.0), Some(4));
    assert_eq!(
        resumed.step_losses,
        full.step_losses[3..].to_vec(),
        "losses after resume"
    );
    assert_eq!(
        losses_in_log(&dir),
        losses_in_log(&full_dir),
        "log.jsonl after resume"
    );
    // save_total_limit = 2 keeps the newest two.
    let kept: Vec<_> = bert_train::checkpoint::list_checkpoints(&dir)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(kept, [6, 8]);
}

#[test]
fn partial_or_corrupted_checkpoints_are_refused() {
    let (_rng, _, data) = setup(false, 0);
    let dir = tmp("corrupt");
    let mut a = TrainingArguments {
        max_steps: Some(3),
        ..args(&dir)
    };
    run(&a, &data).unwrap();
    let ckpt = dir.join("checkpoint-3");
    a.resume = Resume::Checkpoint(ckpt.clone());

    // A half-written checkpoint left by a crash is a .tmp folder: never picked as the latest.
    std::fs::create_dir_all(dir.join(".tmp-checkpoint-9")).unwrap();
    assert_eq!(bert_train::checkpoint::list_checkpoints(&dir).len(), 1);

    let model_file = ckpt.join("model.bpk");
    let bytes = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &bytes[..bytes.len() / 2]).unwrap();
    assert_err(
        run(&a, &data),
        &["partial or corrupted checkpoint: model.bpk has"],
    );

    std::fs::write(&model_file, &bytes).unwrap();
    std::fs::remove_file(ckpt.join("trainer_state.json")).unwrap();
    assert_err(run(&a, &data), &["is not a complete checkpoint"]);
}

/// Faults around checkpoints: a save that fails (here the destination is taken by a file, as a
/// full disk or a read-only folder would fail it) leaves the earlier checkpoints as they were
/// and says so; `--resume` with no path skips a newest checkpoint that does not verify and
/// resumes from the one before; an output folder that cannot be made is named.
#[test]
fn checkpoint_faults_keep_what_was_saved() {
    let (_rng, _, data) = setup(false, 0);
    let dir = tmp("faults");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("checkpoint-6"), b"not a folder").unwrap();
    let a = args(&dir);
    assert_err(
        run(&a, &data),
        &[
            "checkpoint-6 was not saved",
            "the earlier checkpoints are intact: checkpoint-3",
        ],
    );
    assert!(bert_train::checkpoint::verify(&dir.join("checkpoint-3")).is_ok());
    assert!(
        !dir.join(".tmp-checkpoint-6").exists(),
        "temporary folder left"
    );

    // A full run (checkpoints 6 and 8 kept), then the newest truncated: resuming with no path
    // skips it and continues from checkpoint-6 (steps 7 and 8 again).
    std::fs::remove_file(dir.join("checkpoint-6")).unwrap();
    run(&a, &data).unwrap();
    let model_file = dir.join("checkpoint-8/model.bpk");
    let bytes = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &bytes[..bytes.len() / 2]).unwrap();
    let mut r = args(&dir);
    r.resume = Resume::Latest;
    let out = run(&r, &data).unwrap();
    assert_eq!(
        out.step_losses.iter().map(|s| s.0).collect::<Vec<_>>(),
        [7, 8]
    );
    // With every checkpoint broken, resuming is an error naming each one and why.
    for step in [6, 8] {
        let f = dir.join(format!("checkpoint-{step}/trainer_state.json"));
        std::fs::remove_file(f).ok();
    }
    assert_err(
        run(&r, &data),
        &["no checkpoint", "checkpoint-8", "checkpoint-6"],
    );

    // An output folder under a file cannot be made.
    let mut u = args(&dir.join("checkpoint-8/model.bpk/out"));
    u.max_steps = Some(3);
    assert_err(run(&u, &data), &["model.bpk/out"]);
}

#[test]
fn bad_arguments_are_named() {
    let _rng = rng_lock();
    let device = device();
    let dir = tmp("bad");
    let empty = InMemoryBatches::<Batch>::new(vec![], false, 0);
    let task = Task::new(None);
    assert_err(
        train(&args(&dir), model(&device, 1), &empty, &task, &device),
        &["training data is empty"],
    );
    let data = InMemoryBatches::new(batches(&device), false, 0);
    let mut a = args(&dir);
    a.warmup = 20.0;
    assert_err(
        train(&a, model(&device, 1), &data, &task, &device),
        &["warmup steps (20) exceed the total training steps (8)"],
    );
}

/// A loss that stops being finite ends the run with an error naming the step (read at the
/// logging step; the optimizer step of a NaN loss is not taken silently into a saved model).
#[test]
fn a_diverged_loss_is_named_with_its_step() {
    let (_rng, device, data) = setup(false, 0);
    let dir = tmp("nan");
    let mut task = Task::new(None);
    task.nan_from = Some(7); // micro-batch 7 = optimizer step 4 (2 micro-batches per step)
    let e = train(&args(&dir), model(&device, 1), &data, &task, &device).unwrap_err();
    assert!(
        matches!(e, TrainError::NonFiniteLoss { step: 4, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("training diverged: the loss is NaN at step 4"),
        "{e}"
    );
}

/// No device read inside a training step: the loss and the grad norm are read at logging steps
/// only (all pending steps at once), clipping scales on the device, and the ids and labels are
/// checked from ranges taken on the host.
#[test]
fn steps_between_logging_steps_read_nothing_from_the_device() {
    let (_rng, device, data) = setup(false, 0);
    let dir = tmp("reads");
    let a = TrainingArguments {
        max_steps: Some(9),
        logging_steps: 4,
        save_steps: None,
        max_grad_norm: 0.5,
        ..args(&dir)
    };
    let task = Task::new(None);
    let start = bert::reads::count();
    let out = train(&a, model(&device, 1), &data, &task, &device).unwrap();
    // Two micro-batches a step; the reads made before each loss call, from the run's start.
    let reads: Vec<usize> = task.reads.borrow().iter().map(|r| r - start).collect();
    assert_eq!(reads.len(), 18);
    for (call, &r) in reads.iter().enumerate() {
        let step = call / 2 + 1;
        // Steps 1-4 read nothing; step 4 logs (one read), so do steps 8 and 9 (the last).
        let want = if step <= 4 {
            0
        } else if step <= 8 {
            1
        } else {
            2
        };
        assert_eq!(r, want, "loss call {call} (step {step}): reads {reads:?}");
    }
    assert_eq!(bert::reads::count() - start, 3, "one read per logging step");
    // Every step's loss was read back, finite, in order.
    let steps: Vec<usize> = out.step_losses.iter().map(|s| s.0).collect();
    assert_eq!(steps, (1..=9).collect::<Vec<_>>());
    assert!(out.step_losses.iter().all(|s| s.1.is_finite()));
    // Without host ranges the model checks on the device: one read for the ids, one for the
    // token types and one for the labels, every micro-batch.
    let Batch { input, labels } = batches(&device).remove(0);
    let m = model(&device, 1);
    let before = bert::reads::count();
    m.forward(input.clone(), Some(labels.clone())).unwrap();
    assert_eq!(bert::reads::count(), before);
    m.forward(input.with_host_bounds(Default::default()), Some(labels))
        .unwrap();
    assert_eq!(bert::reads::count(), before + 3);
}

/// The whole fine-tuning path can fit: a tiny classifier, dropout off, memorises 8 random token
/// sequences with random labels (3 classes) through the library's own collator, task and
/// trainer. Chance loss is ln 3 = 1.10; after 100 full-batch AdamW steps (linear decay) the loss
/// is below 0.02 and every training item is classified right.
#[test]
fn a_tiny_model_memorises_eight_examples() {
    use bert::ProblemType;
    use bert_datasets::collate::{ClassificationItem, TokenizedText};
    use bert_datasets::tasks::classification::Label;
    use bert_train::ItemBatches;
    use bert_train::tasks::{Collates, SequenceClassificationTask};
    use rand::{Rng, SeedableRng};

    let _l = rng_lock();
    let device = device();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let items: Vec<ClassificationItem> = (0..8)
        .map(|_| ClassificationItem {
            text: TokenizedText::single((0..8).map(|_| rng.random_range(1..99)).collect()),
            label: Label::Class(rng.random_range(0..3)),
        })
        .collect();
    let mut model = common::model(&device, 3);
    let mut config = model.bert.config.clone();
    config.disable_dropout();
    model = BertForSequenceClassification::new(&config, &device);
    let fixtures = bert::fixtures::dir().unwrap();
    let tokenizer =
        bert_datasets::BertTokenizer::from_pretrained(fixtures.join("models/all-MiniLM-L6-v2"))
            .unwrap();
    let problem = ProblemType::SingleLabelClassification;
    let task = SequenceClassificationTask::new(problem, &items, 8, tokenizer, &device).unwrap();
    let batches = ItemBatches::from_batcher(items, 8, true, 0, task.collator().unwrap(), &device);
    let dir = tmp("memorise");
    let args = TrainingArguments {
        output_dir: dir.to_path_buf(),
        max_steps: Some(100),
        logging_steps: 10,
        save_steps: None,
        progress: false,
        optim: bert_train::AdamWArgs {
            learning_rate: 5e-3,
            ..Default::default()
        },
        ..TrainingArguments::default()
    };
    let out = train(&args, model, &batches, &task, &device).unwrap();
    let (first, last) = (out.step_losses[0].1, out.step_losses.last().unwrap().1);
    eprintln!("loss {first} → {last}");
    assert!(first > 0.8 && last < 0.02, "loss {first} → {last}");
    let m = task.evaluate(&out.model).unwrap().unwrap();
    assert_eq!(m["eval_accuracy"], 1.0, "{m:?}");
}
