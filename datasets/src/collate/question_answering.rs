//! Extractive question answering: windows of question + context and the answer's token span.

use bert::BertInput;
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor};

use super::{DataCollatorWithPadding, TokenizedText, int1, pad_texts};
use crate::tasks::squad::SquadFeature;

/// An extractive-QA item: a window and its answer token span (0, 0 when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionAnsweringItem {
    pub text: TokenizedText,
    pub start_position: usize,
    pub end_position: usize,
}

impl From<&SquadFeature> for QuestionAnsweringItem {
    fn from(f: &SquadFeature) -> Self {
        Self {
            text: TokenizedText::from(&f.encoding),
            start_position: f.start_position,
            end_position: f.end_position,
        }
    }
}

#[derive(Debug, Clone)]
pub struct QuestionAnsweringBatch {
    pub input: BertInput,
    pub start_positions: Tensor<1, Int>,
    pub end_positions: Tensor<1, Int>,
}

impl Batcher<QuestionAnsweringItem, QuestionAnsweringBatch> for DataCollatorWithPadding {
    fn batch(&self, items: Vec<QuestionAnsweringItem>, device: &Device) -> QuestionAnsweringBatch {
        let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
        let pos = |f: &dyn Fn(&QuestionAnsweringItem) -> usize| {
            int1(items.iter().map(|i| f(i) as i64).collect(), device)
        };
        QuestionAnsweringBatch {
            input: pad_texts(&texts, self.pad_id, device),
            start_positions: pos(&|i| i.start_position),
            end_positions: pos(&|i| i.end_position),
        }
    }
}
