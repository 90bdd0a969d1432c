//! The soak benchmark: a long training run through the real trainer (collation, logging,
//! evaluation, checkpoints and their rotation) that samples the process's resident memory and
//! the device allocator's reserve every `every` steps. After warm-up both should stay flat: a
//! value that grows with the step count is a leak.
//!
//! The model is the `tiny` benchmark config (`BertForSequenceClassification`); the data are
//! random token sequences of 16 to 128 tokens (every batch its own padded shape, as real text
//! gives), batch 8.

use std::cell::RefCell;
use std::path::Path;

use bert::{BertForSequenceClassification, BertPretrained};
use bert_datasets::collate::TokenizedText;
use bert_datasets::collate::{ClassificationBatch, ClassificationBatcher, ClassificationItem};
use bert_datasets::tasks::classification::Label;
use bert_train::{
    ItemBatches, Metrics, TrainError, TrainTask, TrainingArguments, eval_metrics, train,
};
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::memory;

/// One sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub step: usize,
    /// Resident set now (not the peak), MiB.
    pub rss_mib: f64,
    /// The device allocator's reserve, MiB, where the backend reports it.
    pub device_reserved_mib: Option<f64>,
}

/// The run's samples and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub backend: String,
    pub steps: usize,
    pub warmup_steps: usize,
    pub samples: Vec<Sample>,
    /// Largest resident set after warm-up over the first sample after warm-up, minus 1.
    pub rss_growth: f64,
    pub device_growth: Option<f64>,
    pub seconds: f64,
}

/// Resident set size now, MiB (`VmRSS`).
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Evaluation is the sampling hook: every `every` steps it records the memory.
struct Task {
    samples: RefCell<Vec<Sample>>,
    every: usize,
    device: Device,
}

type Model = BertForSequenceClassification;

impl TrainTask<Model, ClassificationBatch> for Task {
    fn evaluate(&self, _model: &Model) -> Result<Option<Metrics>, TrainError> {
        let mut samples = self.samples.borrow_mut();
        let step = (samples.len() + 1) * self.every;
        let rss = rss_mib().unwrap_or(f64::NAN);
        let device = memory::device_reserved_mib(&self.device);
        samples.push(Sample {
            step,
            rss_mib: rss,
            device_reserved_mib: device,
        });
        // A loss-like metric keeps the trainer's best-model bookkeeping busy, as a real run.
        Ok(eval_metrics([
            ("eval_loss", 1.0 / step as f64),
            ("eval_rss_mib", rss),
        ]))
    }
}

/// `steps` training steps on `device` (named `backend`), memory sampled every `every` steps;
/// growth is measured from the first sample at or after `warmup_steps`.
pub fn soak(
    backend: &str,
    device: &Device,
    steps: usize,
    every: usize,
    warmup_steps: usize,
    output_dir: &Path,
) -> Result<Soak, TrainError> {
    let config = crate::bench_config("tiny").map_err(TrainError::Argument)?;
    let train_device = device.clone().autodiff();
    train_device.seed(0);
    let model = BertForSequenceClassification::init(&config, &train_device);
    let mut rng = StdRng::seed_from_u64(0);
    let items: Vec<ClassificationItem> = (0..512)
        .map(|i| {
            let len = rng.random_range(16..=128);
            let mut ids: Vec<u32> = (0..len).map(|_| rng.random_range(1000..30000)).collect();
            ids[0] = 101;
            ClassificationItem {
                text: TokenizedText::single(ids),
                label: Label::Class(i % 2),
            }
        })
        .collect();
    let batches = ItemBatches::from_batcher(
        items,
        8,
        true,
        0,
        ClassificationBatcher { pad_id: 0 },
        &train_device,
    );
    let args = TrainingArguments {
        output_dir: output_dir.to_path_buf(),
        max_steps: Some(steps),
        logging_steps: 50,
        eval_steps: Some(every),
        save_steps: Some(500),
        save_total_limit: Some(2),
        progress: false,
        ..TrainingArguments::default()
    };
    let task = Task {
        samples: RefCell::new(Vec::new()),
        every,
        device: device.clone(),
    };
    let start = std::time::Instant::now();
    train(&args, model, &batches, &task, &train_device)?;
    let seconds = start.elapsed().as_secs_f64();
    let samples = task.samples.into_inner();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.step >= warmup_steps).collect();
    let growth = |get: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
        let first = get(after.first()?)?;
        let max = after.iter().filter_map(|s| get(s)).fold(first, f64::max);
        Some(max / first - 1.0)
    };
    Ok(Soak {
        backend: backend.to_string(),
        steps,
        warmup_steps,
        rss_growth: growth(&|s| Some(s.rss_mib)).unwrap_or(f64::NAN),
        device_growth: growth(&|s| s.device_reserved_mib),
        samples,
        seconds,
    })
}
