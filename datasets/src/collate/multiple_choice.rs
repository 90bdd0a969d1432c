//! Multiple choice (HF's `DataCollatorForMultipleChoice`): every choice of every item padded
//! to one length, `[batch, choices, seq]`.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor};

use super::{DataCollatorWithPadding, TokenizedText, int1, pad_texts};

/// The context paired with each choice, and the right choice's index.
#[derive(Debug, Clone, PartialEq)]
pub struct MultipleChoiceItem {
    pub choices: Vec<TokenizedText>,
    pub label: usize,
}

/// `BertForMultipleChoice`'s arguments.
#[derive(Debug, Clone)]
pub struct MultipleChoiceBatch {
    pub input_ids: Tensor<3, Int>,
    pub attention_mask: Tensor<3, Int>,
    pub token_type_ids: Tensor<3, Int>,
    pub labels: Tensor<1, Int>,
}

impl Batcher<MultipleChoiceItem, MultipleChoiceBatch> for DataCollatorWithPadding {
    fn batch(&self, items: Vec<MultipleChoiceItem>, device: &Device) -> MultipleChoiceBatch {
        let (b, c) = (items.len(), items.first().map_or(0, |i| i.choices.len()));
        let texts: Vec<&TokenizedText> = items.iter().flat_map(|i| &i.choices).collect();
        let t = pad_texts(&texts, self.pad_id, device);
        let s = t.input_ids.dims()[1];
        let three = |x: Option<Tensor<2, Int>>| x.expect("padded").reshape([b, c, s]);
        MultipleChoiceBatch {
            input_ids: t.input_ids.reshape([b, c, s]),
            attention_mask: three(t.attention_mask),
            token_type_ids: three(t.token_type_ids),
            labels: int1(items.iter().map(|i| i.label as i64).collect(), device),
        }
    }
}
