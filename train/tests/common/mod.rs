//! What the trainer's tests share: the batches of `reference/adamw.json` and a tiny model.
#![allow(dead_code)]

use std::path::Path;

use bert::{BertConfig, BertForSequenceClassification, BertInput, SequenceClassificationLabels};
use bert_train::{InMemoryBatches, TrainTask, TrainingArguments};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

pub type Batch = bert_datasets::collate::ClassificationBatch;

pub fn int2(v: &Value, device: &Device) -> Tensor<2, Int> {
    let rows: Vec<Vec<i64>> = serde_json::from_value(v.clone()).unwrap();
    let shape = [rows.len(), rows[0].len()];
    Tensor::from_data(TensorData::new(rows.concat(), shape), device)
}

/// The six batches of `adamw.json` (3 rows of 8 tokens, 3 classes).
pub fn batches(device: &Device) -> Vec<Batch> {
    let r: Value = serde_json::from_str(include_str!("../reference/adamw.json")).unwrap();
    r["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let ids: Vec<Vec<i64>> = serde_json::from_value(b["input_ids"].clone()).unwrap();
            let types: Vec<Vec<i64>> = serde_json::from_value(b["token_type_ids"].clone()).unwrap();
            let labels: Vec<i64> = serde_json::from_value(b["labels"].clone()).unwrap();
            // Ranges taken on the host, as the collators do: no device read to check them.
            let input = BertInput::new(int2(&b["input_ids"], device))
                .with_attention_mask(int2(&b["attention_mask"], device))
                .with_token_type_ids(int2(&b["token_type_ids"], device))
                .with_host_bounds(bert::HostBounds {
                    input_ids: Some(bert::bounds(ids.concat(), None)),
                    token_type_ids: Some(bert::bounds(types.concat(), None)),
                    ..Default::default()
                })
                .with_label_values(&labels);
            let labels = Tensor::from_data(TensorData::new(labels, [3]), device);
            Batch {
                input,
                labels: SequenceClassificationLabels::Classes(labels),
            }
        })
        .collect()
}

/// A quiet run into `dir`: `steps` steps of AdamW at `learning_rate` (weight decay 0.01),
/// the loss logged every step, a checkpoint at the end.
pub fn run_args(dir: &Path, steps: usize, learning_rate: f64) -> TrainingArguments {
    TrainingArguments {
        output_dir: dir.to_path_buf(),
        max_steps: Some(steps),
        logging_steps: 1,
        save_steps: Some(steps),
        progress: false,
        optim: bert_train::AdamWArgs {
            learning_rate,
            weight_decay: 0.01,
            ..Default::default()
        },
        ..TrainingArguments::default()
    }
}

/// A tiny model with dropout on, so that resume must also restore the dropout RNG.
pub fn model(device: &Device, seed: u64) -> BertForSequenceClassification {
    let mut config = BertConfig::tiny(99, 32, 2, 4);
    config.max_position_embeddings = 64;
    config.pad_token_id = Some(0);
    config.set_num_labels(3);
    device.seed(seed);
    BertForSequenceClassification::new(&config, device)
}

/// Burn's device RNG is process-wide: tests that train with dropout must not run at once.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a training test starts from: the RNG lock (Burn's device RNG is process-wide), the
/// test device (autodiff) and [`batches`] on it, shuffled by `seed` when `shuffle`.
pub fn setup(
    shuffle: bool,
    seed: u64,
) -> (
    std::sync::MutexGuard<'static, ()>,
    Device,
    InMemoryBatches<Batch>,
) {
    let lock = rng_lock();
    let device = bert::backend::test_device().autodiff();
    let data = InMemoryBatches::new(batches(&device), shuffle, seed);
    (lock, device, data)
}

/// An empty scratch folder for `tag`, removed when dropped.
pub fn tmp(tag: &str) -> bert::fixtures::Scratch {
    bert::fixtures::Scratch::dir(&format!("train-{tag}"))
}

/// Sequence classification on [`batches`]: the model's own loss, saved as HF saves it.
pub struct ClassifierTask;

impl TrainTask<BertForSequenceClassification, Batch> for ClassifierTask {}
