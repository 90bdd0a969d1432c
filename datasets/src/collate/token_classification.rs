//! Token classification (HF's `DataCollatorForTokenClassification`): a label per token, -100
//! on padding and on the pieces that carry none.

use bert::BertInput;
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor};

use super::{DataCollatorWithPadding, TokenizedText, int2, pad_labels, pad_texts};

/// A token classification item: a label per token (-100 where none).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClassificationItem {
    pub text: TokenizedText,
    pub labels: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct TokenClassificationBatch {
    /// With the labels' host range (`HostBounds::labels`).
    pub input: BertInput,
    /// `[b, seq]`, -100 on padding.
    pub labels: Tensor<2, Int>,
}

impl Batcher<TokenClassificationItem, TokenClassificationBatch> for DataCollatorWithPadding {
    fn batch(
        &self,
        items: Vec<TokenClassificationItem>,
        device: &Device,
    ) -> TokenClassificationBatch {
        let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
        let input = pad_texts(&texts, self.pad_id, device);
        let len = input.input_ids.dims()[1];
        let labels = pad_labels(items.iter().map(|i| i.labels.as_slice()), len);
        TokenClassificationBatch {
            input: input.with_label_values(&labels.concat()),
            labels: int2(labels, device),
        }
    }
}
