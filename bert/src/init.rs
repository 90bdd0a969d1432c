//! HF's `BertPreTrainedModel._init_weights`: Linear and Embedding weights drawn from
//! normal(0, initializer_range), biases zero, LayerNorm 1/0, the padding row zero.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::config::BertConfig;

fn normal(config: &BertConfig) -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: config.initializer_range,
    }
}

/// `nn.Linear(d_in, d_out)` initialised as HF does. Burn stores the weight as `[d_in, d_out]`.
pub fn linear(d_in: usize, d_out: usize, config: &BertConfig, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_initializer(normal(config))
        .init(device);
    linear.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    linear
}

/// `nn.Embedding(n, d, padding_idx)` initialised as HF does (padding row zero).
pub fn embedding(
    n: usize,
    d: usize,
    padding_idx: Option<usize>,
    config: &BertConfig,
    device: &Device,
) -> Embedding {
    let mut embedding = EmbeddingConfig::new(n, d)
        .with_initializer(normal(config))
        .init(device);
    if let Some(pad) = padding_idx.filter(|&p| p < n) {
        // A new leaf parameter: on an autodiff device the slice_assign would otherwise make the
        // weight the output of an op, whose graph the first backward consumes.
        let w = embedding.weight.val();
        let w = w.slice_assign([pad..pad + 1, 0..d], Tensor::zeros([1, d], device));
        embedding.weight = Param::from_tensor(w.detach());
    }
    embedding
}
