//! Mixed precision (HF's `--bf16` / `--fp16`, PyTorch's `torch.autocast`): inside
//! [`autocast`], the encoder's matrix products — the Linear layers of attention and the
//! feed-forward block, the attention scores and context, and the MLM head — take their inputs
//! and weights cast to the half type and give their result back in f32. Parameters (and so
//! the optimizer's state) stay f32; LayerNorm, softmax, GELU, dropout and the losses run on
//! the f32 results. Burn's `cast` has a backward pass, so gradients reach the f32 parameters
//! in f32.
//!
//! The mode is per thread, as `torch.autocast` is per thread: the trainer sets it around the
//! forward pass and the backward pass follows the recorded casts.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use burn::nn::Linear;
use burn::tensor::{DType, FloatDType, Tensor};

/// What the matrix products compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Autocast {
    /// Everything in the tensors' own type (f32, or the device's `--dtype`).
    #[default]
    Off,
    /// bfloat16 products, f32 elsewhere (`--bf16`).
    Bf16,
    /// float16 products, f32 elsewhere (`--fp16`; train with a loss scaler).
    F16,
}

impl Autocast {
    /// The half type of the products; `None` when off.
    pub fn half(self) -> Option<FloatDType> {
        match self {
            Autocast::Off => None,
            Autocast::Bf16 => Some(FloatDType::BF16),
            Autocast::F16 => Some(FloatDType::F16),
        }
    }
}

thread_local! {
    static MODE: Cell<Autocast> = const { Cell::new(Autocast::Off) };
}

/// Runs `f` with the matrix products in `mode` on this thread (the previous mode restored
/// after, also when `f` panics).
pub fn autocast<R>(mode: Autocast, f: impl FnOnce() -> R) -> R {
    struct Restore(Autocast);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MODE.with(|m| m.replace(mode)));
    f()
}

/// The mode of this thread.
pub fn current() -> Autocast {
    MODE.with(Cell::get)
}

/// `x` cast to `half` when it is f32 (a tensor already in another type is left as it is).
fn to_half<const D: usize>(x: Tensor<D>, half: FloatDType) -> Tensor<D> {
    if x.dtype() == DType::F32 {
        x.cast(half)
    } else {
        x
    }
}

fn to_f32<const D: usize>(x: Tensor<D>, was: DType) -> Tensor<D> {
    if x.dtype() != was {
        x.cast(FloatDType::F32)
    } else {
        x
    }
}

/// `layer.forward(x)`, under autocast with `x` and the weight in the half type, the bias added
/// to the f32 product.
///
/// The leading dimensions are folded into the rows first, as torch's `Linear` does (`addmm`
/// on `[rows, in]`): one `[rows, in] @ [in, out]` product, whose weight gradient is one
/// `[in, rows] @ [rows, out]` product. Left 3-D, Burn 0.22's runtime dispatch lowers the
/// linear to a matmul against the weight broadcast over the batch, and autodiff then computes
/// the weight's gradient as a `[batch, in, out]` stack summed over the batch: `batch` times the
/// weight's memory (BERT-base's feed-forward: 75 MB, fresh pages, per layer and per step) and
/// `batch` small products instead of one.
///
/// On flex and ndarray in f32 it runs [`crate::cpu_kernels::linear`]: ndarray's own matmul
/// (`matrixmultiply`, no AVX-512) made a BERT-base step 1.8× slower on a Xeon.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D > 2 {
        let dims = x.dims();
        let rows = dims[..D - 1].iter().product();
        let y = linear(layer, x.reshape([rows, dims[D - 1]]));
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        return y.reshape(out);
    }
    let Some(half) = current().half() else {
        // Flex and ndarray: one GEMM into rows that start as the bias, and a hand-written
        // backward (`cpu_kernels::linear`).
        if let Some(bias) = &layer.bias
            && D == 2
            && crate::cpu_kernels::applies(&x)
        {
            let [rows, cols] = [x.dims()[0], x.dims()[D - 1]];
            let y =
                crate::cpu_kernels::linear(x.reshape([rows, cols]), layer.weight.val(), bias.val());
            let out = y.dims()[1];
            return y.reshape(std::array::from_fn(|i| if i == 0 { rows } else { out }));
        }
        return layer.forward(x);
    };
    let was = x.dtype();
    let weight = to_half(layer.weight.val(), half);
    let y = to_f32(
        burn::tensor::module::linear(to_half(x, half), weight, None),
        was,
    );
    match &layer.bias {
        Some(b) => y + b.val().unsqueeze(),
        None => y,
    }
}

/// `a.matmul(b)`, under autocast in the half type with an f32 result.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let Some(half) = current().half() else {
        return a.matmul(b);
    };
    let was = a.dtype();
    to_f32(to_half(a, half).matmul(to_half(b, half)), was)
}

/// The most negative finite value of a float type: the additive attention mask, as HF's
/// `torch.finfo(dtype).min` (f32's minimum overflows f16 to -inf, and -inf rows make NaN).
pub fn finfo_min(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => f64::from(half::f16::MIN),
        DType::BF16 => f64::from(half::bf16::MIN),
        DType::F64 => f64::MIN,
        _ => f64::from(f32::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_is_scoped_and_restored() {
        assert_eq!(current(), Autocast::Off);
        autocast(Autocast::Bf16, || {
            assert_eq!(current(), Autocast::Bf16);
            autocast(Autocast::Off, || assert_eq!(current(), Autocast::Off));
            assert_eq!(current(), Autocast::Bf16);
        });
        assert_eq!(current(), Autocast::Off);
        assert_eq!(finfo_min(DType::F16), -65504.0);
    }

    /// HF's `finfo(dtype).min` mask in f16: softmax over a padded row stays finite and gives
    /// the padding no weight; f32's minimum would overflow to -inf there.
    #[test]
    fn an_f16_mask_gives_padding_no_weight_without_overflow() {
        // f16 tensors on the backends that take them (ndarray and lavapipe do not).
        let backend = std::env::var("BERT_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
        if !matches!(backend.as_str(), "flex" | "tch") {
            return;
        }
        let device = crate::backend::test_device();
        let scores =
            Tensor::<2>::from_floats([[0.5, -1.0, 2.0, 0.0]], &device).cast(FloatDType::F16);
        let pad = Tensor::<2, burn::tensor::Bool>::from_bool(
            burn::tensor::TensorData::from([[false, false, true, true]]),
            &device,
        );
        let mask = Tensor::<2>::zeros([1, 4], &device)
            .cast(FloatDType::F16)
            .mask_fill(pad, finfo_min(DType::F16));
        let probs: Vec<f32> = burn::tensor::activation::softmax(scores + mask, 1)
            .cast(FloatDType::F32)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        assert!(probs.iter().all(|p| p.is_finite()), "{probs:?}");
        assert_eq!(&probs[2..], [0.0, 0.0]);
        assert!((probs[0] + probs[1] - 1.0).abs() < 1e-2, "{probs:?}");
    }
}
