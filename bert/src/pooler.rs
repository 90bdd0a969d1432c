//! `BertPooler`: tanh(dense(hidden state of the first token)).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, activation::tanh};

use crate::config::BertConfig;
use crate::init;

#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

impl BertPooler {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: init::linear(config.hidden_size, config.hidden_size, config, device),
        }
    }

    /// `[b, s, h]` → `[b, h]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, h] = hidden.dims();
        let first = hidden.slice([0..b, 0..1, 0..h]).reshape([b, h]);
        tanh(self.dense.forward(first))
    }
}
