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
        rows(b.input.input_ids.clone()),
        [vec![101, 7, 8, 102], vec![101, 9, 102, 0]]
    );
    assert_eq!(
        rows(b.input.attention_mask.clone().unwrap()),
        [vec![1, 1, 1, 1], vec![1, 1, 1, 0]]
    );
    assert_eq!(
        rows(b.labels),
        [vec![-100, 1, 2, -100], vec![-100, 3, -100, -100]]
    );
    // Ranges taken on the host: ids with the padding id, labels without -100.
    let h = b.input.host_bounds;
    assert_eq!(
        (h.input_ids, h.token_type_ids, h.labels),
        (Some((0, 102)), Some((0, 0)), Some((1, 3)))
    );
}

#[test]
fn classification_batches_follow_the_label_kind() {
    let device = Device::flex();
    let item = |label| ClassificationItem {
        text: text(&[101, 5, 102], &[0, 0, 0]),
        label,
    };
    let batcher = ClassificationBatcher { pad_id: 0 };
    let b = burn::data::dataloader::batcher::Batcher::batch(
        &batcher,
        vec![
            item(Label::MultiHot(vec![1.0, 0.0, 1.0])),
            item(Label::MultiHot(vec![0.0, 1.0, 0.0])),
        ],
        &device,
    );
    let bert::SequenceClassificationLabels::Values(v) = b.labels else {
        panic!("multi-hot rows are float targets")
    };
    assert_eq!(v.dims(), [2, 3]);
    assert_eq!(
        v.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
        [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    );
    let b = burn::data::dataloader::batcher::Batcher::batch(
        &batcher,
        vec![item(Label::Value(0.5)), item(Label::Value(2.5))],
        &device,
    );
    let bert::SequenceClassificationLabels::Values(v) = b.labels else {
        panic!("regression targets")
    };
    assert_eq!(v.dims(), [2, 1]);
    let b = burn::data::dataloader::batcher::Batcher::batch(
        &batcher,
        vec![item(Label::Class(1)), item(Label::Class(0))],
        &device,
    );
    assert!(matches!(
        b.labels,
        bert::SequenceClassificationLabels::Classes(_)
    ));
    assert_eq!(b.input.host_bounds.labels, Some((0, 1)));
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
            let bert::SequenceClassificationLabels::Classes(c) = batch.labels else {
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

/// Blocks of text for `BertForMaskedLM` are masked as HF's `DataCollatorForLanguageModeling`
/// masks them: each labelled row holds the original id of a non-special, non-padding position,
/// whose input is `[MASK]` (80%), a random id (10%) or itself; one segment; the same key draws
/// the same masks and another key others.
#[test]
fn masked_lm_blocks_are_masked_padded_and_keyed() {
    let dir = bert_datasets::fixtures::dir().unwrap();
    let tok =
        bert_datasets::BertTokenizer::from_pretrained(dir.join("models/all-MiniLM-L6-v2")).unwrap();
    let mut collator = PretrainingCollator::new(&tok, 7).unwrap();
    collator.mlm.mlm_probability = 0.5;
    collator.check().unwrap();
    // What collate would panic on is refused before, with its name.
    let mut bad = collator.clone();
    bad.masked_rows_multiple = 0;
    bert_datasets::fixtures::assert_err(bad.check(), &["masked_rows_multiple must be at least 1"]);
    bad = collator.clone();
    bad.mlm.random_replace_prob = 0.5;
    bert_datasets::fixtures::assert_err(bad.check(), &["should not exceed 1"]);
    let s = collator.special;
    let blocks: Vec<Vec<u32>> = (0..4u32)
        .map(|b| {
            let words = (0..30 - 5 * b).map(|i| 2000 + (i * 7 + b) % 900);
            std::iter::once(s.cls).chain(words).collect()
        })
        .collect();
    let device = Device::flex();
    let batch = collator.collate_blocks(&blocks, 3, &device);
    let ids = rows(batch.input.input_ids.clone());
    assert_eq!((ids.len(), ids[0].len()), (4, 31));
    let types = rows(batch.input.token_type_ids.clone().unwrap());
    assert!(types.iter().flatten().all(|&t| t == 0), "one segment");
    let flat = |t: burn::tensor::Tensor<1, burn::tensor::Int>| -> Vec<i64> {
        t.into_data().convert::<i64>().try_to_vec().unwrap()
    };
    let (positions, labels) = (
        flat(batch.masked.positions.clone()),
        flat(batch.masked.labels),
    );
    let labelled = &positions[..batch.masked.num_labelled];
    assert!(
        labelled.len() > 20,
        "{} of ~45 chosen at 0.5",
        labelled.len()
    );
    // Padded with `[PAD]` past each block, attention 0 there.
    let mask = rows(batch.input.attention_mask.clone().unwrap());
    for (row, block) in blocks.iter().enumerate() {
        for col in 0..31 {
            let real = col < block.len();
            assert_eq!(mask[row][col], real as i64, "attention at {row},{col}");
            assert!(
                real || ids[row][col] == s.pad as i64,
                "padding at {row},{col}"
            );
        }
    }
    let (mut as_mask, mut kept) = (0, 0);
    for (&p, &label) in labelled.iter().zip(&labels) {
        let (row, col) = (p as usize / 31, p as usize % 31);
        assert!(
            col > 0 && col < blocks[row].len(),
            "a special or padding position: {p}"
        );
        assert_eq!(
            label, blocks[row][col] as i64,
            "the label is the original id"
        );
        as_mask += usize::from(ids[row][col] == s.mask as i64);
        kept += usize::from(ids[row][col] == label);
    }
    assert!(as_mask > labelled.len() / 2 && kept < labelled.len() / 4);
    let again = collator.collate_blocks(&blocks, 3, &device);
    assert_eq!(flat(again.masked.positions), positions, "the same key");
    let other = collator.collate_blocks(&blocks, 4, &device);
    assert_ne!(flat(other.masked.positions), positions, "another key");
}
