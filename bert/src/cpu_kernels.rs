//! Fused kernels for the host-memory CPU backends, flex and ndarray, through Burn's
//! `#[backend_extension]`: one parallel pass where the composed form makes several
//! single-threaded ones (burn-flex 0.22 runs element-wise ops on one thread). The kernels are
//! written once over [`HostRows`], the little each backend's tensor type has to offer: its f32
//! values as a slice.
//!
//! Softmax over the last dimension (attention's): composed under autodiff, five passes forward
//! and about six backward; fused, one pass over the rows each way, in parallel.
//!
//! LayerNorm over the last dimension: Burn 0.22 composes it under autodiff (nine element-wise
//! passes forward, about fifteen backward); fused, one parallel pass forward (burn-flex's own
//! SIMD kernel on flex) and one backward that also sums the weight's and the bias's gradients.
//!
//! Exact GELU: composed, `x·½(1 + erf(x/√2))` is five element-wise passes forward and about ten
//! backward, with a scalar `erf`; fused, one pass each way over both cores. `erf` is
//! Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the approximation PyTorch's vectorised CPU
//! `erf` uses, with an `exp` that LLVM vectorises. Every other backend keeps the composed form
//! ([`crate::activation::gelu_exact`] decides).
// Burn 0.22 deprecates ndarray in favour of flex; it is still one of this crate's backends.
#![cfg_attr(feature = "ndarray", allow(deprecated))]

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"), Autodiff)]
pub trait CpuFused: Backend {
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
    /// The gradients of [`CpuFused::layer_norm_last`] for its input, weight and bias, from its
    /// input, its weight and the output's gradient.
    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether the fused kernels run on `x`: f32 on the flex or ndarray device (plain or autodiff).
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && crate::backend::host_memory(&x.device())
}

/// Exact GELU of a CPU f32 tensor (see [`applies`]), differentiable.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::gelu_erf(x.into_dispatch()))
}

/// Softmax over the last dimension of a CPU f32 tensor (see [`applies`]), differentiable:
/// one parallel pass over the rows forward and one backward.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::softmax_last(x.into_dispatch()))
}

/// LayerNorm over the last dimension of a CPU f32 tensor (see [`applies`]), differentiable in
/// `x`, `weight` and `bias`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::layer_norm_last(
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

/// What the kernels need of a backend's f32 tensor: its values as one slice in row-major
/// order, a new buffer of its shape, and a 1-D one.
pub trait HostRows: Sized {
    /// Itself when its values are one row-major f32 slice, else a copy that is.
    fn contiguous(self) -> Self;
    /// The values (of a [`HostRows::contiguous`] tensor).
    fn values(&self) -> &[f32];
    /// The values to overwrite (of a [`HostRows::contiguous`] tensor nothing else holds).
    fn values_mut(&mut self) -> &mut [f32];
    /// Whether nothing else holds this buffer.
    fn is_unique(&self) -> bool;
    /// A new f32 buffer of this tensor's shape.
    fn empty_like(&self) -> Self;
    /// The last dimension.
    fn row_len(&self) -> usize;
    /// A 1-D tensor holding `values`.
    fn vector(values: &[f32]) -> Self;
}

/// The fused kernels, once for every [`HostRows`] backend.
mod kernels {
    use super::*;

    pub fn gelu_erf<T: HostRows>(x: T) -> T {
        let x = x.contiguous();
        par_zip(x.empty_like(), &x, CHUNK, |o, i| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = v * 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
            }
        })
    }

    pub fn gelu_erf_backward<T: HostRows>(x: T, grad: T) -> T {
        let x = x.contiguous();
        par_zip(writable(grad), &x, CHUNK, |g, i| {
            for (g, &v) in g.iter_mut().zip(i) {
                // GELU'(x) = Φ(x) + x·φ(x).
                let cdf = 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
                let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * v * v);
                *g *= cdf + v * pdf;
            }
        })
    }

    pub fn softmax_last<T: HostRows>(x: T) -> T {
        let x = x.contiguous();
        let (row, chunk) = rows_per_chunk(&x);
        par_zip(x.empty_like(), &x, chunk, |o, i| {
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

    pub fn softmax_last_backward<T: HostRows>(y: T, grad: T) -> T {
        let y = y.contiguous();
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

    /// A row's mean and 1/√(var + eps) (two passes: no cancellation).
    fn moments(x: &[f32], eps: f64) -> (f32, f32) {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        (mean, 1.0 / (var + eps as f32).sqrt())
    }

    /// (Flex runs burn-flex's own SIMD forward instead.)
    #[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
    pub fn layer_norm_last<T: HostRows>(x: T, weight: T, bias: T, eps: f64) -> T {
        let (x, weight, bias) = (x.contiguous(), weight.contiguous(), bias.contiguous());
        let (w, b) = (weight.values(), bias.values());
        let (h, chunk) = rows_per_chunk(&x);
        par_zip(x.empty_like(), &x, chunk, |o, x| {
            for (o, x) in o.chunks_mut(h).zip(x.chunks(h)) {
                let (mean, rstd) = moments(x, eps);
                for i in 0..h {
                    o[i] = (x[i] - mean) * rstd * w[i] + b[i];
                }
            }
        })
    }

    pub fn layer_norm_last_backward<T: HostRows>(x: T, weight: T, grad: T, eps: f64) -> (T, T, T) {
        let (x, weight) = (x.contiguous(), weight.contiguous());
        let w = weight.values();
        let (h, chunk) = rows_per_chunk(&x);
        let zeros = || (vec![0f32; h], vec![0f32; h]);
        let mut dx = writable(grad);
        let (dw, db) = (dx.values_mut().par_chunks_mut(chunk))
            .zip(x.values().par_chunks(chunk))
            .map(|(g, x)| {
                let (mut dw, mut db) = zeros();
                for (g, x) in g.chunks_mut(h).zip(x.chunks(h)) {
                    // x̂ = (x - mean)·rstd; with ĝ = g·w:
                    // dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), dw = Σ g·x̂, db = Σ g.
                    let (mean, rstd) = moments(x, eps);
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
        (dx, T::vector(&dw), T::vector(&db))
    }

    /// `f` on matching chunks of `dst` (written) and `src` (read), `chunk` elements at a time,
    /// in parallel; returns `dst`.
    fn par_zip<T: HostRows>(
        mut dst: T,
        src: &T,
        chunk: usize,
        f: impl Fn(&mut [f32], &[f32]) + Send + Sync,
    ) -> T {
        (dst.values_mut().par_chunks_mut(chunk))
            .zip(src.values().par_chunks(chunk))
            .for_each(|(d, s)| f(d, s));
        dst
    }

    /// The incoming gradient as a buffer the backward may overwrite: its own when nothing else
    /// holds it, else a contiguous copy.
    fn writable<T: HostRows>(grad: T) -> T {
        let grad = grad.contiguous();
        if grad.is_unique() {
            return grad;
        }
        let mut out = grad.empty_like();
        out.values_mut().copy_from_slice(grad.values());
        out
    }

    /// The length of `x`'s rows (its last dimension), and a chunk of whole rows of about
    /// [`CHUNK`] elements for [`par_zip`].
    fn rows_per_chunk<T: HostRows>(x: &T) -> (usize, usize) {
        let row = x.row_len().max(1);
        (row, row * (CHUNK / row).max(1))
    }
}

/// [`CpuFused`] for a [`HostRows`] backend: the kernels of [`kernels`]; `$layer_norm` is its
/// LayerNorm forward.
macro_rules! host_fused {
    ($backend:ty, $tensor:ty, $layer_norm:expr) => {
        impl CpuFused for $backend {
            fn gelu_erf(x: $tensor) -> $tensor {
                kernels::gelu_erf(x)
            }
            fn gelu_erf_backward(x: $tensor, grad: $tensor) -> $tensor {
                kernels::gelu_erf_backward(x, grad)
            }
            fn softmax_last(x: $tensor) -> $tensor {
                kernels::softmax_last(x)
            }
            fn softmax_last_backward(y: $tensor, grad: $tensor) -> $tensor {
                kernels::softmax_last_backward(y, grad)
            }
            fn layer_norm_last(x: $tensor, weight: $tensor, bias: $tensor, eps: f64) -> $tensor {
                $layer_norm(x, weight, bias, eps)
            }
            fn layer_norm_last_backward(
                x: $tensor,
                weight: $tensor,
                grad: $tensor,
                eps: f64,
            ) -> ($tensor, $tensor, $tensor) {
                kernels::layer_norm_last_backward(x, weight, grad, eps)
            }
        }
    };
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::ModuleOps;
    use burn::tensor::{DType, Shape};

    use super::{CpuFused, HostRows, kernels};

    // burn-flex's own LayerNorm forward: SIMD and parallel.
    host_fused!(Flex, FlexTensor, |x, w, b, eps| {
        <Flex as ModuleOps<Flex>>::layer_norm(x, w, Some(b), eps)
    });

    impl HostRows for FlexTensor {
        fn contiguous(self) -> Self {
            match self.layout().contiguous_offsets() {
                Some((0, _)) => self,
                _ => self.to_contiguous(),
            }
        }
        fn values(&self) -> &[f32] {
            self.as_slice::<f32>().expect("contiguous f32")
        }
        fn values_mut(&mut self) -> &mut [f32] {
            self.storage_mut::<f32>()
        }
        fn is_unique(&self) -> bool {
            FlexTensor::is_unique(self)
        }
        fn empty_like(&self) -> Self {
            FlexTensor::empty(self.layout().shape().clone(), DType::F32)
        }
        fn row_len(&self) -> usize {
            let shape = self.layout().shape();
            shape[shape.num_dims() - 1]
        }
        fn vector(values: &[f32]) -> Self {
            let mut t = FlexTensor::empty(Shape::new([values.len()]), DType::F32);
            t.storage_mut::<f32>().copy_from_slice(values);
            t
        }
    }
}

#[cfg(feature = "ndarray")]
mod ndarray {
    use burn::backend::NdArray;
    use burn::backend::ndarray::{NdArrayTensor, SharedArray};
    use ndarray_crate::IxDyn;

    use super::{CpuFused, HostRows, kernels};

    host_fused!(NdArray, NdArrayTensor, kernels::layer_norm_last);

    /// `$f` on the f32 storage of `$t` (the kernels run on f32 only: see [`super::applies`]).
    macro_rules! f32_storage {
        ($t:expr, |$s:ident| $f:expr) => {
            match $t {
                NdArrayTensor::F32($s) => $f,
                _ => panic!("the fused kernels take f32 tensors"),
            }
        };
    }

    impl HostRows for NdArrayTensor {
        fn contiguous(self) -> Self {
            if f32_storage!(&self, |s| s.view().is_standard_layout()) {
                return self;
            }
            let copy = f32_storage!(&self, |s| s.view().as_standard_layout().into_owned());
            NdArrayTensor::from(copy.into_shared())
        }
        fn values(&self) -> &[f32] {
            f32_storage!(self, |s| s.view().to_slice().expect("standard layout"))
        }
        fn values_mut(&mut self) -> &mut [f32] {
            f32_storage!(self, |s| s
                .ensure_owned()
                .as_slice_mut()
                .expect("standard layout"))
        }
        fn is_unique(&self) -> bool {
            f32_storage!(self, |s| s.is_unique())
        }
        fn empty_like(&self) -> Self {
            let shape = f32_storage!(self, |s| s.shape().to_vec());
            NdArrayTensor::from(SharedArray::<f32>::zeros(IxDyn(&shape)))
        }
        fn row_len(&self) -> usize {
            f32_storage!(self, |s| s.shape().last().copied().unwrap_or(1))
        }
        fn vector(values: &[f32]) -> Self {
            let array = SharedArray::<f32>::from_shape_vec(IxDyn(&[values.len()]), values.to_vec());
            NdArrayTensor::from(array.expect("a 1-D shape"))
        }
    }
}

impl<B: CpuFused, C: CheckpointStrategy> CpuFused for Autodiff<B, C> {
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

/// The backward step of [`CpuFused::layer_norm_last`]: input, weight and bias gradients from
/// the saved input and weight.
#[derive(Debug)]
struct LayerNormBackward {
    eps: f64,
}

impl<B: CpuFused> Backward<B, 3> for LayerNormBackward {
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
fn tracked<B: CpuFused, C: CheckpointStrategy>(
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
    use burn::tensor::Device;

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

    /// The autodiff devices of the CPU backends the kernels run on.
    #[allow(clippy::vec_init_then_push)] // each push is behind its feature
    fn cpu_devices() -> Vec<Device> {
        let mut devices = Vec::new();
        #[cfg(feature = "flex")]
        devices.push(Device::flex().autodiff());
        #[cfg(feature = "ndarray")]
        devices.push(Device::ndarray().autodiff());
        devices
    }

    /// libm's `erff`, through the tensor op on flex (std has no `erf`).
    fn libm_erf(x: f32) -> f32 {
        let d = crate::backend::test_device();
        let t = Tensor::<1>::from_floats([x], &d).erf();
        t.into_data().try_to_vec::<f32>().unwrap()[0]
    }

    /// Forward and backward of the fused softmax against Burn's, on each CPU device, with a
    /// masked (very negative) entry per row as attention has.
    #[test]
    fn fused_softmax_matches_burns_and_its_gradient() {
        for d in cpu_devices() {
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
    }

    /// Forward and backward of the fused LayerNorm against Burn's composed one (what autodiff
    /// runs otherwise): the input's, weight's and bias's gradients, rows with offsets and
    /// scales as the residual stream has.
    #[test]
    fn fused_layer_norm_matches_burns_and_its_gradients() {
        use burn::tensor::TensorData;
        for d in cpu_devices() {
            let (rows, h) = (3 * 50, 96);
            let values: Vec<f32> = (0..rows * h)
                .map(|i| {
                    ((i * 37 % 101) as f32 - 50.0) / 7.0 * (1 + i / h % 5) as f32 + (i / h) as f32
                })
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
            // Rows offset by up to 150 with a spread of ~7: (x - mean) keeps ~1e-5 of f32.
            assert!(worst(&fused.0, &composed.0) < 5e-5, "forward");
            assert!(worst(&fused.1, &composed.1) < 1e-4, "input gradient");
            assert!(worst(&fused.2, &composed.2) < 1e-4, "weight gradient");
            assert!(worst(&fused.3, &composed.3) < 1e-5, "bias gradient");
            assert!(
                composed.2.iter().any(|g| g.abs() > 1.0),
                "a weight gradient worth checking"
            );
        }
    }

    /// Forward and backward of the fused GELU against the composed form, on each CPU device.
    #[test]
    fn fused_gelu_matches_the_composed_form_and_its_gradient() {
        for d in cpu_devices() {
            let values: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) / 300.0).collect();
            let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(values, [64, 64]), &d);
            let composed = |x: Tensor<2>| {
                x.clone() * (x / std::f64::consts::SQRT_2).erf().add_scalar(1.0) * 0.5
            };
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
}
