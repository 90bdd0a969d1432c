//! Batches are padded to the longest item, masked, and labelled -100 on padding; items served
//! by Burn's data loader from an `InMemDataset`.

use std::sync::Arc;

use bert_datasets::collate::*;
use bert_datasets::tasks::classification::Label;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::tensor::Device;

fn text(ids: &[u32], types: &[u32]) -> TokenizedText {
    TokenizedText {
        input_ids: ids.to_vec(),
        token_type_ids: types.to_vec(),
    }
}

fn rows(t: burn::tensor::Tensor<2, burn::tensor::Int>) -> Vec<Vec<i64>> {
    let [_, s] = t.dims();
    let v: Vec<i64> = t.into_data().convert::<i64>().try_to_vec().unwrap();
    v.chunks(s).map(<[i64]>::to_vec).collect()
}

#[test]
fn token_classification_batch_is_padded_and_masked() {
    let device = Device::flex();
    let items = vec![
        TokenClassificationItem {
            text: text(&[101, 7, 8, 102], &[0, 0, 0, 0]),
            labels: vec![-100, 1, 2, -100],
        },
        TokenClassificationItem {
            text: text(&[101, 9, 102], &[0, 0, 0]),
            labels: vec![-100, 3, -100],
        },
    ];
    let b = burn::data::dataloader::batcher::Batcher::batch(
        &TokenClassificationBatcher { pad_id: 0 },
        items,
        &device,
    );
    assert_eq!(
        rows(b.inputs.input_ids),
        [vec![101, 7, 8, 102], vec![101, 9, 102, 0]]
    );
    assert_eq!(
        rows(b.inputs.attention_mask),
        [vec![1, 1, 1, 1], vec![1, 1, 1, 0]]
    );
    assert_eq!(
        rows(b.labels),
        [vec![-100, 1, 2, -100], vec![-100, 3, -100, -100]]
    );
}

#[test]
fn data_loader_serves_classification_batches_shuffled_by_seed() {
    let items: Vec<ClassificationItem> = (0..10u32)
        .map(|i| ClassificationItem {
            text: text(&vec![101; 2 + i as usize % 3], &vec![0; 2 + i as usize % 3]),
            label: Label::Class(i as usize),
        })
        .collect();
    let order = |seed: u64, workers: usize| -> Vec<i64> {
        let loader = DataLoaderBuilder::new(ClassificationBatcher { pad_id: 0 })
            .batch_size(4)
            .shuffle(seed)
            .num_workers(workers)
            .build(Arc::new(InMemDataset::new(items.clone())));
        let mut labels = Vec::new();
        for batch in loader.iter() {
            let batch = batch.unwrap();
            let ClassificationTargets::Classes(c) = batch.labels else {
                panic!("classes")
            };
            labels.extend(c.into_data().convert::<i64>().try_to_vec::<i64>().unwrap());
        }
        labels
    };
    // Worker threads interleave batches; every item still comes once.
    let mut sorted = order(7, 2);
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "every item once");
    // One worker: the seed fixes the order exactly.
    let a = order(7, 1);
    assert_eq!(a, order(7, 1), "same seed, same order");
    assert_ne!(a, order(8, 1), "another seed, another order");
}
