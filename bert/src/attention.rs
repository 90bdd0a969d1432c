//! `BertSelfAttention`, `BertSelfOutput`, `BertAttention`, and the key/value cache.
//!
//! Scaled dot-product attention as HF's eager path: an additive mask (0 to attend, the dtype's
//! minimum to ignore), softmax, dropout on the probabilities.
#![allow(non_snake_case)] // fields named `LayerNorm`, as HF's state-dict keys

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{DType, Device, Tensor};

use crate::activation::softmax_last;
use crate::config::BertConfig;
use crate::cpu_kernels;
use crate::cube_kernels;
use crate::init;
use crate::layer_norm::LayerNorm;
use crate::precision::{self, linear, matmul};
use crate::tch_kernels;

/// Cached keys and values of one layer, `[batch, heads, past_seq, head_dim]` (HF `past_key_value`).
#[derive(Debug, Clone)]
pub struct LayerCache {
    pub self_key: Tensor<4>,
    pub self_value: Tensor<4>,
    /// Keys/values of the encoder states; computed once, reused at every step.
    pub cross: Option<(Tensor<4>, Tensor<4>)>,
}

/// HF's `past_key_values`: one [`LayerCache`] per decoder layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    /// How many positions are cached (HF `past_key_values_length`).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.self_key.dims()[2])
    }
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    #[module(skip)]
    pub num_heads: usize,
}

impl BertSelfAttention {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self {
            query: init::linear(h, h, config, device),
            key: init::linear(h, h, config, device),
            value: init::linear(h, h, config, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
        }
    }

    /// `[b, s, h]` → `[b, heads, s, head_dim]`
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, s, h] = x.dims();
        x.reshape([b, s, self.num_heads, h / self.num_heads])
            .swap_dims(1, 2)
    }

    /// Self-attention when `encoder_states` is `None`, cross-attention otherwise.
    /// `mask` is additive, broadcastable to `[b, heads, q, k]`. `past` is this layer's cache
    /// (self keys/values to extend, or the cross keys/values to reuse); the keys/values used
    /// are returned for the next step.
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        mask: Option<Tensor<4>>,
        encoder_states: Option<Tensor<3>>,
        past: Option<(Tensor<4>, Tensor<4>)>,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let query = linear(&self.query, hidden.clone());
        let (key, value) = match (encoder_states, past) {
            // Cross-attention with cached encoder keys/values.
            (Some(_), Some(kv)) => kv,
            // Self-attention (extending the cache, if any) or cross-attention without a cache.
            (states, past) => {
                let states = states.unwrap_or(hidden);
                let key = linear(&self.key, states.clone());
                let value = linear(&self.value, states);
                // Flex and ndarray with f32 products and no cache to extend: one fused kernel
                // from the projections to the merged context (training: with the dropout and a
                // hand-written backward); the returned keys and values are views of the
                // projections.
                if past.is_none()
                    && cpu_kernels::applies(&query)
                    && precision::current() == precision::Autocast::Off
                {
                    let (q, k, v) = (query.clone(), key.clone(), value.clone());
                    let fused = if query.device().is_autodiff() {
                        let heads = self.num_heads;
                        cpu_kernels::attention_train(q, k, v, mask.clone(), heads, &self.dropout)
                    } else {
                        cpu_kernels::attention(q, k, v, mask.clone(), self.num_heads)
                    };
                    if let Some(context) = fused {
                        return (context, (self.split_heads(key), self.split_heads(value)));
                    }
                }
                let (key, value) = (self.split_heads(key), self.split_heads(value));
                match past {
                    Some((pk, pv)) => (
                        Tensor::cat(vec![pk, key], 2),
                        Tensor::cat(vec![pv, value], 2),
                    ),
                    None => (key, value),
                }
            }
        };
        let query = self.split_heads(query);
        // On libtorch: torch's SDPA, as HF's default attention (training: with the dropout and
        // torch's backward).
        if tch_kernels::applies(&query.device()) {
            let dropout = match self.dropout.training.is_enabled() {
                true => self.dropout.prob,
                false => 0.0,
            };
            let (k, v) = (key.clone(), value.clone());
            let context = tch_kernels::attention(query, k, v, mask, dropout);
            return (context, (key, value));
        }
        let context = self.composed(query, key.clone(), value.clone(), mask);
        (context, (key, value))
    }

    /// HF's eager attention of split heads (`[b, heads, seq, head_dim]`), the heads merged:
    /// `softmax(q·kᵀ / √head_dim + mask)`, dropout, `·v`.
    fn composed(
        &self,
        query: Tensor<4>,
        key: Tensor<4>,
        value: Tensor<4>,
        mask: Option<Tensor<4>>,
    ) -> Tensor<3> {
        let [b, heads, s, head_dim] = query.dims();
        let scores = matmul(query, key.swap_dims(2, 3));
        let divisor = (head_dim as f64).sqrt();
        // On the CubeCL backends (f32 scores, a mask of no gradient): the division, the mask,
        // the softmax and the dropout in one kernel each way, the same numbers.
        let probs = if cube_kernels::applies_rows(&scores)
            && mask
                .as_ref()
                .is_none_or(|m| m.dtype() == DType::F32 && !m.is_require_grad())
            && let Some(draw) = crate::dropout::cube_draw(&self.dropout, &scores.device())
        {
            cube_kernels::attention_softmax(scores, mask, divisor, draw)
        } else {
            let mut scores = scores / divisor;
            if let Some(mask) = mask {
                scores = scores + mask;
            }
            crate::dropout::forward(&self.dropout, softmax_last(scores))
        };
        matmul(probs, value)
            .swap_dims(1, 2)
            .reshape([b, s, heads * head_dim])
    }
}

#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
}

impl BertSelfOutput {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: init::linear(config.hidden_size, config.hidden_size, config, device),
            LayerNorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    pub fn forward(&self, hidden: Tensor<3>, input: Tensor<3>) -> Tensor<3> {
        let hidden = linear(&self.dense, hidden);
        self.LayerNorm
            .forward_residual(&self.dropout, hidden, input)
    }
}

/// HF `BertAttention`: `self` (the key is `attention.self.*`) and `output`.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// HF's `self` submodule (a Rust keyword): saved and loaded under the key `self`.
    pub self_: BertSelfAttention,
    pub output: BertSelfOutput,
}

impl BertAttention {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            self_: BertSelfAttention::new(config, device),
            output: BertSelfOutput::new(config, device),
        }
    }

    pub fn forward(
        &self,
        hidden: Tensor<3>,
        mask: Option<Tensor<4>>,
        encoder_states: Option<Tensor<3>>,
        past: Option<(Tensor<4>, Tensor<4>)>,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let (context, kv) = self
            .self_
            .forward(hidden.clone(), mask, encoder_states, past);
        (self.output.forward(context, hidden), kv)
    }
}

/// One attention problem and HF's eager answer to it, for the tests of the fused forms.
#[cfg(test)]
pub(crate) struct ReferenceCase {
    /// The projections, heads side by side: `q` `[b, q_len, h]`, `k` and `v` `[b, k_len, h]`.
    pub q: Tensor<3>,
    pub k: Tensor<3>,
    pub v: Tensor<3>,
    /// Additive, `0` or `f32::MIN`, broadcastable to `[b, heads, q_len, k_len]`.
    pub mask: Option<Tensor<4>>,
    pub heads: usize,
    /// `softmax(q·kᵀ / √d + mask)·v` of Burn's own ops, heads merged: `[b, q_len, h]`.
    pub want: Tensor<3>,
}

/// Attention problems for the fused forms (`cpu_kernels`, `tch_kernels`) to match on `device`:
/// self-attention with padding masks (one block of 64 queries and several, a partial last
/// one), a causal `[b, 1, q, k]` mask, a mask per head, no mask, one mask for the batch, and
/// cross-attention (`q_len ≠ k_len`); the per-query masks have a fully masked row.
#[cfg(test)]
pub(crate) fn reference_cases(device: &Device) -> Vec<ReferenceCase> {
    use burn::tensor::TensorData;
    let t = |seed: usize, dims: [usize; 3]| {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 2003.0 - 0.5) * 3.0)
            .collect();
        Tensor::<3>::from_data(TensorData::new(v, dims), device)
    };
    // (batch, q_len, k_len, heads, head_dim, mask shape or none)
    type Shape = (usize, usize, usize, usize, usize, Option<[usize; 4]>);
    let shapes: [Shape; 7] = [
        (2, 9, 9, 2, 8, Some([2, 1, 1, 9])),
        (3, 150, 150, 4, 16, Some([3, 1, 1, 150])),
        (2, 70, 70, 2, 32, Some([2, 1, 70, 70])),
        (2, 20, 20, 3, 8, Some([2, 3, 20, 20])),
        (2, 65, 65, 2, 8, None),
        (2, 12, 12, 2, 8, Some([1, 1, 1, 12])),
        (2, 7, 30, 4, 8, Some([2, 1, 1, 30])),
    ];
    shapes
        .into_iter()
        .map(|(b, sq, sk, heads, hd, mask_dims)| {
            let h = heads * hd;
            let (q, k, v) = (t(1, [b, sq, h]), t(2, [b, sk, h]), t(3, [b, sk, h]));
            let mask = mask_dims.map(|m| {
                let n: usize = m.iter().product();
                // Padding at the end of every row's keys, a causal pattern where the mask has
                // a row per query, a fully masked row in the per-query masks.
                let v: Vec<f32> = (0..n)
                    .map(|i| {
                        let (key, row) = (i % m[3], i / m[3]);
                        let query = row % m[2];
                        let padded = key + 1 + (row % 3) >= m[3] && key > 0;
                        let causal = m[2] > 1 && key > query;
                        let all = m[2] > 1 && query == 3;
                        if padded || causal || all {
                            f32::MIN
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Tensor::<4>::from_data(TensorData::new(v, m), device)
            });
            let split = |x: Tensor<3>, s: usize| x.reshape([b, s, heads, hd]).swap_dims(1, 2);
            let mut scores = split(q.clone(), sq).matmul(split(k.clone(), sk).swap_dims(2, 3))
                / (hd as f64).sqrt();
            if let Some(m) = mask.clone() {
                scores = scores + m;
            }
            let want = burn::tensor::activation::softmax(scores, 3)
                .matmul(split(v.clone(), sk))
                .swap_dims(1, 2)
                .reshape([b, sq, h]);
            ReferenceCase {
                q,
                k,
                v,
                mask,
                heads,
                want,
            }
        })
        .collect()
}
