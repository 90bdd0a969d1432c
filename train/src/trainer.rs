//! The training loop, with HF `TrainingArguments` names: micro-batches, accumulation, global
//! clipping, AdamW in two groups, an HF schedule, JSONL logging, evaluation with early
//! stopping, atomic checkpoints every `save_steps` and exact resume.
//!
//! Exact resume: everything a step depends on is a function of the step number or is in the
//! checkpoint. The micro-batch stream is `(epoch, index)` of a seeded per-epoch order, the
//! device RNG (dropout) is re-seeded from `seed` and the step at every `save_steps` boundary,
//! and the model, optimizer and scheduler states are saved. A run killed at step `k` and
//! resumed from its last checkpoint gives the same loss at every later step on CPU backends.
//! (Burn's device RNG is process-wide: two trainings running at once in one process draw from
//! the same generator.)
//!
//! No host sync inside a step: losses and gradient norms stay on the device and are read at
//! logging steps (`logging_steps`), all pending steps in one read; clipping scales on the
//! device.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bert::BertPretrained;
use bert::precision::{Autocast, autocast};
use bert_datasets::BertTokenizer;
use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::checkpoint::{self, MODEL_FILE, SCHEDULER_FILE, TrainerState};
use crate::data::BatchSource;
use crate::head_loss::HeadLoss;
use crate::plot::{Panel, Series};
use crate::{
    AdamW, AdamWArgs, GradScaler, ParamGroupSummary, SchedulerType, TrainError, accumulate_scaled,
    get_scheduler, warmup_steps,
};

/// Evaluation metrics by name (`eval_loss`, `eval_accuracy`, …).
pub type Metrics = BTreeMap<String, f64>;

/// What [`TrainTask::evaluate`] returns from `(name, value)` pairs (HF's `eval_*` names).
pub fn eval_metrics<const N: usize>(pairs: [(&str, f64); N]) -> Option<Metrics> {
    Some(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// HF `TrainingArguments`, the subset this trainer implements, with HF's defaults.
#[derive(Debug, Clone)]
pub struct TrainingArguments {
    pub output_dir: PathBuf,
    /// 3.0; ignored when `max_steps` is set.
    pub num_train_epochs: f64,
    pub max_steps: Option<usize>,
    /// 1
    pub gradient_accumulation_steps: usize,
    pub optim: AdamWArgs,
    /// linear
    pub lr_scheduler_type: SchedulerType,
    /// Warmup: a step count if ≥ 1, else a ratio of the total steps (0).
    pub warmup: f64,
    /// 1.0; `f64::INFINITY` disables clipping (the norm is still logged).
    pub max_grad_norm: f64,
    /// Mixed precision with bfloat16 matrix products (HF `bf16`): parameters, optimizer state
    /// and everything but the products stay f32 (`bert::precision`).
    pub bf16: bool,
    /// Mixed precision with float16 matrix products and loss scaling (HF `fp16`,
    /// [`crate::GradScaler`]): a step with inf/NaN gradients is skipped.
    pub fp16: bool,
    /// 42
    pub seed: u64,
    /// 500
    pub logging_steps: usize,
    pub eval_steps: Option<usize>,
    /// 500
    pub save_steps: Option<usize>,
    pub save_total_limit: Option<usize>,
    /// Stop after this many evaluations without improvement of `metric_for_best_model`.
    pub early_stopping_patience: Option<usize>,
    /// `eval_loss`
    pub metric_for_best_model: String,
    pub greater_is_better: bool,
    /// Resume from a checkpoint (HF `resume_from_checkpoint`).
    pub resume: Resume,
    /// Progress bar on stderr.
    pub progress: bool,
}

/// Where to resume from.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    No,
    /// The newest `checkpoint-N` of `output_dir` (none: start fresh).
    Latest,
    Checkpoint(PathBuf),
}

impl Default for TrainingArguments {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("output"),
            num_train_epochs: 3.0,
            max_steps: None,
            gradient_accumulation_steps: 1,
            optim: AdamWArgs::default(),
            lr_scheduler_type: SchedulerType::Linear,
            warmup: 0.0,
            max_grad_norm: 1.0,
            bf16: false,
            fp16: false,
            seed: 42,
            logging_steps: 500,
            eval_steps: None,
            save_steps: Some(500),
            save_total_limit: None,
            early_stopping_patience: None,
            metric_for_best_model: "eval_loss".into(),
            greater_is_better: false,
            resume: Resume::No,
            progress: true,
        }
    }
}

/// What a task contributes to the loop.
pub trait TrainTask<M: BertPretrained + HeadLoss<B>, B> {
    /// The (mean) loss of one micro-batch: the head's own by default ([`HeadLoss`], as HF's
    /// `Trainer.compute_loss` returns `outputs.loss`).
    fn loss(&self, model: &M, batch: B) -> Result<Tensor<1>, TrainError> {
        model.head_loss(batch)
    }

    /// Evaluation metrics of the current model (none by default).
    fn evaluate(&self, _model: &M) -> Result<Option<Metrics>, TrainError> {
        Ok(None)
    }

    /// The tokenizer saved beside the model (HF's `Trainer(processing_class=…)`), if any.
    fn tokenizer(&self) -> Option<&BertTokenizer> {
        None
    }

    /// Writes the model in HF format, with [`TrainTask::tokenizer`] when there is one, as HF's
    /// `Trainer.save_model` does (for `best_model/` and `final_model/`).
    fn save_pretrained(&self, model: &M, dir: &Path) -> Result<(), TrainError> {
        model.save_pretrained(dir)?;
        if let Some(tokenizer) = self.tokenizer() {
            tokenizer.save_pretrained(dir)?;
        }
        Ok(())
    }
}

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainOutput<M> {
    pub model: M,
    pub state: TrainerState,
    /// Loss of every optimizer step this call ran (mean over its micro-batches).
    pub step_losses: Vec<(usize, f64)>,
    pub stopped_early: bool,
}

fn total_steps(args: &TrainingArguments, micro_per_epoch: usize) -> usize {
    let per_epoch = (micro_per_epoch / args.gradient_accumulation_steps).max(1);
    match args.max_steps {
        Some(s) => s,
        None => (args.num_train_epochs * per_epoch as f64).ceil() as usize,
    }
}

fn validate(args: &TrainingArguments, micro_per_epoch: usize) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Argument(m));
    if micro_per_epoch == 0 {
        return bad("the training data is empty".into());
    }
    if args.gradient_accumulation_steps == 0 {
        return bad("gradient_accumulation_steps must be ≥ 1".into());
    }
    if args.max_steps == Some(0)
        || (args.max_steps.is_none()
            && args.num_train_epochs.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
    {
        return bad("nothing to train: max_steps is 0 or num_train_epochs is not > 0".into());
    }
    if args.max_grad_norm.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return bad(format!(
            "max_grad_norm must be > 0, got {}",
            args.max_grad_norm
        ));
    }
    if args.logging_steps == 0 || args.eval_steps == Some(0) || args.save_steps == Some(0) {
        return bad("logging_steps, eval_steps and save_steps must be ≥ 1".into());
    }
    if args.bf16 && args.fp16 {
        return bad("bf16 and fp16 are exclusive: choose one".into());
    }
    Ok(())
}

/// The matrix products' precision `args` asks for.
fn autocast_mode(args: &TrainingArguments) -> Autocast {
    match (args.bf16, args.fp16) {
        (true, _) => Autocast::Bf16,
        (_, true) => Autocast::F16,
        _ => Autocast::Off,
    }
}

/// Trains `model` on `data` with `task`'s loss. `model` lives on an autodiff device.
pub fn train<M, B>(
    args: &TrainingArguments,
    model: M,
    data: &dyn BatchSource<B>,
    task: &dyn TrainTask<M, B>,
    device: &Device,
) -> Result<TrainOutput<M>, TrainError>
where
    M: Module + BertPretrained + HeadLoss<B> + 'static,
{
    let micro_per_epoch = data.len();
    validate(args, micro_per_epoch)?;
    let accum = args.gradient_accumulation_steps;
    let total = total_steps(args, micro_per_epoch);
    let warmup = warmup_steps(args.warmup, total)?;
    let mut schedule = get_scheduler(
        args.lr_scheduler_type,
        args.optim.learning_rate,
        warmup,
        total,
    )?;
    let mut optim = AdamW::new(&args.optim);
    fs::create_dir_all(&args.output_dir)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", args.output_dir.display())))?;
    let mut state = TrainerState {
        max_steps: total,
        ..TrainerState::default()
    };
    let mut scaler = args.fp16.then(GradScaler::default);
    let (mut model, resumed_from) = resume(
        args,
        model,
        (&mut optim, &mut schedule, &mut scaler),
        &mut state,
        device,
    )?;
    let mode = autocast_mode(args);

    let log_path = args.output_dir.join("log.jsonl");
    rewrite_log(&log_path, &state.log_history)?;
    let start = state.global_step;
    if args.progress {
        eprintln!(
            "training {total} steps ({micro_per_epoch} micro-batches per epoch, accumulation {accum}, warmup {warmup}, {} schedule){}",
            args.lr_scheduler_type.name(),
            resumed_from.as_ref().map_or(String::new(), |d| format!(
                ", resumed from {} at step {start}",
                d.display()
            ))
        );
        eprintln!("{}", ParamGroupSummary::of(&model));
    }
    let bar = progress_bar(args.progress, total, start);

    let mut step_losses = Vec::new();
    let mut log = LogWindow::new();
    let mut stopped_early = false;
    // Each step's loss and grad norm stay on the device until a logging step reads them all at
    // once: nothing in a step waits for the device.
    let mut pending: Vec<(usize, Tensor<1>, Tensor<1>)> = Vec::new();
    for step in start..total {
        // The schedule steps with the optimizer: an fp16 step `optimizer_step` skips leaves it
        // behind.
        let lr = schedule.lr_at(schedule.current_step);
        if reseed_at(args, step, start) {
            let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
            device.seed(seed);
            bert::dropout::seed(seed);
        }
        let loss_scale = scaler.as_ref().map_or(1.0, |s| s.scale);
        let (grads, loss) = accumulate(&model, data, task, step, accum, mode, loss_scale)?;
        log.micro_batches += accum;
        let step_state = (&mut optim, &mut schedule, &mut scaler);
        let (stepped, grad_norm) =
            optimizer_step(model, grads, step_state, lr, args.max_grad_norm)?;
        model = stepped;
        state.global_step = step + 1;
        state.epoch = (state.global_step * accum) as f64 / micro_per_epoch as f64;
        pending.push((state.global_step, loss, grad_norm));
        bar.set_position(state.global_step as u64);

        let last = state.global_step == total;
        if state.global_step.is_multiple_of(args.logging_steps) || last {
            let read = read_pending(&mut pending)?;
            step_losses.extend(read.iter().map(|&(s, l, _)| (s, l)));
            let entry = log.entry(&state, &read, lr);
            bar.set_message(format!(
                "loss {:.4} lr {lr:.2e}",
                read.last().expect("this step").1
            ));
            append_log(&log_path, &mut state, entry)?;
        }
        let eval_now = args
            .eval_steps
            .is_some_and(|n| state.global_step.is_multiple_of(n))
            || (last && args.eval_steps.is_some());
        if eval_now {
            stopped_early = autocast(mode, || {
                evaluate(args, &model, task, &mut state, &log_path, &bar)
            })?;
        }
        if args
            .save_steps
            .is_some_and(|n| state.global_step.is_multiple_of(n))
            || last
            || stopped_early
        {
            save_checkpoint(args, &model, &optim, &schedule, scaler.as_ref(), &state)?;
        }
        if stopped_early {
            bar.println(format!("early stopping at step {}", state.global_step));
            break;
        }
    }
    // Early stopping between logging steps leaves steps unread.
    step_losses.extend(
        read_pending(&mut pending)?
            .into_iter()
            .map(|(s, l, _)| (s, l)),
    );
    bar.finish_and_clear();
    plot_history(&args.output_dir.join("training.png"), &state.log_history)?;
    task.save_pretrained(&model, &args.output_dir.join("final_model"))?;
    Ok(TrainOutput {
        model,
        state,
        step_losses,
        stopped_early,
    })
}

/// The optimizer, the learning-rate schedule and, with `--fp16`, the loss scaler: what an
/// optimizer step advances and a checkpoint restores besides the model and the trainer state.
type StepState<'a> = (
    &'a mut AdamW,
    &'a mut crate::HfSchedule,
    &'a mut Option<GradScaler>,
);

/// `--resume`: loads the model, optimizer, scheduler and trainer state of the checkpoint
/// `args.resume` names (verified first, and checked to agree on the step); returns the model
/// and the checkpoint's folder, or the model untouched when not resuming.
fn resume<M: Module>(
    args: &TrainingArguments,
    model: M,
    stepping: StepState<'_>,
    state: &mut TrainerState,
    device: &Device,
) -> Result<(M, Option<PathBuf>), TrainError> {
    let candidates = match &args.resume {
        Resume::No => return Ok((model, None)),
        // A path given is loaded or refused; none given: the newest checkpoint that verifies
        // and loads, the ones after it named and skipped (HF would stop at the newest).
        Resume::Checkpoint(p) => {
            return load_checkpoint(args, p, model, stepping, state, device)
                .map(|m| (m, Some(p.clone())));
        }
        Resume::Latest => checkpoint::list_checkpoints(&args.output_dir),
    };
    let mut skipped: Vec<(PathBuf, String)> = Vec::new();
    for (_, dir) in candidates.into_iter().rev() {
        let (optim, schedule, scaler) = (&mut *stepping.0, &mut *stepping.1, &mut *stepping.2);
        match load_checkpoint(
            args,
            &dir,
            model.clone(),
            (optim, schedule, scaler),
            state,
            device,
        ) {
            Ok(m) => {
                for (d, why) in &skipped {
                    eprintln!("warning: skipped {}: {why}", d.display());
                }
                if !skipped.is_empty() {
                    eprintln!("resuming from {}", dir.display());
                }
                return Ok((m, Some(dir)));
            }
            Err(TrainError::Checkpoint(why)) => skipped.push((dir, why)),
            Err(e) => skipped.push((dir, e.to_string())),
        }
    }
    if skipped.is_empty() {
        return Ok((model, None));
    }
    Err(TrainError::Checkpoint(format!(
        "no checkpoint of {} can be resumed from: {}",
        args.output_dir.display(),
        skipped
            .iter()
            .map(|(d, why)| format!("{} ({why})", d.display()))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// Verifies and loads one checkpoint into the model, optimizer, scheduler, scaler and state;
/// nothing is changed unless all of them load and agree on the step.
fn load_checkpoint<M: Module>(
    args: &TrainingArguments,
    dir: &Path,
    model: M,
    (optim, schedule, scaler): StepState<'_>,
    state: &mut TrainerState,
    device: &Device,
) -> Result<M, TrainError> {
    let max_steps = state.max_steps;
    let verified = checkpoint::verify(dir)?;
    let load = |what: &str, e: &dyn std::fmt::Display| {
        TrainError::Checkpoint(format!("{}: cannot load {what}: {e}", dir.display()))
    };
    let model = model
        .try_load_file(dir.join(MODEL_FILE))
        .map_err(|e| load(MODEL_FILE, &e))?;
    let loaded_scaler = match scaler {
        Some(_) => Some(GradScaler::load(dir)?),
        None => None,
    };
    // The optimizer and the schedule step together, behind the trainer by the fp16 steps
    // skipped.
    let skipped = loaded_scaler.map_or(0, |s| s.skipped_steps);
    let behind = |what: &str, at: usize| {
        TrainError::Checkpoint(format!(
            "{}: the {what} is at step {at} but the trainer state at {} ({skipped} skipped)",
            dir.display(),
            verified.global_step
        ))
    };
    let loaded = AdamW::new(&args.optim).load(dir, device)?;
    if loaded.steps() + skipped != verified.global_step {
        return Err(behind("optimizer", loaded.steps()));
    }
    let record =
        LrSchedulerRecord::load(dir.join(SCHEDULER_FILE)).map_err(|e| load(SCHEDULER_FILE, &e))?;
    let mut resumed = schedule.clone();
    resumed.load_record(record);
    if resumed.current_step + skipped != verified.global_step {
        return Err(behind("scheduler", resumed.current_step));
    }
    *optim = loaded;
    *schedule = resumed;
    if loaded_scaler.is_some() {
        *scaler = loaded_scaler;
    }
    *state = verified;
    state.max_steps = max_steps;
    Ok(model)
}

fn progress_bar(show: bool, total: usize, start: usize) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(total as u64).with_position(start as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// Gradient accumulation: the `accum` micro-batches of optimizer step `step`, each forward
/// pass under `mode`, each backward pass from the loss × `loss_scale`, the gradients scaled
/// back by `1 / (accum × loss_scale)` and summed; returns them and the step's mean (unscaled)
/// loss, on the device.
fn accumulate<M: Module + BertPretrained + HeadLoss<B> + 'static, B>(
    model: &M,
    data: &dyn BatchSource<B>,
    task: &dyn TrainTask<M, B>,
    step: usize,
    accum: usize,
    mode: Autocast,
    loss_scale: f64,
) -> Result<(GradientsParams, Tensor<1>), TrainError> {
    let per_epoch = data.len();
    let mut acc: Option<GradientsParams> = None;
    let mut loss_sum: Option<Tensor<1>> = None;
    for k in 0..accum {
        let micro = step * accum + k;
        let batch = data.get(micro / per_epoch, micro % per_epoch)?;
        let loss = autocast(mode, || task.loss(model, batch))?;
        let value = loss.clone().detach();
        let loss = if loss_scale == 1.0 {
            loss
        } else {
            loss.mul_scalar(loss_scale)
        };
        loss_sum = Some(match loss_sum {
            Some(sum) => sum + value,
            None => value,
        });
        let grads = GradientsParams::from_grads(loss.backward(), model);
        acc = Some(accumulate_scaled(
            model,
            acc,
            grads,
            1.0 / (accum as f64 * loss_scale),
        ));
    }
    let loss = loss_sum.expect("accumulation ≥ 1").div_scalar(accum as f64);
    Ok((acc.expect("accumulation ≥ 1"), loss))
}

/// The losses and throughput since the last logging step (HF's `logging_steps` entry).
struct LogWindow {
    since: Instant,
    micro_batches: usize,
}

impl LogWindow {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            micro_batches: 0,
        }
    }

    /// The log entry of this logging step from the steps `read` since the last one (the mean
    /// loss over them, the last step's grad norm), and a new window.
    fn entry(
        &mut self,
        state: &TrainerState,
        read: &[(usize, f64, f64)],
        lr: f64,
    ) -> serde_json::Value {
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let mean = read.iter().map(|r| r.1).sum::<f64>() / read.len().max(1) as f64;
        let grad_norm = read.last().map_or(f64::NAN, |r| r.2);
        // As HF's Trainer: the rate this step's update used (read before the scheduler steps).
        let entry = json!({
            "step": state.global_step, "epoch": state.epoch, "loss": mean,
            "learning_rate": lr, "grad_norm": grad_norm,
            "micro_batches_per_second": self.micro_batches as f64 / secs,
        });
        *self = Self::new();
        entry
    }
}

/// The optimizer step on the accumulated gradients: clipped to `max_grad_norm` by their global
/// norm, with the schedule stepped alongside. With fp16 a step whose gradients hold inf/NaN is
/// skipped, optimizer and scheduler alike (one read of the norm per step, as PyTorch's
/// GradScaler makes; the norm read is the one the optimizer clips with). Returns the model and
/// the norm before clipping, on the device.
fn optimizer_step<M: Module + 'static>(
    model: M,
    mut grads: GradientsParams,
    (optim, schedule, scaler): StepState<'_>,
    lr: f64,
    max_grad_norm: f64,
) -> Result<(M, Tensor<1>), TrainError> {
    let norm = crate::global_grad_norm(&model, &mut grads);
    if let Some(s) = scaler.as_mut()
        && !s.update(norm.clone().into_scalar::<f32>() as f64)
    {
        return Ok((model, norm));
    }
    LrScheduler::step(schedule);
    optim.step_with_norm(lr, model, grads, max_grad_norm, norm)
}

/// An evaluation: logs the task's metrics, saves `best_model/` when `metric_for_best_model`
/// improved, counts early-stopping patience; returns whether to stop.
fn evaluate<M: BertPretrained + HeadLoss<B>, B>(
    args: &TrainingArguments,
    model: &M,
    task: &dyn TrainTask<M, B>,
    state: &mut TrainerState,
    log_path: &Path,
    bar: &ProgressBar,
) -> Result<bool, TrainError> {
    let Some(metrics) = task.evaluate(model)? else {
        return Ok(false);
    };
    let mut entry = json!({ "step": state.global_step, "epoch": state.epoch });
    for (k, v) in &metrics {
        entry[k] = json!(v);
    }
    append_log(log_path, state, entry)?;
    bar.println(format!("step {}: {metrics:?}", state.global_step));
    let value = *metrics.get(&args.metric_for_best_model).ok_or_else(|| {
        TrainError::Argument(format!(
            "metric_for_best_model `{}` is not among the evaluation metrics {:?}",
            args.metric_for_best_model,
            metrics.keys().collect::<Vec<_>>()
        ))
    })?;
    let improved = match state.best_metric {
        None => true,
        Some(best) => {
            (args.greater_is_better && value > best) || (!args.greater_is_better && value < best)
        }
    };
    if improved {
        state.best_metric = Some(value);
        state.patience_used = 0;
        let dir = args.output_dir.join("best_model");
        task.save_pretrained(model, &dir)?;
        state.best_model_checkpoint = Some(dir.display().to_string());
        return Ok(false);
    }
    state.patience_used += 1;
    Ok(args
        .early_stopping_patience
        .is_some_and(|p| state.patience_used >= p))
}

/// Where the device RNG (dropout) is re-seeded: at the first step of a call and at every
/// `save_steps` boundary, from `seed` and the step. A run resumed from a checkpoint written at a
/// boundary re-seeds there exactly as the uninterrupted run did, so both draw the same dropout
/// masks afterwards (exact resume), without a per-micro-batch seed, which flushes the device's
/// queue on fused backends.
fn reseed_at(args: &TrainingArguments, step: usize, start: usize) -> bool {
    step == start || args.save_steps.is_some_and(|n| step.is_multiple_of(n))
}

/// Reads the pending steps' losses and grad norms in one device read; a non-finite loss is an
/// error naming its step.
fn read_pending(
    pending: &mut Vec<(usize, Tensor<1>, Tensor<1>)>,
) -> Result<Vec<(usize, f64, f64)>, TrainError> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let steps: Vec<usize> = pending.iter().map(|p| p.0).collect();
    let n = steps.len();
    let tensors: Vec<Tensor<1>> = pending
        .iter()
        .map(|p| p.1.clone())
        .chain(pending.iter().map(|p| p.2.clone()))
        .collect();
    pending.clear();
    let values = bert::reads::floats(Tensor::cat(tensors, 0));
    let out: Vec<(usize, f64, f64)> = steps
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, values[i] as f64, values[n + i] as f64))
        .collect();
    if let Some((step, loss, _)) = out.iter().find(|(_, l, _)| !l.is_finite()) {
        return Err(TrainError::NonFiniteLoss {
            step: *step,
            loss: *loss,
        });
    }
    Ok(out)
}

fn save_checkpoint<M: Module>(
    args: &TrainingArguments,
    model: &M,
    optim: &AdamW,
    schedule: &crate::HfSchedule,
    scaler: Option<&GradScaler>,
    state: &TrainerState,
) -> Result<(), TrainError> {
    let err = |what: &str, e: &dyn std::fmt::Display| {
        TrainError::Checkpoint(format!("cannot write {what}: {e}"))
    };
    checkpoint::save(
        &args.output_dir,
        state,
        args.save_total_limit,
        None,
        |dir| {
            model
                .clone()
                .save_file(dir.join(MODEL_FILE))
                .map_err(|e| err(MODEL_FILE, &e))?;
            optim.save(dir)?;
            schedule
                .to_record()
                .save(dir.join(SCHEDULER_FILE))
                .map_err(|e| err(SCHEDULER_FILE, &e))?;
            if let Some(s) = scaler {
                s.save(dir)?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// `training.png`: training loss (and eval loss, if any) and the learning rate by step.
fn plot_history(path: &Path, history: &[serde_json::Value]) -> Result<(), TrainError> {
    let series = |key: &str, name: &str| Series {
        name: name.into(),
        points: history
            .iter()
            .filter_map(|e| Some((e["step"].as_f64()?, e.get(key)?.as_f64()?)))
            .collect(),
    };
    let mut losses = vec![series("loss", "train loss")];
    let eval = series("eval_loss", "eval loss");
    if !eval.points.is_empty() {
        losses.push(eval);
    }
    let panels = [
        Panel {
            y_label: "loss".into(),
            series: losses,
        },
        Panel {
            y_label: "learning rate".into(),
            series: vec![series("learning_rate", "lr")],
        },
    ];
    crate::plot::line_chart(path, "training", "step", &panels)
}

fn append_log(
    path: &Path,
    state: &mut TrainerState,
    entry: serde_json::Value,
) -> Result<(), TrainError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    writeln!(f, "{entry}")
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    state.log_history.push(entry);
    Ok(())
}

/// On resume the log holds exactly the checkpoint's history (later lines were never
/// checkpointed and will be written again).
fn rewrite_log(path: &Path, history: &[serde_json::Value]) -> Result<(), TrainError> {
    let text: String = history.iter().map(|e| format!("{e}\n")).collect();
    fs::write(path, text).map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}
