//! `BertEmbeddings`: word + position + token-type embeddings, LayerNorm, dropout.
#![allow(non_snake_case)] // fields named `LayerNorm`, as HF's state-dict keys

use std::ops::Range;

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
        let seq = input_ids.dims()[1];
        // HF's default positions are `past_len..past_len + seq` in every row, its default token
        // types all 0.
        let positions = lookup_or_rows(
            &self.position_embeddings,
            position_ids,
            past_len..past_len + seq,
        );
        let token_types = lookup_or_rows(&self.token_type_embeddings, token_type_ids, 0..1);
        let words = lookup(&self.word_embeddings, input_ids, self.pad_token_id);
        let embeddings = words + token_types + positions;
        crate::dropout::forward(&self.dropout, self.LayerNorm.forward(embeddings))
    }
}

/// `table(ids)`, or without ids the table's rows `default` broadcast over the batch: the same in
/// every row, so their gradient is a sum over the batch, not a scatter of `batch · seq` rows.
fn lookup_or_rows(
    table: &Embedding,
    ids: Option<Tensor<2, Int>>,
    default: Range<usize>,
) -> Tensor<3> {
    match ids {
        Some(ids) => lookup(table, ids, None),
        None => table.weight.val().slice(default).unsqueeze_dim::<3>(0),
    }
}

/// `table(ids)` as `nn.Embedding(padding_idx)`: the padding row gets no gradient. On flex and
/// ndarray one fused lookup whose backward is a parallel scatter-add that leaves the padding
/// positions out ([`crate::cpu_kernels::embedding`]); elsewhere Burn's, with the padding
/// positions' gradient masked.
fn lookup(table: &Embedding, ids: Tensor<2, Int>, padding_idx: Option<usize>) -> Tensor<3> {
    let weight = table.weight.val();
    if crate::cpu_kernels::applies(&weight) {
        return crate::cpu_kernels::embedding(weight, ids, padding_idx);
    }
    let rows = table.forward(ids.clone());
    match padding_idx {
        Some(pad) => {
            let is_pad = (ids.equal_elem(pad as i64).unsqueeze_dim::<3>(2)).expand(rows.dims());
            rows.clone().mask_where(is_pad, rows.detach())
        }
        None => rows,
    }
}
