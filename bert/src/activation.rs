//! `hidden_act`: HF's `ACT2FN` for the activations BERT configs use.

use burn::tensor::{Tensor, activation};
use serde::{Deserialize, Serialize};

/// The activation of the feed-forward block and of the MLM transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HiddenAct {
    /// Exact GELU, `x·Φ(x)` with erf (HF `gelu`, `gelu_python`).
    #[default]
    #[serde(rename = "gelu", alias = "gelu_python")]
    Gelu,
    /// tanh approximation of GELU (HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    #[serde(rename = "relu")]
    Relu,
    /// `x·sigmoid(x)` (HF `silu` and `swish`).
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    #[serde(rename = "tanh")]
    Tanh,
}

impl HiddenAct {
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Gelu => gelu_exact(x),
            Self::GeluNew => activation::gelu_approximate(x),
            Self::Relu => activation::relu(x),
            Self::Silu => activation::silu(x),
            Self::Tanh => activation::tanh(x),
        }
    }
}

/// Exact GELU, `x·½(1 + erf(x/√2))`, composed from `erf` so that autodiff differentiates it
/// exactly: Burn 0.22's fused `gelu` backward on ndarray and wgpu is off by up to 8.7e-4
/// (measured against the analytic derivative), which breaks gradient parity with PyTorch.
///
/// On flex and ndarray (f32) it runs fused instead ([`crate::cpu_kernels`]): the same function and
/// derivative to 1e-6, in one parallel pass each way. On libtorch Burn's `gelu` is torch's exact
/// `gelu` and `gelu_backward` (one kernel each way), so it serves there. On the CubeCL backends
/// (f32) it is a kernel of ours each way ([`crate::cube_kernels::gelu`]).
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if crate::cpu_kernels::applies(&x) {
        return crate::cpu_kernels::gelu(x);
    }
    if crate::tch_kernels::applies(&x.device()) {
        return activation::gelu(x);
    }
    if crate::cube_kernels::applies_rows(&x) {
        return crate::cube_kernels::gelu(x);
    }
    x.clone() * (x / std::f64::consts::SQRT_2).erf().add_scalar(1.0) * 0.5
}

/// Softmax over the last dimension (attention's probabilities); fused on flex and ndarray (f32) as
/// [`gelu_exact`] is, and a kernel of ours each way on the CubeCL backends (f32,
/// [`crate::cube_kernels::softmax_last`]).
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if crate::cpu_kernels::applies(&x) {
        return crate::cpu_kernels::softmax_last(x);
    }
    if crate::cube_kernels::applies_rows(&x) {
        return crate::cube_kernels::softmax_last(x);
    }
    activation::softmax(x, D - 1)
}
