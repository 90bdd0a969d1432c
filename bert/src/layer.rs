//! `BertIntermediate`, `BertOutput`, `BertLayer` and `BertEncoder`.
#![allow(non_snake_case)] // fields named `LayerNorm`, as HF's state-dict keys

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};

use crate::activation::HiddenAct;
use crate::attention::{BertAttention, KvCache, LayerCache};
use crate::checkpoint;
use crate::config::BertConfig;
use crate::init;
use crate::layer_norm::LayerNorm;

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    #[module(skip)]
    pub act: HiddenAct,
}

impl BertIntermediate {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: init::linear(config.hidden_size, config.intermediate_size, config, device),
            act: config.hidden_act,
        }
    }

    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.act
            .forward(crate::precision::linear(&self.dense, hidden))
    }
}

#[derive(Module, Debug)]
pub struct BertOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
}

impl BertOutput {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: init::linear(config.intermediate_size, config.hidden_size, config, device),
            LayerNorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    pub fn forward(&self, hidden: Tensor<3>, input: Tensor<3>) -> Tensor<3> {
        let hidden = crate::precision::linear(&self.dense, hidden);
        self.LayerNorm
            .forward_residual(&self.dropout, hidden, input)
    }
}

/// One transformer block: self-attention, optional cross-attention (decoder), feed-forward.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub crossattention: Option<BertAttention>,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
}

impl BertLayer {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            attention: BertAttention::new(config, device),
            crossattention: config
                .add_cross_attention
                .then(|| BertAttention::new(config, device)),
            intermediate: BertIntermediate::new(config, device),
            output: BertOutput::new(config, device),
        }
    }

    /// Returns the new hidden states and, when `want_cache`, this layer's keys/values.
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        mask: Option<Tensor<4>>,
        encoder: Option<(Tensor<3>, Option<Tensor<4>>)>,
        past: Option<LayerCache>,
    ) -> (Tensor<3>, LayerCache) {
        let (past_self, past_cross) = match past {
            Some(p) => (Some((p.self_key, p.self_value)), p.cross),
            None => (None, None),
        };
        let (mut hidden, (self_key, self_value)) =
            self.attention.forward(hidden, mask, None, past_self);
        let mut cross = None;
        if let (Some(cross_attention), Some((states, encoder_mask))) =
            (&self.crossattention, encoder)
        {
            let (h, kv) = cross_attention.forward(hidden, encoder_mask, Some(states), past_cross);
            hidden = h;
            cross = Some(kv);
        }
        let out = self
            .output
            .forward(self.intermediate.forward(hidden.clone()), hidden);
        (
            out,
            LayerCache {
                self_key,
                self_value,
                cross,
            },
        )
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

impl BertEncoder {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            layer: (0..config.num_hidden_layers)
                .map(|_| BertLayer::new(config, device))
                .collect(),
        }
    }

    /// Runs every layer; returns the last hidden states, every layer's output (HF
    /// `hidden_states`, embeddings first) and, if `use_cache`, the new cache.
    pub fn forward(
        &self,
        mut hidden: Tensor<3>,
        mask: Option<Tensor<4>>,
        encoder: Option<(Tensor<3>, Option<Tensor<4>>)>,
        past: Option<KvCache>,
        use_cache: bool,
    ) -> (Tensor<3>, Vec<Tensor<3>>, Option<KvCache>) {
        let mut past_layers = past.map(|p| p.layers.into_iter());
        let mut all = Vec::with_capacity(self.layer.len() + 1);
        let mut cache = KvCache::default();
        for layer in &self.layer {
            all.push(hidden.clone());
            let layer_past = past_layers.as_mut().and_then(|it| it.next());
            // HF `gradient_checkpointing`: with no cache to extend or return (HF turns
            // `use_cache` off for it).
            if layer_past.is_none() && !use_cache {
                let inputs = checkpoint::LayerInputs {
                    hidden,
                    mask: mask.clone(),
                    encoder: encoder.clone(),
                };
                hidden = checkpoint::layer_forward(layer, inputs);
                continue;
            }
            let (h, kv) = layer.forward(hidden, mask.clone(), encoder.clone(), layer_past);
            hidden = h;
            if use_cache {
                cache.layers.push(kv);
            }
        }
        all.push(hidden.clone());
        (hidden, all, use_cache.then_some(cache))
    }
}
