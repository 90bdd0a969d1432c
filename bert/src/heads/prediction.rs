//! The MLM and NSP heads HF shares between its classes: `BertPredictionHeadTransform`,
//! `BertLMPredictionHead` (decoder tied to the word embeddings), `BertOnlyMLMHead`,
//! `BertOnlyNSPHead`, `BertPreTrainingHeads`.
#![allow(non_snake_case)] // fields named `LayerNorm`, as HF's state-dict keys

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use crate::activation::HiddenAct;
use crate::config::BertConfig;
use crate::error::Result;
use crate::init;
use crate::layer_norm::LayerNorm;
use crate::loss::token_cross_entropy;
use crate::model::{BertInput, BertModel};
use crate::output::BaseModelOutputWithPoolingAndCrossAttentions;

#[derive(Module, Debug)]
pub struct BertPredictionHeadTransform {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
    #[module(skip)]
    pub act: HiddenAct,
}

impl BertPredictionHeadTransform {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: init::linear(config.hidden_size, config.hidden_size, config, device),
            LayerNorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            act: config.hidden_act,
        }
    }

    pub fn forward<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        self.LayerNorm.forward(
            self.act
                .forward(crate::precision::linear(&self.dense, hidden)),
        )
    }
}

/// An untied decoder weight `[vocab, hidden]`, only for `tie_word_embeddings = false`.
#[derive(Module, Debug)]
pub struct BertLMDecoder {
    pub weight: Param<Tensor<2>>,
}

/// `transform`, then `hidden · Wᵀ + bias` with `W` the word embeddings (tied): the head owns
/// only its `bias`, so the one embedding parameter gets the gradients of both uses.
#[derive(Module, Debug)]
pub struct BertLMPredictionHead {
    pub transform: BertPredictionHeadTransform,
    pub bias: Param<Tensor<1>>,
    pub decoder: Option<BertLMDecoder>,
}

impl BertLMPredictionHead {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let decoder = (!config.tie_word_embeddings).then(|| BertLMDecoder {
            weight: init::embedding(config.vocab_size, config.hidden_size, None, config, device)
                .weight,
        });
        Self {
            transform: BertPredictionHeadTransform::new(config, device),
            bias: Param::from_tensor(Tensor::zeros([config.vocab_size], device)),
            decoder,
        }
    }

    /// [`Self::forward`] with the decoder tied to `bert`'s word embeddings (HF
    /// `tie_word_embeddings`).
    pub fn forward_tied(&self, bert: &BertModel, hidden: Tensor<3>) -> Tensor<3> {
        self.forward(hidden, bert.embeddings.word_embeddings.weight.val())
    }

    /// `hidden`: `[b, s, h]`; `word_embeddings`: `[vocab, h]` → logits `[b, s, vocab]`.
    pub fn forward(&self, hidden: Tensor<3>, word_embeddings: Tensor<2>) -> Tensor<3> {
        let [b, s, h] = hidden.dims();
        let logits = self.forward_rows(hidden.reshape([b * s, h]), word_embeddings);
        let vocab = logits.dims()[1];
        logits.reshape([b, s, vocab])
    }

    /// The same on rows `[n, h]` → `[n, vocab]`: the masked positions only
    /// ([`crate::MaskedPositions`]).
    pub fn forward_rows(&self, hidden: Tensor<2>, word_embeddings: Tensor<2>) -> Tensor<2> {
        let hidden = self.transform.forward(hidden);
        let weight = match &self.decoder {
            Some(d) => d.weight.val(),
            None => word_embeddings,
        };
        // On libtorch torch's `linear`, whose backward gives the (tied) weight's gradient in its
        // own `[vocab, h]` layout.
        if crate::tch_kernels::applies(&hidden.device()) {
            return crate::tch_kernels::linear(hidden, weight, self.bias.val());
        }
        // On flex and ndarray (f32) one GEMM into rows that start as the bias, the weight read
        // transposed in place: no second pass over the `[n, vocab]` logits for the bias, and
        // the weight's gradient `gᵀ·x` in its own layout.
        if crate::precision::current().half().is_none()
            && crate::cpu_kernels::applies(&hidden)
            && crate::cpu_kernels::applies(&weight)
        {
            return crate::cpu_kernels::linear_out_in(hidden, weight, self.bias.val());
        }
        let vocab = weight.dims()[0];
        crate::precision::matmul(hidden, weight.transpose()) + self.bias.val().reshape([1, vocab])
    }
}

#[derive(Module, Debug)]
pub struct BertOnlyMLMHead {
    pub predictions: BertLMPredictionHead,
}

impl BertOnlyMLMHead {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            predictions: BertLMPredictionHead::new(config, device),
        }
    }

    /// `bert` on `input`, then this head on its last hidden state (decoder tied to the word
    /// embeddings): the encoder's output, the vocabulary logits `[b, s, vocab]` and, with
    /// `labels` `[b, s]` (-100: no loss), the token cross-entropy against `adjust(labels)`.
    pub fn forward_with(
        &self,
        bert: &BertModel,
        input: BertInput,
        labels: Option<Tensor<2, Int>>,
        adjust: impl FnOnce(Tensor<2, Int>) -> Tensor<2, Int>,
    ) -> Result<(
        BaseModelOutputWithPoolingAndCrossAttentions,
        Tensor<3>,
        Option<Tensor<1>>,
    )> {
        let known = input.host_bounds;
        let out = bert.forward(input)?;
        let logits = (self.predictions).forward_tied(bert, out.last_hidden_state.clone());
        let loss = labels
            .map(|labels| token_cross_entropy(&logits, labels, known.labels, adjust))
            .transpose()?;
        Ok((out, logits, loss))
    }

    /// The encoder without pooler and this head above it, as `BertForMaskedLM` and
    /// `BertLMHeadModel` hold them.
    pub fn with_encoder(config: &BertConfig, device: &Device) -> (BertModel, Self) {
        (
            BertModel::new(config, false, device),
            Self::new(config, device),
        )
    }
}

#[derive(Module, Debug)]
pub struct BertOnlyNSPHead {
    pub seq_relationship: Linear,
}

impl BertOnlyNSPHead {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            seq_relationship: init::linear(config.hidden_size, 2, config, device),
        }
    }
}

#[derive(Module, Debug)]
pub struct BertPreTrainingHeads {
    pub predictions: BertLMPredictionHead,
    pub seq_relationship: Linear,
}

impl BertPreTrainingHeads {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            predictions: BertLMPredictionHead::new(config, device),
            seq_relationship: init::linear(config.hidden_size, 2, config, device),
        }
    }
}
