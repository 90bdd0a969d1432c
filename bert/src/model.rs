//! `BertModel`: embeddings, encoder, optional pooler; encoder or decoder (causal mask,
//! cross-attention, key/value cache).

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::attention::KvCache;
use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::error::{BertError, Result};
use crate::layer::BertEncoder;
use crate::loss::IGNORE_INDEX;
use crate::output::BaseModelOutputWithPoolingAndCrossAttentions;
use crate::pooler::BertPooler;

/// `(min, max)` of an integer tensor's values.
pub type Bounds = (i64, i64);

/// `(min, max)` of `values`, leaving out `ignore` (HF's -100 for labels). With nothing left,
/// `(i64::MAX, i64::MIN)`: an empty range that every check passes.
pub fn bounds(values: impl IntoIterator<Item = i64>, ignore: Option<i64>) -> Bounds {
    values
        .into_iter()
        .filter(|&v| Some(v) != ignore)
        .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Value ranges of a batch's integer tensors, taken on the host where the batch was built (the
/// collators, from the very vectors the tensors were made of). With them the model and the
/// heads check ids and labels against the config on the host, and a forward pass reads nothing
/// back from the device. A range left `None` is checked on the device instead: its min and max
/// are read back, one sync each (the default, for inputs built by hand).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostBounds {
    pub input_ids: Option<Bounds>,
    pub token_type_ids: Option<Bounds>,
    /// The head's labels, the ignore index left out.
    pub labels: Option<Bounds>,
    /// `BertForPreTraining`'s second labels.
    pub next_sentence_label: Option<Bounds>,
}

/// The arguments of HF's `BertModel.forward`, batch-first `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct BertInput {
    pub input_ids: Tensor<2, Int>,
    /// 1 to attend, 0 for padding; `[batch, past + seq]`. Default: all ones.
    pub attention_mask: Option<Tensor<2, Int>>,
    /// Segment ids (0 for sentence A, 1 for B). Default: zeros.
    pub token_type_ids: Option<Tensor<2, Int>>,
    /// Default: `past..past + seq`.
    pub position_ids: Option<Tensor<2, Int>>,
    /// Decoder with cross-attention: the encoder's output, `[batch, enc_seq, hidden]`.
    pub encoder_hidden_states: Option<Tensor<3>>,
    /// `[batch, enc_seq]`, 1 to attend. Default: all ones.
    pub encoder_attention_mask: Option<Tensor<2, Int>>,
    /// Decoder: keys/values of the positions already seen.
    pub past_key_values: Option<KvCache>,
    /// Decoder: return the keys/values for the next step.
    pub use_cache: bool,
    /// Value ranges known on the host ([`HostBounds`]): checks without device reads.
    pub host_bounds: HostBounds,
}

impl BertInput {
    pub fn new(input_ids: Tensor<2, Int>) -> Self {
        Self {
            input_ids,
            attention_mask: None,
            token_type_ids: None,
            position_ids: None,
            encoder_hidden_states: None,
            encoder_attention_mask: None,
            past_key_values: None,
            use_cache: false,
            host_bounds: HostBounds::default(),
        }
    }

    /// Value ranges taken on the host where the batch was built ([`HostBounds`]).
    pub fn with_host_bounds(mut self, bounds: HostBounds) -> Self {
        self.host_bounds = bounds;
        self
    }

    /// The labels' range, from the values the label tensor was made of (-100 left out).
    pub fn with_label_values(mut self, labels: &[i64]) -> Self {
        self.host_bounds.labels = Some(bounds(labels.iter().copied(), Some(IGNORE_INDEX)));
        self
    }

    pub fn with_attention_mask(mut self, mask: Tensor<2, Int>) -> Self {
        self.attention_mask = Some(mask);
        self
    }

    pub fn with_token_type_ids(mut self, ids: Tensor<2, Int>) -> Self {
        self.token_type_ids = Some(ids);
        self
    }

    pub fn with_encoder(mut self, states: Tensor<3>, mask: Option<Tensor<2, Int>>) -> Self {
        self.encoder_hidden_states = Some(states);
        self.encoder_attention_mask = mask;
        self
    }

    pub fn with_cache(mut self, past: Option<KvCache>) -> Self {
        self.past_key_values = past;
        self.use_cache = true;
        self
    }

    /// `[batch, seq]` of `input_ids`.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }

    /// Checks shapes and value ranges against the config, naming the first problem.
    pub fn validate(&self, config: &BertConfig) -> Result<()> {
        let bad = |m: String| Err(BertError::Input(m));
        let [batch, seq] = self.dims();
        if batch == 0 || seq == 0 {
            return bad(format!("input_ids is empty (shape [{batch}, {seq}])"));
        }
        let past = self.past_key_values.as_ref().map_or(0, KvCache::seq_len);
        if self.position_ids.is_none() && past + seq > config.max_position_embeddings {
            return bad(format!(
                "sequence length {} is longer than max_position_embeddings ({})",
                past + seq,
                config.max_position_embeddings
            ));
        }
        let check_shape = |name: &str, dims: [usize; 2], want: [usize; 2]| {
            if dims != want {
                return bad(format!(
                    "{name} has shape {dims:?}, expected {want:?} (from input_ids)"
                ));
            }
            Ok(())
        };
        if let Some(m) = &self.attention_mask {
            check_shape("attention_mask", m.dims(), [batch, past + seq])?;
        }
        if let Some(t) = &self.token_type_ids {
            check_shape("token_type_ids", t.dims(), [batch, seq])?;
            check_range(
                "token_type_ids",
                t,
                self.host_bounds.token_type_ids,
                config.type_vocab_size,
                "type_vocab_size",
            )?;
        }
        if let Some(p) = &self.position_ids {
            check_shape("position_ids", p.dims(), [batch, seq])?;
            check_range(
                "position_ids",
                p,
                None,
                config.max_position_embeddings,
                "max_position_embeddings",
            )?;
        }
        check_range(
            "input_ids",
            &self.input_ids,
            self.host_bounds.input_ids,
            config.vocab_size,
            "vocab_size",
        )?;
        match (&self.encoder_hidden_states, config.add_cross_attention) {
            (Some(e), true) => {
                let [eb, es, eh] = e.dims();
                if eb != batch || eh != config.hidden_size {
                    return bad(format!(
                        "encoder_hidden_states has shape [{eb}, {es}, {eh}], expected [{batch}, _, {}]",
                        config.hidden_size
                    ));
                }
                if let Some(m) = &self.encoder_attention_mask {
                    check_shape("encoder_attention_mask", m.dims(), [batch, es])?;
                }
            }
            (Some(_), false) => {
                return bad("encoder_hidden_states given, but the config has no cross-attention (add_cross_attention = false)".into());
            }
            _ => {}
        }
        Ok(())
    }
}

/// The smallest and largest value, read back in one device sync.
pub(crate) fn min_max<const D: usize>(t: &Tensor<D, Int>) -> (i64, i64) {
    let both = Tensor::cat(vec![t.clone().min(), t.clone().max()], 0);
    let v = crate::reads::ints(both);
    (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    )
}

/// Errors unless every value of `t` is in `0..limit`; `known` bounds are checked on the host,
/// else min and max are read from the device.
pub(crate) fn check_range<const D: usize>(
    name: &str,
    t: &Tensor<D, Int>,
    known: Option<Bounds>,
    limit: usize,
    limit_name: &str,
) -> Result<()> {
    let (min, max) = known.unwrap_or_else(|| min_max(t));
    if min < 0 || max >= limit as i64 {
        let v = if min < 0 { min } else { max };
        return Err(BertError::Input(format!(
            "{name} contains {v}, outside 0..{limit} ({limit_name} = {limit})"
        )));
    }
    Ok(())
}

/// HF's extended attention mask: `[b, 1, q, k]`, 0 where attended and the dtype's minimum
/// where masked; causal (with the cached prefix visible) for decoders.
pub fn extended_attention_mask(
    mask: Option<Tensor<2, Int>>,
    batch: usize,
    seq: usize,
    past: usize,
    causal: bool,
    device: &Device,
) -> Option<Tensor<4>> {
    let total = past + seq;
    let padding: Option<Tensor<4, Bool>> = mask.map(|m| {
        m.equal_elem(0)
            .reshape([batch, 1, 1, total])
            .expand([batch, 1, seq, total])
    });
    let future: Option<Tensor<4, Bool>> = causal.then(|| {
        // Query i (absolute position past + i) may see keys 0..=past + i.
        Tensor::<2, Bool>::tril_mask([seq, total], past as i64, device)
            .reshape([1, 1, seq, total])
            .expand([batch, 1, seq, total])
    });
    let masked = match (padding, future) {
        (Some(p), Some(f)) => Some(p.bool_or(f)),
        (p, f) => p.or(f),
    }?;
    let zeros = Tensor::zeros([batch, 1, seq, total], device);
    let min = crate::precision::finfo_min(zeros.dtype());
    Some(zeros.mask_fill(masked, min))
}

#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: Option<BertPooler>,
    #[module(skip)]
    pub config: BertConfig,
}

impl BertModel {
    /// A newly initialised model (HF's `_init_weights`); `add_pooling_layer` as in HF.
    pub fn new(config: &BertConfig, add_pooling_layer: bool, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder::new(config, device),
            pooler: add_pooling_layer.then(|| BertPooler::new(config, device)),
            config: config.clone(),
        }
    }

    pub fn forward(
        &self,
        input: BertInput,
    ) -> Result<BaseModelOutputWithPoolingAndCrossAttentions> {
        input.validate(&self.config)?;
        let [batch, seq] = input.dims();
        let device = input.input_ids.device();
        let past = input.past_key_values.as_ref().map_or(0, KvCache::seq_len);
        let mask = extended_attention_mask(
            input.attention_mask,
            batch,
            seq,
            past,
            self.config.is_decoder,
            &device,
        );
        let encoder = match input.encoder_hidden_states {
            Some(states) if self.config.add_cross_attention => {
                let enc_seq = states.dims()[1];
                // HF `invert_attention_mask`: `[b, 1, 1, enc_seq]`, broadcast over queries.
                let enc_mask = input.encoder_attention_mask.map(|m| {
                    let zeros = Tensor::zeros([batch, 1, seq, enc_seq], &device);
                    let min = crate::precision::finfo_min(zeros.dtype());
                    zeros.mask_fill(
                        m.equal_elem(0)
                            .reshape([batch, 1, 1, enc_seq])
                            .expand([batch, 1, seq, enc_seq]),
                        min,
                    )
                });
                Some((states, enc_mask))
            }
            _ => None,
        };
        let embeddings = self.embeddings.forward(
            input.input_ids,
            input.token_type_ids,
            input.position_ids,
            past,
        );
        let use_cache = input.use_cache && self.config.is_decoder;
        let (last_hidden_state, hidden_states, past_key_values) =
            self.encoder
                .forward(embeddings, mask, encoder, input.past_key_values, use_cache);
        let pooler_output = self
            .pooler
            .as_ref()
            .map(|p| p.forward(last_hidden_state.clone()));
        Ok(BaseModelOutputWithPoolingAndCrossAttentions {
            last_hidden_state,
            pooler_output,
            hidden_states,
            past_key_values,
        })
    }
}
