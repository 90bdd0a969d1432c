//! Fused kernels for the flex backend, through Burn's `#[backend_extension]`: one parallel pass
//! where the composed form makes several single-threaded ones (burn-flex 0.22 runs element-wise
//! ops on one thread).
//!
//! Softmax over the last dimension (attention's): composed under autodiff, five passes forward
//! and about six backward; fused, one pass over the rows each way, in parallel.
//!
//! LayerNorm over the last dimension: Burn 0.22 composes it under autodiff (nine element-wise
//! passes forward, about fifteen backward); fused, burn-flex's own parallel forward and one
//! parallel pass backward that also sums the weight's and the bias's gradients.
//!
//! Exact GELU: composed, `x·½(1 + erf(x/√2))` is five element-wise passes forward and about ten
//! backward, with a scalar `erf`; fused, one pass each way over both cores. `erf` is
//! Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the approximation PyTorch's vectorised CPU
//! `erf` uses, with an `exp` that LLVM vectorises. Every other backend keeps the composed form
//! ([`crate::activation::gelu_exact`] decides).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};
use rayon::prelude::*;

#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait FlexFused: Backend {
    /// Exact GELU.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `grad · GELU'(x)`.
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The softmax's input gradient from its output `y`: `y · (grad - Σ grad·y)` per row.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// LayerNorm over the last dimension: `(x - mean) / √(var + eps) · weight + bias`.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// The gradients of [`FlexFused::layer_norm_last`] for its input, weight and bias, from its
    /// input, its weight and the output's gradient.
    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether the fused kernels run on `x`: f32 on the flex device (plain or autodiff).
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device().inner() == Device::flex()
}

/// Exact GELU of a flex f32 tensor (see [`applies`]), differentiable.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FlexFused>::gelu_erf(x.into_dispatch()))
}

/// Softmax over the last dimension of a flex f32 tensor (see [`applies`]), differentiable:
/// one parallel pass over the rows forward and one backward.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FlexFused>::softmax_last(x.into_dispatch()))
}

/// LayerNorm over the last dimension of a flex f32 tensor (see [`applies`]), differentiable in
/// `x`, `weight` and `bias`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FlexFused>::layer_norm_last(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        eps,
    ))
}

const CHUNK: usize = 1 << 14;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

impl FlexFused for Flex {
    fn gelu_erf(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        par_zip(empty_like(&x), &x, CHUNK, |o, i| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = v * 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
            }
        })
    }

    fn gelu_erf_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        par_zip(writable(grad), &x, CHUNK, |g, i| {
            for (g, &v) in g.iter_mut().zip(i) {
                // GELU'(x) = Φ(x) + x·φ(x).
                let cdf = 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
                let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * v * v);
                *g *= cdf + v * pdf;
            }
        })
    }

    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let (row, chunk) = rows_per_chunk(&x);
        par_zip(empty_like(&x), &x, chunk, |o, i| {
            for (o, i) in o.chunks_mut(row).zip(i.chunks(row)) {
                let max = i.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0.0;
                for (o, &v) in o.iter_mut().zip(i) {
                    *o = exp(v - max);
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|o| *o *= inv);
            }
        })
    }

    fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let y = contiguous(y);
        let (row, chunk) = rows_per_chunk(&y);
        par_zip(writable(grad), &y, chunk, |g, y| {
            for (g, y) in g.chunks_mut(row).zip(y.chunks(row)) {
                let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
                for (g, &y) in g.iter_mut().zip(y) {
                    *g = y * (*g - dot);
                }
            }
        })
    }

    fn layer_norm_last(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        <Flex as ModuleOps<Flex>>::layer_norm(x, weight, Some(bias), eps)
    }

    fn layer_norm_last_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, weight) = (contiguous(x), contiguous(weight));
        let w = weight.as_slice::<f32>().expect("contiguous f32");
        let (h, chunk) = rows_per_chunk(&x);
        let zeros = || (vec![0f32; h], vec![0f32; h]);
        let mut dx = writable(grad);
        let (dw, db) = (dx.storage_mut::<f32>().par_chunks_mut(chunk))
            .zip(
                x.as_slice::<f32>()
                    .expect("contiguous f32")
                    .par_chunks(chunk),
            )
            .map(|(g, x)| {
                let (mut dw, mut db) = zeros();
                for (g, x) in g.chunks_mut(h).zip(x.chunks(h)) {
                    // x̂ = (x - mean)·rstd; with ĝ = g·w:
                    // dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), dw = Σ g·x̂, db = Σ g.
                    let mean = x.iter().sum::<f32>() / h as f32;
                    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
                    let rstd = 1.0 / (var + eps as f32).sqrt();
                    let (mut mean_g, mut mean_gx) = (0.0, 0.0);
                    for i in 0..h {
                        let xh = (x[i] - mean) * rstd;
                        dw[i] += g[i] * xh;
                        db[i] += g[i];
                        mean_g += g[i] * w[i];
                        mean_gx += g[i] * w[i] * xh;
                    }
                    let (mean_g, mean_gx) = (mean_g / h as f32, mean_gx / h as f32);
                    for i in 0..h {
                        let xh = (x[i] - mean) * rstd;
                        g[i] = rstd * (g[i] * w[i] - mean_g - xh * mean_gx);
                    }
                }
                (dw, db)
            })
            .reduce(zeros, |(mut dw, mut db), (dw2, db2)| {
                dw.iter_mut().zip(dw2).for_each(|(a, b)| *a += b);
                db.iter_mut().zip(db2).for_each(|(a, b)| *a += b);
                (dw, db)
            });
        (dx, vector(&dw), vector(&db))
    }
}

/// A 1-D f32 tensor holding `values`.
fn vector(values: &[f32]) -> FlexTensor {
    let mut t = FlexTensor::empty(Shape::new([values.len()]), DType::F32);
    t.storage_mut::<f32>().copy_from_slice(values);
    t
}

/// `f` on matching chunks of `dst` (written) and `src` (read), `chunk` elements at a time, in
/// parallel; returns `dst`.
fn par_zip(
    mut dst: FlexTensor,
    src: &FlexTensor,
    chunk: usize,
    f: impl Fn(&mut [f32], &[f32]) + Send + Sync,
) -> FlexTensor {
    let src = src.as_slice::<f32>().expect("contiguous f32");
    (dst.storage_mut::<f32>().par_chunks_mut(chunk))
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| f(d, s));
    dst
}

/// A new f32 buffer of `x`'s shape.
fn empty_like(x: &FlexTensor) -> FlexTensor {
    FlexTensor::empty(x.layout().shape().clone(), DType::F32)
}

/// The incoming gradient as a buffer the backward may overwrite: its own when nothing else
/// holds it, else a contiguous copy.
fn writable(grad: FlexTensor) -> FlexTensor {
    let grad = contiguous(grad);
    if grad.is_unique() {
        return grad;
    }
    let mut out = empty_like(&grad);
    out.storage_mut::<f32>()
        .copy_from_slice(grad.as_slice::<f32>().expect("contiguous f32"));
    out
}

/// The length of `x`'s rows (its last dimension), and a chunk of whole rows of about [`CHUNK`]
/// elements for [`par_zip`].
fn rows_per_chunk(x: &FlexTensor) -> (usize, usize) {
    let shape = x.layout().shape();
    let row = shape[shape.num_dims() - 1].max(1);
    (row, row * (CHUNK / row).max(1))
}

/// `x` itself when it is a contiguous f32 buffer starting at 0 (what the loops read), else a
/// contiguous copy.
fn contiguous(x: FlexTensor) -> FlexTensor {
    match x.layout().contiguous_offsets() {
        Some((0, _)) => x,
        _ => x.to_contiguous(),
    }
}

impl<B: FlexFused, C: CheckpointStrategy> FlexFused for Autodiff<B, C> {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C>(x, B::gelu_erf, B::gelu_erf_backward, Saved::Input)
    }

    /// Not differentiated again (the first-order backward is all training needs).
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::gelu_erf_backward(Self::inner(x), Self::inner(grad)))
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C>(x, B::softmax_last, B::softmax_last_backward, Saved::Output)
    }

    /// Not differentiated again.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::softmax_last_backward(Self::inner(y), Self::inner(grad)))
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let ((x, x_node), (w, w_node)) = (x.into_parts(), weight.into_parts());
        let (b, b_node) = bias.into_parts();
        match (LayerNormBackward { eps })
            .prepare::<C>([x_node, w_node, b_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::layer_norm_last(x.clone(), w.clone(), b, eps);
                prep.finish((x, w), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_last(x, w, b, eps)),
        }
    }

    /// Not differentiated again.
    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dw, db) = B::layer_norm_last_backward(
            Self::inner(x),
            Self::inner(weight),
            Self::inner(grad),
            eps,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dw),
            Self::from_inner(db),
        )
    }
}

/// The backward step of [`FlexFused::layer_norm_last`]: input, weight and bias gradients from
/// the saved input and weight.
#[derive(Debug)]
struct LayerNormBackward {
    eps: f64,
}

impl<B: FlexFused> Backward<B, 3> for LayerNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let (dx, dw, db) = B::layer_norm_last_backward(x, weight, grad, self.eps);
        for (parent, grad) in ops.parents.into_iter().zip([dx, dw, db]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// What a fused op's backward reads besides the gradient.
#[derive(Clone, Copy, PartialEq)]
enum Saved {
    Input,
    Output,
}

type Unary<B> = fn(FloatTensor<B>) -> FloatTensor<B>;
type Binary<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

/// The backward step of a fused unary op: `grad(saved, incoming gradient)`.
struct UnaryBackward<B: Backend> {
    grad: Binary<B>,
}

impl<B: Backend> std::fmt::Debug for UnaryBackward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnaryBackward")
    }
}

impl<B: Backend> Backward<B, 1> for UnaryBackward<B> {
    /// The op's input or output ([`Saved`]).
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |g| (self.grad)(saved, g));
    }
}

/// `forward` on the inner backend, recorded for autodiff with `grad` as its backward.
fn tracked<B: FlexFused, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: Unary<B>,
    grad: Binary<B>,
    saved: Saved,
) -> FloatTensor<Autodiff<B, C>> {
    let (x, node) = x.into_parts();
    match (UnaryBackward { grad })
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) if saved == Saved::Input => {
            let y = forward(x.clone());
            prep.finish(x, y)
        }
        OpsKind::Tracked(prep) => {
            let y = forward(x);
            prep.finish(y.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x)),
    }
}

/// erf, Abramowitz & Stegun 7.1.26: `1 - (a1·t + … + a5·t⁵)·e^(-x²)`, `t = 1/(1 + p·|x|)`.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// e^x for f32 without a libm call, so that loops over it vectorise: `x = n·ln2 + r`,
/// `|r| ≤ ln2/2`, a degree-6 polynomial for e^r (relative error ~2e-7), `2^n` built in the
/// exponent bits. Inputs below -87 give 0 (as the softmax of a masked score needs).
#[inline(always)]
fn exp(x0: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by the 1.5·2^23 trick (vectorises; `round` is a libm call).
    const MAGIC: f32 = 12_582_912.0;
    let x = x0.clamp(-87.0, 88.0);
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let y = p * f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x0 < -87.0 { 0.0 } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused `erf` and `exp` against the standard library's, over the range GELU sees.
    #[test]
    fn erf_and_exp_match_the_standard_library() {
        let mut worst = (0f32, 0f32);
        for i in -60_000..=60_000 {
            let x = i as f32 / 5_000.0; // -12 … 12
            worst.0 = worst.0.max((erf(x) - libm_erf(x)).abs());
            let e = -(x * x) / 2.0;
            let rel = ((exp(e) - e.exp()) / e.exp().max(f32::MIN_POSITIVE)).abs();
            if e > -80.0 {
                worst.1 = worst.1.max(rel);
            }
        }
        // 1.5e-7 in exact arithmetic (A&S), plus f32 rounding.
        assert!(worst.0 < 1e-6, "erf: {}", worst.0);
        assert!(worst.1 < 1e-6, "exp: {}", worst.1);
    }

    /// libm's `erff`, through the tensor op on flex (std has no `erf`).
    fn libm_erf(x: f32) -> f32 {
        let d = crate::backend::test_device();
        let t = Tensor::<1>::from_floats([x], &d).erf();
        t.into_data().try_to_vec::<f32>().unwrap()[0]
    }

    /// Forward and backward of the fused softmax against Burn's, on the flex device, with a
    /// masked (very negative) entry per row as attention has.
    #[test]
    fn fused_softmax_matches_burns_and_its_gradient() {
        let d = Device::flex().autodiff();
        let values: Vec<f32> = (0..4096)
            .map(|i| {
                if i % 64 == 5 {
                    f32::MIN
                } else {
                    ((i * 37 % 101) as f32 - 50.0) / 7.0
                }
            })
            .collect();
        let x = Tensor::<3>::from_data(burn::tensor::TensorData::new(values, [4, 16, 64]), &d);
        let w = Tensor::<3>::from_data(
            burn::tensor::TensorData::new(
                (0..4096).map(|i| (i % 13) as f32).collect(),
                [4, 16, 64],
            ),
            &d,
        );
        let (a, b) = (x.clone().require_grad(), x.require_grad());
        let (fa, fb) = (
            softmax_last(a.clone()),
            burn::tensor::activation::softmax(b.clone(), 2),
        );
        let diff: f32 = (fa.clone() - fb.clone()).abs().max().into_scalar();
        assert!(diff < 1e-6, "forward {diff}");
        let (ga, gb) = ((fa * w.clone()).sum().backward(), (fb * w).sum().backward());
        let (ga, gb) = (a.grad(&ga).unwrap(), b.grad(&gb).unwrap());
        let diff: f32 = (ga - gb).abs().max().into_scalar();
        assert!(diff < 1e-5, "gradient {diff}");
    }

    /// Forward and backward of the fused LayerNorm against Burn's composed one (what autodiff
    /// runs otherwise): the input's, weight's and bias's gradients, rows with offsets and
    /// scales as the residual stream has.
    #[test]
    fn fused_layer_norm_matches_burns_and_its_gradients() {
        use burn::tensor::TensorData;
        let d = Device::flex().autodiff();
        let (rows, h) = (3 * 50, 96);
        let values: Vec<f32> = (0..rows * h)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0 * (1 + i / h % 5) as f32 + (i / h) as f32)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(values, [3, 50, h]), &d);
        let weight = Tensor::<1>::from_data(
            TensorData::new((0..h).map(|i| 0.5 + (i % 7) as f32 / 5.0).collect(), [h]),
            &d,
        );
        let bias = Tensor::<1>::from_data(
            TensorData::new((0..h).map(|i| (i % 3) as f32 - 1.0).collect(), [h]),
            &d,
        );
        let upstream = Tensor::<3>::from_data(
            TensorData::new(
                (0..rows * h)
                    .map(|i| ((i % 11) as f32 - 5.0) / 3.0)
                    .collect(),
                [3, 50, h],
            ),
            &d,
        );
        let run = |fused: bool| {
            let (x, w, b) = (
                x.clone().require_grad(),
                weight.clone().require_grad(),
                bias.clone().require_grad(),
            );
            let y = if fused {
                layer_norm(x.clone(), w.clone(), b.clone(), 1e-12)
            } else {
                burn::tensor::module::layer_norm(x.clone(), w.clone(), Some(b.clone()), 1e-12)
            };
            let g = (y.clone() * upstream.clone()).sum().backward();
            let flat = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
            (
                flat(y.flatten(0, 2)),
                flat(x.grad(&g).unwrap().flatten(0, 2)),
                flat(w.grad(&g).unwrap()),
                flat(b.grad(&g).unwrap()),
            )
        };
        let (fused, composed) = (run(true), run(false));
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max)
        };
        assert!(worst(&fused.0, &composed.0) < 1e-5, "forward");
        assert!(worst(&fused.1, &composed.1) < 1e-4, "input gradient");
        assert!(worst(&fused.2, &composed.2) < 1e-4, "weight gradient");
        assert!(worst(&fused.3, &composed.3) < 1e-5, "bias gradient");
        assert!(
            composed.2.iter().any(|g| g.abs() > 1.0),
            "a weight gradient worth checking"
        );
    }

    /// Forward and backward of the fused GELU against the composed form, on the flex device.
    #[test]
    fn fused_gelu_matches_the_composed_form_and_its_gradient() {
        let d = Device::flex().autodiff();
        let values: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) / 300.0).collect();
        let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(values, [64, 64]), &d);
        let composed =
            |x: Tensor<2>| x.clone() * (x / std::f64::consts::SQRT_2).erf().add_scalar(1.0) * 0.5;
        let (a, b) = (x.clone().require_grad(), x.require_grad());
        let (fa, fb) = (gelu(a.clone()), composed(b.clone()));
        let diff: f32 = (fa.clone() - fb.clone()).abs().max().into_scalar();
        assert!(diff < 1e-6, "forward {diff}");
        let (ga, gb) = (fa.sum().backward(), fb.sum().backward());
        let (ga, gb) = (a.grad(&ga).unwrap(), b.grad(&gb).unwrap());
        let diff: f32 = (ga - gb).abs().max().into_scalar();
        assert!(diff < 1e-6, "gradient {diff}");
    }
}
