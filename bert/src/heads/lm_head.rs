//! `BertLMHeadModel`: BERT as a decoder (`is_decoder = true`, causal mask), next-token loss
//! with labels shifted by one, and greedy generation with or without the key/value cache.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::heads::prediction::BertOnlyMLMHead;
use crate::loss::{IGNORE_INDEX, check_labels, cross_entropy};
use crate::model::{BertInput, BertModel};
use crate::output::CausalLMOutputWithCrossAttentions;

#[derive(Module, Debug)]
pub struct BertLMHeadModel {
    pub bert: BertModel,
    pub cls: BertOnlyMLMHead,
}

impl BertLMHeadModel {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            bert: BertModel::new(config, false, device),
            cls: BertOnlyMLMHead::new(config, device),
        }
    }

    /// `labels`: `[b, s]`, usually `input_ids`; position `t` predicts label `t + 1` (HF shifts
    /// inside), -100 where no loss.
    pub fn forward(
        &self,
        input: BertInput,
        labels: Option<Tensor<2, Int>>,
    ) -> Result<CausalLMOutputWithCrossAttentions> {
        let known = input.host_bounds;
        let out = self.bert.forward(input)?;
        let logits = self.cls.predictions.forward(
            out.last_hidden_state,
            self.bert.embeddings.word_embeddings.weight.val(),
        );
        let loss = match labels {
            Some(labels) => {
                let [b, s, v] = logits.dims();
                if labels.dims() != [b, s] {
                    return Err(BertError::Input(format!(
                        "labels has shape {:?}, expected {:?}",
                        labels.dims(),
                        [b, s]
                    )));
                }
                check_labels("labels", &labels, known.labels, v, Some(IGNORE_INDEX))?;
                // HF ForCausalLMLoss: labels shifted left, the last position padded with -100.
                let device = labels.device();
                let shifted = Tensor::cat(
                    vec![
                        labels.slice([0..b, 1..s]),
                        Tensor::full([b, 1], IGNORE_INDEX, &device),
                    ],
                    1,
                );
                Some(cross_entropy(
                    logits.clone().reshape([b * s, v]),
                    shifted.reshape([b * s]),
                    IGNORE_INDEX,
                ))
            }
            None => None,
        };
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
}
