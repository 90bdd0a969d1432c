//! `BertEmbeddings`: word + position + token-type embeddings, LayerNorm, dropout.
#![allow(non_snake_case)] // fields named `LayerNorm`, as HF's state-dict keys

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding};
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::init;
use crate::layer_norm::LayerNorm;

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
    /// `padding_idx` of `word_embeddings`: that row gets no gradient, as in `nn.Embedding`.
    #[module(skip)]
    pub pad_token_id: Option<usize>,
}

impl BertEmbeddings {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self {
            word_embeddings: init::embedding(
                config.vocab_size,
                h,
                config.pad_token_id,
                config,
                device,
            ),
            position_embeddings: init::embedding(
                config.max_position_embeddings,
                h,
                None,
                config,
                device,
            ),
            token_type_embeddings: init::embedding(config.type_vocab_size, h, None, config, device),
            LayerNorm: LayerNorm::new(h, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            pad_token_id: config.pad_token_id,
        }
    }

    /// `input_ids`, `token_type_ids`, `position_ids`: `[batch, seq]`. Positions default to
    /// `past_len..past_len + seq` (HF's `past_key_values_length`), token types to zeros.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
        position_ids: Option<Tensor<2, Int>>,
        past_len: usize,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let position_ids = position_ids.unwrap_or_else(|| {
            Tensor::arange(past_len as i64..(past_len + seq) as i64, &device)
                .reshape([1, seq])
                .expand([batch, seq])
        });
        let token_type_ids = token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, seq], &device));

        let mut words = self.word_embeddings.forward(input_ids.clone());
        if let Some(pad) = self.pad_token_id {
            // nn.Embedding(padding_idx=pad): same value, no gradient into the padding row.
            let is_pad = input_ids
                .equal_elem(pad as i64)
                .unsqueeze_dim::<3>(2)
                .expand(words.dims());
            words = words.clone().mask_where(is_pad, words.detach());
        }
        let embeddings = words
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(position_ids);
        self.dropout.forward(self.LayerNorm.forward(embeddings))
    }
}
