//! `BertLMHeadModel`: BERT as a decoder (`is_decoder = true`, causal mask), next-token loss
//! with labels shifted by one, and greedy generation with or without the key/value cache.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::heads::prediction::BertOnlyMLMHead;
use crate::loss::IGNORE_INDEX;
use crate::model::{BertInput, BertModel};
use crate::output::CausalLMOutputWithCrossAttentions;

#[derive(Module, Debug)]
pub struct BertLMHeadModel {
    pub bert: BertModel,
    pub cls: BertOnlyMLMHead,
}

impl BertLMHeadModel {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let (bert, cls) = BertOnlyMLMHead::with_encoder(config, device);
        Self { bert, cls }
    }

    /// `labels`: `[b, s]`, usually `input_ids`; position `t` predicts label `t + 1` (HF shifts
    /// inside), -100 where no loss.
    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<Tensor<2, Int>>,
    ) -> Result<CausalLMOutputWithCrossAttentions> {
        // HF ForCausalLMLoss: labels shifted left, the last position padded with -100.
        let shift = |labels: Tensor<2, Int>| {
            let [b, s] = labels.dims();
            let pad = Tensor::full([b, 1], IGNORE_INDEX, &labels.device());
            Tensor::cat(vec![labels.slice([0..b, 1..s]), pad], 1)
        };
        let (out, logits, loss) = self.cls.forward_with(&self.bert, input, labels, shift)?;
        Ok(CausalLMOutputWithCrossAttentions {
            loss,
            logits,
            past_key_values: out.past_key_values,
        })
    }

    /// Greedy decoding: appends `max_new_tokens` argmax tokens to `input.input_ids` and returns
    /// the whole sequences `[b, s + max_new_tokens]`. With `use_cache` each step feeds only the
    /// newest token and the cached keys/values; without, it re-runs the whole prefix. Both give
    /// the same ids. Stops early once every row has produced `eos_token_id`, if given.
    pub fn generate(
        &self,
        input: BertInput,
        max_new_tokens: usize,
        use_cache: bool,
        eos_token_id: Option<i64>,
    ) -> Result<Tensor<2, Int>> {
        if !self.bert.config.is_decoder {
            return Err(BertError::InvalidConfig(
                "generation needs a decoder (is_decoder = true in config.json)".into(),
            ));
        }
        if input.attention_mask.is_some() {
            return Err(BertError::Input(
                "generate works on unpadded prompts: pass no attention_mask".into(),
            ));
        }
        let [b, s] = input.dims();
        if s + max_new_tokens > self.bert.config.max_position_embeddings {
            return Err(BertError::Input(format!(
                "prompt ({s}) + max_new_tokens ({max_new_tokens}) exceeds max_position_embeddings ({})",
                self.bert.config.max_position_embeddings
            )));
        }
        let mut sequences = input.input_ids.clone();
        let mut step = input;
        step.use_cache = use_cache;
        let mut finished: Option<Tensor<1, burn::tensor::Bool>> = None;
        for _ in 0..max_new_tokens {
            let out = self.forward(step.clone(), None)?;
            let [_, len, v] = out.logits.dims();
            let mut next = out
                .logits
                .slice([0..b, len - 1..len, 0..v])
                .reshape([b, v])
                .argmax(1)
                .reshape([b]);
            if let (Some(eos), Some(done)) = (eos_token_id, &finished) {
                next = next.mask_fill(done.clone(), eos);
            }
            sequences = Tensor::cat(vec![sequences, next.clone().reshape([b, 1])], 1);
            if let Some(eos) = eos_token_id {
                let now = next.clone().equal_elem(eos);
                let done = match finished.take() {
                    Some(f) => f.bool_or(now),
                    None => now,
                };
                let all: bool = done.clone().all().into_scalar();
                finished = Some(done);
                if all {
                    break;
                }
            }
            if use_cache {
                step.input_ids = next.reshape([b, 1]);
                step.token_type_ids = None;
                step.past_key_values = out.past_key_values;
            } else {
                step.input_ids = sequences.clone();
                step.token_type_ids = None;
            }
        }
        Ok(sequences)
    }

    /// Sampled decoding of one prompt (HF's `generate(do_sample=True, temperature, top_k)`):
    /// each new token is drawn from `softmax(logits / temperature)` over the `top_k` most
    /// likely (0: all), by a generator fixed by `seed`. Cached or not, the same seed gives the
    /// same tokens. Returns the sequence, prompt included; stops after `eos_token_id`.
    pub fn generate_sampled(&self, input: BertInput, config: &SamplingConfig) -> Result<Vec<i64>> {
        let [b, s] = input.dims();
        if b != 1 || input.attention_mask.is_some() {
            return Err(BertError::Input(
                "sampled generation takes one unpadded prompt (batch 1, no attention_mask)".into(),
            ));
        }
        if s + config.max_new_tokens > self.bert.config.max_position_embeddings {
            return Err(BertError::Input(format!(
                "prompt ({s}) + max_new_tokens ({}) exceeds max_position_embeddings ({})",
                config.max_new_tokens, self.bert.config.max_position_embeddings
            )));
        }
        if config.temperature.is_nan() || config.temperature <= 0.0 {
            return Err(BertError::Input(format!(
                "temperature must be > 0, got {}",
                config.temperature
            )));
        }
        let device = input.input_ids.device();
        let ints = |t: Tensor<2, Int>| -> Result<Vec<i64>> {
            t.into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| BertError::Input(format!("{e:?}")))
        };
        let mut ids = ints(input.input_ids.clone())?;
        let tensor = |v: &[i64]| {
            Tensor::<2, Int>::from_data(
                burn::tensor::TensorData::new(v.to_vec(), [1, v.len()]),
                &device,
            )
        };
        let mut step = input;
        step.use_cache = config.use_cache;
        let mut state = config.seed;
        for _ in 0..config.max_new_tokens {
            let out = self.forward(step.clone(), None)?;
            let [_, len, v] = out.logits.dims();
            let last: Vec<f32> = out
                .logits
                .slice([0..1, len - 1..len, 0..v])
                .reshape([v])
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| BertError::Input(format!("{e:?}")))?;
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let u = (crate::dropout::splitmix64(state) >> 40) as f32 / (1u64 << 24) as f32;
            let next = sample_top_k(&last, config.temperature, config.top_k, u) as i64;
            ids.push(next);
            if Some(next) == config.eos_token_id {
                break;
            }
            if step.use_cache {
                step.input_ids = tensor(&[next]);
                step.token_type_ids = None;
                step.past_key_values = out.past_key_values;
            } else {
                step.input_ids = tensor(&ids);
            }
        }
        Ok(ids)
    }
}

/// HF `GenerationConfig`'s sampling fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    pub max_new_tokens: usize,
    /// > 0; 1 keeps the model's distribution.
    pub temperature: f32,
    /// Sample among the `top_k` most likely tokens; 0: all.
    pub top_k: usize,
    /// Feed only the newest token and the cached keys/values each step.
    pub use_cache: bool,
    pub eos_token_id: Option<i64>,
    pub seed: u64,
}

/// The token a uniform draw `u` in [0, 1) picks from `softmax(logits / temperature)` restricted
/// to the `top_k` largest logits (0: all).
pub fn sample_top_k(logits: &[f32], temperature: f32, top_k: usize, u: f32) -> usize {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 {
        idx.truncate(top_k);
    }
    let scaled: Vec<f32> = idx.iter().map(|&i| logits[i] / temperature).collect();
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = scaled.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut r = u * sum;
    for (k, &i) in idx.iter().enumerate() {
        r -= exp[k];
        if r <= 0.0 {
            return i;
        }
    }
    idx[0]
}

#[cfg(test)]
mod sampling_tests {
    use super::sample_top_k;

    #[test]
    fn draws_follow_the_tempered_top_k_distribution() {
        let logits = [0.0, 2.0, 1.0, -1.0];
        // top_k = 1 is greedy.
        assert_eq!(sample_top_k(&logits, 1.0, 1, 0.99), 1);
        // p ∝ exp([2, 1]) over the top 2: [0.731, 0.269].
        assert_eq!(sample_top_k(&logits, 1.0, 2, 0.70), 1);
        assert_eq!(sample_top_k(&logits, 1.0, 2, 0.75), 2);
        // A low temperature sharpens: 0.99 still lands on the best.
        assert_eq!(sample_top_k(&logits, 0.05, 0, 0.99), 1);
        // Frequencies over a grid of draws match the probabilities.
        let n = 10_000;
        let picks = (0..n)
            .filter(|i| sample_top_k(&logits, 1.0, 0, (*i as f32 + 0.5) / n as f32) == 0)
            .count() as f64
            / n as f64;
        let p0 = 1.0 / (1.0 + 2f64.exp() + 1f64.exp() + (-1f64).exp());
        assert!((picks - p0).abs() < 1e-3, "{picks} vs {p0}");
    }
}
