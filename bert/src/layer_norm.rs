//! `nn.LayerNorm` with PyTorch parameter names (`weight`, `bias`) so that module paths equal
//! HF keys (`embeddings.LayerNorm.weight`), and `eps` from `layer_norm_eps`.

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor, module::layer_norm};

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    pub eps: f64,
}

impl LayerNorm {
    /// Weight 1, bias 0, as `nn.LayerNorm` and HF's `_init_weights`.
    pub fn new(size: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([size], device)),
            bias: Param::from_tensor(Tensor::zeros([size], device)),
            eps,
        }
    }

    /// On flex and ndarray (f32) it runs fused ([`crate::cpu_kernels::layer_norm`]), forward and
    /// backward; on libtorch it is torch's `layer_norm`, its backward torch's too
    /// ([`crate::tch_kernels::layer_norm`]); on the CubeCL backends (f32) it is a kernel of ours
    /// each way ([`crate::cube_kernels::layer_norm`]).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if crate::cpu_kernels::applies(&x) {
            return crate::cpu_kernels::layer_norm(x, self.weight.val(), self.bias.val(), self.eps);
        }
        if crate::cube_kernels::applies_rows(&x) && self.weight.val().dtype() == DType::F32 {
            return crate::cube_kernels::layer_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.eps,
            );
        }
        if crate::tch_kernels::applies(&x.device()) {
            return crate::tch_kernels::layer_norm(x, self.weight.val(), self.bias.val(), self.eps);
        }
        layer_norm(x, self.weight.val(), Some(self.bias.val()), self.eps)
    }

    /// `self(dropout(x) + residual)`, HF's `LayerNorm(dropout(dense(h)) + input)` closing the
    /// attention and feed-forward blocks. On the CubeCL backends (f32) one kernel of ours each
    /// way ([`crate::cube_kernels::add_layer_norm`], dropout's mask drawn from the same host
    /// stream as [`crate::dropout::forward`]'s, so the numbers are the same bit for bit);
    /// elsewhere the three ops.
    pub fn forward_residual<const D: usize>(
        &self,
        dropout: &burn::nn::Dropout,
        x: Tensor<D>,
        residual: Tensor<D>,
    ) -> Tensor<D> {
        if crate::cube_kernels::applies_rows(&x)
            && crate::cube_kernels::applies_rows(&residual)
            && x.dims() == residual.dims()
            && self.weight.val().dtype() == DType::F32
            && let Some(draw) = crate::dropout::cube_draw(dropout, &x.device())
        {
            return crate::cube_kernels::add_layer_norm(
                x,
                residual,
                self.weight.val(),
                self.bias.val(),
                self.eps,
                draw,
            );
        }
        self.forward(crate::dropout::forward(dropout, x) + residual)
    }
}
