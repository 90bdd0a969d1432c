//! Sequence classification, regression and multi-label classification (HF's
//! `DataCollatorWithPadding` with a `labels` column): `BertForSequenceClassification`'s
//! input and `SequenceClassificationLabels`.

use bert::{BertInput, SequenceClassificationLabels};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Tensor, TensorData};

use super::{DataCollatorWithPadding, TokenizedText, int1, pad_texts};
use crate::tasks::classification::Label;

/// A text (or pair) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationItem {
    pub text: TokenizedText,
    pub label: Label,
}

/// The model's input and labels: class ids `[b]` (single-label), targets `[b, 1]`
/// (regression) or multi-hot rows `[b, num_labels]` (multi-label), as the first item's label.
#[derive(Debug, Clone)]
pub struct ClassificationBatch {
    pub input: BertInput,
    pub labels: SequenceClassificationLabels,
}

impl Batcher<ClassificationItem, ClassificationBatch> for DataCollatorWithPadding {
    fn batch(&self, items: Vec<ClassificationItem>, device: &Device) -> ClassificationBatch {
        let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
        let input = pad_texts(&texts, self.pad_id, device);
        let n = items.len();
        let values = |width: usize, row: &dyn Fn(&Label) -> Vec<f32>| {
            let v: Vec<f32> = items.iter().flat_map(|i| row(&i.label)).collect();
            SequenceClassificationLabels::Values(Tensor::from_data(
                TensorData::new(v, [n, width]),
                device,
            ))
        };
        match items.first().map(|i| &i.label) {
            Some(Label::Value(_)) => ClassificationBatch {
                input,
                labels: values(1, &|l| vec![l.value()]),
            },
            Some(Label::MultiHot(first)) => ClassificationBatch {
                input,
                labels: values(first.len(), &|l| match l {
                    Label::MultiHot(v) => v.clone(),
                    other => vec![other.value()],
                }),
            },
            _ => {
                let classes: Vec<i64> = items.iter().map(|i| i.label.value() as i64).collect();
                ClassificationBatch {
                    input: input.with_label_values(&classes),
                    labels: SequenceClassificationLabels::Classes(int1(classes, device)),
                }
            }
        }
    }
}
