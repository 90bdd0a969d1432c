//! What the trainer's tests share: the batches of `reference/adamw.json` and a tiny model.
#![allow(dead_code)]

use bert::{BertConfig, BertForSequenceClassification, BertInput, SequenceClassificationLabels};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

pub type Batch = (BertInput, SequenceClassificationLabels);

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
            (input, SequenceClassificationLabels::Classes(labels))
        })
        .collect()
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
