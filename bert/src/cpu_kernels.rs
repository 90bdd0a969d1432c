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
//!
//! The linear layer ([`linear`], `x·w + b` on `[rows, in]`): one GEMM of the `gemm` crate (what
//! burn-flex's matmul runs; AVX-512 kernels where the CPU has them) into rows that start as the
//! bias; backward two GEMMs that read the transposes through strides, no copies, and the bias
//! gradient's column sums in parallel. ndarray's own matmul (`matrixmultiply`, AVX2 at most)
//! made its BERT-base step 1.8× slower on a Xeon; on flex it saves the bias pass and a copy.
//!
//! The embedding lookup ([`embedding`]): Burn's backward zeroes a `[vocab, d]` table (a zeroed
//! byte buffer copied into an aligned one on flex) and adds the `b·s` rows into it on one
//! thread, and `nn.Embedding`'s padding row needs a mask over `[b, s, d]` both ways; fused, one
//! zeroed allocation (fresh pages above glibc's mmap threshold, 32 MiB here, see
//! `backend::keep_freed_memory`; one memset below it) and one parallel scatter-add (split by id
//! range, each row summed in position order, so the bits are Burn's) that skips the padding
//! positions.
//!
//! Attention for inference ([`attention`], on a device that records no gradients): the
//! composed form makes the `[b, heads, q, k]` scores tensor and two single-threaded passes over
//! it (the scaling, the mask) besides the softmax, and copies the heads apart for the batched
//! products and back together after; fused, one parallel task per batch, head and block of 64
//! queries runs both products with the `gemm` crate, reading the heads in place through
//! strides, scales, masks and normalises a block's scores in one pass while they are in cache,
//! and writes the context into its columns of the merged output. On a 2-core Xeon it took
//! inference of BERT-small at seq 512 from 278 to 173 ms (PyTorch's fused SDPA: 145 ms).
//!
//! Attention for training ([`attention_train`], under autodiff): composed, Burn records the
//! two batched products, the scaling, the mask, the softmax and the dropout, each keeping its
//! own `[b, heads, q, k]` tensor for the backward, with the heads copied apart and together
//! both ways; fused, the forward is the inference kernel that also applies the dropout mask
//! (drawn element by element from the host stream [`crate::dropout::forward`] draws from, so
//! the same mask) and keeps one tensor, the probabilities with the dropped ones marked in
//! their sign bit; the backward runs one task per batch and head over its blocks of queries:
//! four products reading the heads in place and one pass for the softmax's and the dropout's
//! backward.
//!
//! Cross-entropy's log-probabilities ([`log_softmax_pick`], `loss::cross_entropy`): composed,
//! log-softmax under autodiff makes four `[n, classes]` tensors with a scalar `exp` on one
//! thread and the gather's backward a fifth, most of a step whose head spans the vocabulary at
//! every position; fused, one parallel pass per row each way.
//!
//! One AdamW step of a parameter ([`adamw_step`]): composed, torch's single-tensor AdamW with
//! the clipping factor is about fifteen single-threaded element-wise passes, each with a new
//! buffer; fused, one parallel pass that reads the gradient and updates the parameter and both
//! moments in place (a copy first of any buffer something else holds). The arithmetic, in f32,
//! is torch's, step by step. The gradient norm's `Σ g²` ([`sum_squares`]) is one parallel pass.
//!
//! The crate is compiled for baseline x86-64 (SSE2, 4 lanes), so each element-wise loop is
//! compiled three times, for AVX-512, AVX2 + FMA and the baseline, and the widest the CPU has
//! runs (`simd_fn!`; bit-identical results: Rust never fuses a multiply and an add). Sums run in
//! 16 lanes (`sum16`), and the linear layer's outputs are written without zeroing
//! them first. On a 2-core AVX-512 Xeon these took a flex training step from 3.03 s to 2.36 s
//! on BERT-base and from 55 to 33 ms on tiny (`benches/results/cpu-2core-xeon-train-simd-*`).
// Burn 0.22 deprecates ndarray in favour of flex; it is still one of this crate's backends.
#![cfg_attr(feature = "ndarray", allow(deprecated))]
// Without flex and ndarray (a GPU-only build) the module is compiled for its API but no tensor
// is a host-memory one ([`applies`] is false): the kernels never run.
#![cfg_attr(
    not(any(feature = "flex", feature = "ndarray")),
    allow(dead_code, unused_macros, unused_variables)
)]

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Int, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

pub use crate::dropout::HostDraw;

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
    /// One AdamW step of a parameter with its gradient and moments, all four of one shape (the
    /// gradient first multiplied by `clip`, a `[1]` tensor); returns the parameter and the
    /// moments after it.
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        clip: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `Σ x²` over all of `x`, as a `[1]` tensor.
    fn sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x·W + bias` for `x` `[n, in]`, `bias` `[out]` and `W` `[in, out]`, the `weight` as
    /// `layout` holds it: one GEMM into rows that start as the bias.
    fn linear_2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        layout: WeightLayout,
    ) -> FloatTensor<Self>;
    /// The gradients of [`CpuFused::linear_2d`] for its input, weight (in its `layout`) and
    /// bias, from its input, its weight and the output's gradient: `g·Wᵀ`, `xᵀ·g` (or its
    /// transpose `gᵀ·x`) and `g`'s column sums.
    fn linear_2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        layout: WeightLayout,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// The rows `ids` (`[b, s]`) of `table` (`[vocab, d]`) as `[b, s, d]`: `nn.Embedding`, whose
    /// gradient skips the positions holding `padding_idx`.
    fn embedding_rows(
        table: FloatTensor<Self>,
        ids: IntTensor<Self>,
        padding_idx: Option<usize>,
    ) -> FloatTensor<Self>;
    /// Attention for inference (not differentiable): per batch and head,
    /// `softmax(q·kᵀ / √head_dim + mask)·v` for `q` `[b, q_len, heads·head_dim]` and `k`, `v`
    /// `[b, k_len, heads·head_dim]` (the projections, heads side by side), with the additive
    /// `mask` of shape `dims.mask`; returns the context `[b·q_len, heads·head_dim]`.
    fn attention_3d(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        dims: AttentionDims,
    ) -> FloatTensor<Self>;
    /// Attention for training: [`CpuFused::attention_3d`] with `dropout`'s mask (over
    /// `[b, heads, q_len, k_len]`, drawn where it is used) on the probabilities. Returns the
    /// context `[b·q_len, heads·head_dim]` and, for the backward, the probabilities before
    /// dropout `[b·heads·q_len, k_len]` with the sign bit set where dropout dropped them.
    fn attention_train_3d(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        dims: AttentionDims,
        dropout: Option<HostDraw>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// The gradients of [`CpuFused::attention_train_3d`] for `q`, `k` and `v`, from them, the
    /// probabilities it returned and the context's gradient `[b·q_len, heads·head_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attention_train_3d_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        dims: AttentionDims,
        dropout: Option<HostDraw>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Cross-entropy's log-probabilities: `log_softmax(logits[i])[labels[i]]` for `logits`
    /// `[n, classes]` and `labels` `[n]` in `0..classes`, as `[n]`.
    fn log_softmax_pick(logits: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of [`CpuFused::log_softmax_pick`] for its logits from the picked values'
    /// gradient `grad` `[n]`: `grad[i]·(onehot(labels[i]) - softmax(logits[i]))`.
    fn log_softmax_pick_backward(
        logits: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self>;
    /// The gradient of [`CpuFused::embedding_rows`] for its table: the rows of `grad`
    /// (`[b, s, d]`) summed into a zero `[vocab, d]` table at `ids`, the `padding_idx` positions
    /// left out.
    fn embedding_rows_backward(
        ids: IntTensor<Self>,
        grad: FloatTensor<Self>,
        vocab: usize,
        padding_idx: Option<usize>,
    ) -> FloatTensor<Self>;
}

/// How a linear map's weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[in, out]`: Burn's `Linear`.
    InOut,
    /// `[out, in]`: torch's `nn.Linear`, and the word embeddings `[vocab, hidden]` as the tied
    /// MLM decoder reads them (HF `BertLMPredictionHead`).
    OutIn,
}

/// The scalars of one AdamW update, as torch's single-tensor `adamw` computes them for step `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// `lr · weight_decay`: the parameter is first multiplied by `1 - decay`.
    pub decay: f64,
    /// `lr / (1 - β1ᵗ)`.
    pub step_size: f64,
    /// `√(1 - β2ᵗ)`.
    pub bias_correction2_sqrt: f64,
}

/// One AdamW step on a CPU f32 parameter (see [`applies`]; the tensors of the inner, not the
/// autodiff, device): `p ← p·(1 - decay)`, `m ← m + (1-β1)(g - m)` (torch's `lerp_`),
/// `v ← β2·v + (1-β2)·g²`, `p ← p - step_size · m / (√v / √(1-β2ᵗ) + ε)`, after `g ← g·clip`.
/// Returns the parameter and the moments; the buffers nothing else holds are updated in place.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    exp_avg: Tensor<D>,
    exp_avg_sq: Tensor<D>,
    clip: Option<Tensor<1>>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let clip = clip.unwrap_or_else(|| Tensor::ones([1], &param.device()));
    let (p, m, v) = <Dispatch as CpuFused>::adamw_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        exp_avg.into_dispatch(),
        exp_avg_sq.into_dispatch(),
        clip.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m),
        Tensor::from_dispatch(v),
    )
}

/// `Σ x²` of a CPU f32 tensor (see [`applies`]) as a `[1]` tensor, in one parallel pass (the
/// gradient norm's; not differentiable): f32 sums of 1,024-element blocks, added in f64.
pub fn sum_squares<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::sum_squares(x.into_dispatch()))
}

/// `x·weight + bias` of a CPU f32 `x` `[n, in]` (see [`applies`]) with Burn's `Linear` weight
/// `[in, out]` and bias `[out]`, differentiable in all three: forward one GEMM (the `gemm`
/// crate, AVX-512 where the CPU has it) into rows that start as the bias; backward two GEMMs
/// with the transposes read in place, and the bias gradient's column sums in parallel.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    linear_2d(x, weight, bias, WeightLayout::InOut)
}

/// [`linear`] with the weight `[out, in]`, read transposed in place: `x·weightᵀ + bias`, as
/// torch's `F.linear` and the tied MLM decoder over the word embeddings `[vocab, hidden]`
/// (the bias the GEMM's starting rows, not a second pass over the `[n, vocab]` logits; the
/// weight's gradient `gᵀ·x` in the weight's own layout).
pub fn linear_out_in(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    linear_2d(x, weight, bias, WeightLayout::OutIn)
}

fn linear_2d(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>, layout: WeightLayout) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::linear_2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        layout,
    ))
}

/// `nn.Embedding(padding_idx)` of a CPU f32 `table` `[vocab, d]` (see [`applies`]) at `ids`
/// `[b, s]`, differentiable in the table: forward the rows, backward one parallel scatter-add
/// into a table of zeros (split by id range, each row summed in position order as Burn's serial
/// one sums it) that leaves out the `padding_idx` positions.
pub fn embedding(table: Tensor<2>, ids: Tensor<2, Int>, padding_idx: Option<usize>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::embedding_rows(
        table.into_dispatch(),
        ids.into_dispatch(),
        padding_idx,
    ))
}

/// `log_softmax(logits, 1)` picked at `labels` (`[n, classes]`, `[n]` in `0..classes`) on a CPU
/// f32 tensor (see [`applies`]), differentiable for `logits`: what cross-entropy reads. Composed,
/// log-softmax under autodiff makes four `[n, classes]` tensors with a scalar `exp` on one thread
/// and the gather's backward scatters into a fifth; for an MLM or causal-LM head over every
/// position (`classes` = the vocabulary) that was most of the step. Fused, one parallel pass
/// per row each way: the row's log-sum-exp and the pick forward, `grad·(onehot - softmax)`
/// backward.
pub fn log_softmax_pick(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as CpuFused>::log_softmax_pick(
        logits.into_dispatch(),
        labels.into_dispatch(),
    ))
}

/// The sizes of [`attention`]: `mask` is the additive mask's shape, `[batch or 1, heads or 1,
/// q_len or 1, k_len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    pub batch: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub mask: [usize; 4],
}

/// Attention for inference on a CPU f32 device that records no gradients (see [`applies`]):
/// `softmax(q·kᵀ / √head_dim + mask)·v` per head, for the projections `q` `[b, q_len, h]`,
/// `k`, `v` `[b, k_len, h]` (`h = heads·head_dim`, heads side by side as HF's `view`), and an
/// additive `mask` broadcastable to `[b, heads, q_len, k_len]`; returns the context
/// `[b, q_len, h]` (HF's heads merged). One parallel task per batch, head and block of 64
/// queries: two GEMMs reading the heads in place through strides, the scaling, mask and
/// softmax in one pass over a block's scores (never the whole `[b, heads, q, k]` tensor), the
/// context written into its columns of the output. The composed form makes the scores tensor,
/// two single-threaded passes over it (scale, mask), copies of the heads for the batched
/// products and of the context to merge the heads.
///
/// `None` when the mask's shape does not broadcast so (the caller composes it then).
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: Option<Tensor<4>>,
    heads: usize,
) -> Option<Tensor<3>> {
    let (dims, mask) = attention_dims(&q, &k, &v, mask, heads)?;
    let context = Tensor::<2>::from_dispatch(<Dispatch as CpuFused>::attention_3d(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        dims,
    ));
    Some(context.reshape([dims.batch, dims.q_len, dims.heads * dims.head_dim]))
}

/// [`attention`] for training on a CPU f32 autodiff device, differentiable for `q`, `k` and
/// `v`, with `dropout` on the probabilities (HF's `self.dropout(attention_probs)`: the mask
/// [`crate::dropout::forward`] would draw for them, element for element, from the same
/// stream). One parallel task per
/// batch, head and block of 64 queries forward, as [`attention`], that also keeps the block's
/// probabilities for the backward (the composed form keeps the scores, the probabilities, the
/// dropout mask and the dropped probabilities); backward one task per batch and head: for each
/// block, `dV += P̃ᵀ·dO`, `dP̃ = dO·Vᵀ`, the softmax's backward through the dropout, `dQ = dS·K`
/// and `dK += dSᵀ·Q` (`dS` over √d), each product reading the heads in place.
///
/// The mask is a constant: no gradient reaches it (BERT's masks are built from the input). A
/// NaN probability (a diverged run) may be read back as dropped and give 0 to `dV` where the
/// composed form gives NaN; `dQ` and `dK` are NaN either way.
///
/// `None` when the mask's shape does not broadcast (the caller composes it then).
pub fn attention_train(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: Option<Tensor<4>>,
    heads: usize,
    dropout: &burn::nn::Dropout,
) -> Option<Tensor<3>> {
    let (dims, mask) = attention_dims(&q, &k, &v, mask, heads)?;
    let dropout = crate::dropout::host_draw(dropout, &q.device());
    let (context, _probs) = <Dispatch as CpuFused>::attention_train_3d(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        dims,
        dropout,
    );
    let context = Tensor::<2>::from_dispatch(context);
    Some(context.reshape([dims.batch, dims.q_len, dims.heads * dims.head_dim]))
}

/// The sizes of an attention of the projections `q` `[b, q_len, h]`, `k`, `v` `[b, k_len, h]`
/// in `heads` heads, and the mask (zeros `[1, 1, 1, k_len]` for none); `None` unless the
/// shapes fit and the mask broadcasts to `[b, heads, q_len, k_len]`.
fn attention_dims(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    mask: Option<Tensor<4>>,
    heads: usize,
) -> Option<(AttentionDims, Tensor<4>)> {
    let ([batch, q_len, h], [kb, k_len, kh]) = (q.dims(), k.dims());
    if heads == 0 || h % heads != 0 || [kb, kh] != [batch, h] || v.dims() != k.dims() {
        return None;
    }
    if batch * q_len * k_len * h == 0 {
        return None;
    }
    let mask = mask.unwrap_or_else(|| Tensor::zeros([1, 1, 1, k_len], &q.device()));
    let m = mask.dims();
    let fits = |dim: usize, full: usize| dim == 1 || dim == full;
    if !(fits(m[0], batch) && fits(m[1], heads) && fits(m[2], q_len) && m[3] == k_len) {
        return None;
    }
    let dims = AttentionDims {
        batch,
        q_len,
        k_len,
        heads,
        head_dim: h / heads,
        mask: m,
    };
    Some((dims, mask))
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

/// `fn $name(args) -> R { body }` compiled three times: for AVX-512, for AVX2 + FMA and for the
/// baseline, the widest the CPU has picked at run time ([`simd_level`]). The crate is built for
/// baseline x86-64 (SSE2), so without this the element-wise loops run 4 lanes wide on a CPU
/// that has 16. Rust never contracts `a·b + c` into an FMA, so the three give bit-identical
/// results.
macro_rules! simd_fn {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn v4($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                use $crate::cpu_kernels::{SimdLevel, simd_level};
                match simd_level() {
                    // SAFETY: `simd_level` says the CPU has the features `v4` is compiled for.
                    SimdLevel::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above, for `v3`'s.
                    SimdLevel::Avx2 => return unsafe { v3($($arg),*) },
                    SimdLevel::Baseline => {}
                }
            }
            imp($($arg),*)
        }
    };
}

/// The instruction sets `simd_fn!` compiles for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Baseline x86-64 (SSE2), or any other architecture.
    Baseline = 0,
    /// AVX2 and FMA.
    Avx2 = 1,
    /// AVX-512 (F, BW, DQ, VL).
    Avx512 = 2,
}

/// The widest level this CPU has, capped by [`cap_simd_level`].
pub fn simd_level() -> SimdLevel {
    static DETECTED: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    let detected = *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return SimdLevel::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    });
    let cap = match SIMD_CAP.load(std::sync::atomic::Ordering::Relaxed) {
        0 => SimdLevel::Baseline,
        1 => SimdLevel::Avx2,
        _ => SimdLevel::Avx512,
    };
    detected.min(cap)
}

static SIMD_CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// Runs the element-wise kernels no wider than `level` from now on, in every thread (for tests
/// and measurements: the results are the same bits at every level).
pub fn cap_simd_level(level: SimdLevel) {
    SIMD_CAP.store(level as u8, std::sync::atomic::Ordering::Relaxed);
}

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
    /// A new `[rows, cols]` f32 tensor of zeros, zeroed by the allocator (`calloc`).
    fn zeros(rows: usize, cols: usize) -> Self;
    /// The last dimension.
    fn row_len(&self) -> usize;
    /// A 1-D tensor holding `values`.
    fn vector(values: &[f32]) -> Self;
    /// A new `[rows, cols]` f32 tensor whose values `init` writes, without zeroing the buffer
    /// first.
    ///
    /// # Safety
    /// `init` writes every element of the slice it is given.
    unsafe fn matrix(rows: usize, cols: usize, init: impl FnOnce(&mut [MaybeUninit<f32>])) -> Self;
}

/// The fused kernels, once for every [`HostRows`] backend (libtorch's CPU tensors are one too:
/// `tch_kernels` runs the AdamW step here).
pub(crate) mod kernels {
    use super::*;

    pub fn gelu_erf<T: HostRows>(x: T) -> T {
        let x = x.contiguous();
        par_zip(x.empty_like(), &x, CHUNK, gelu_chunk)
    }

    simd_fn! {
        fn gelu_chunk(o: &mut [f32], i: &[f32]) {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = v * 0.5 * (1.0 + erf(v * FRAC_1_SQRT_2));
            }
        }
    }

    pub fn gelu_erf_backward<T: HostRows>(x: T, grad: T) -> T {
        let x = x.contiguous();
        par_zip(writable(grad), &x, CHUNK, gelu_backward_chunk)
    }

    simd_fn! {
        fn gelu_backward_chunk(g: &mut [f32], i: &[f32]) {
            for (g, &v) in g.iter_mut().zip(i) {
                // GELU'(x) = Φ(x) + x·φ(x); erf's e^(-x²/2) is φ's too.
                let x = v * FRAC_1_SQRT_2;
                let gauss = exp(-x * x);
                let cdf = 0.5 * (1.0 + erf_given_exp(x, gauss));
                *g *= cdf + v * (FRAC_1_SQRT_2PI * gauss);
            }
        }
    }

    pub fn softmax_last<T: HostRows>(x: T) -> T {
        let x = x.contiguous();
        let (row, chunk) = rows_per_chunk(&x);
        par_zip(x.empty_like(), &x, chunk, |o, i| softmax_rows(o, i, row))
    }

    simd_fn! {
        fn softmax_rows(o: &mut [f32], i: &[f32], row: usize) {
            for (o, i) in o.chunks_mut(row).zip(i.chunks(row)) {
                let max = max16(i);
                for (o, &v) in o.iter_mut().zip(i) {
                    *o = exp(v - max);
                }
                let inv = 1.0 / sum16(o, o, o, |o, _, _| o);
                o.iter_mut().for_each(|o| *o *= inv);
            }
        }
    }

    pub fn softmax_last_backward<T: HostRows>(y: T, grad: T) -> T {
        let y = y.contiguous();
        let (row, chunk) = rows_per_chunk(&y);
        par_zip(writable(grad), &y, chunk, |g, y| {
            softmax_backward_rows(g, y, row)
        })
    }

    simd_fn! {
        fn softmax_backward_rows(g: &mut [f32], y: &[f32], row: usize) {
            for (g, y) in g.chunks_mut(row).zip(y.chunks(row)) {
                let dot = sum16(g, y, y, |g, y, _| g * y);
                for (g, &y) in g.iter_mut().zip(y) {
                    *g = y * (*g - dot);
                }
            }
        }
    }

    /// A row's mean and 1/√(var + eps) (two passes: no cancellation).
    #[inline(always)]
    fn moments(x: &[f32], eps: f64) -> (f32, f32) {
        let n = x.len() as f32;
        let mean = sum16(x, x, x, |v, _, _| v) / n;
        let var = sum16(x, x, x, |v, _, _| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + eps as f32).sqrt())
    }

    /// (Flex runs burn-flex's own SIMD forward instead.)
    #[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
    pub fn layer_norm_last<T: HostRows>(x: T, weight: T, bias: T, eps: f64) -> T {
        let (x, weight, bias) = (x.contiguous(), weight.contiguous(), bias.contiguous());
        let (w, b) = (weight.values(), bias.values());
        let (_, chunk) = rows_per_chunk(&x);
        par_zip(x.empty_like(), &x, chunk, |o, x| {
            layer_norm_rows(o, x, w, b, eps)
        })
    }

    simd_fn! {
        fn layer_norm_rows(o: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f64) {
            for (o, x) in o.chunks_mut(w.len()).zip(x.chunks(w.len())) {
                let (mean, rstd) = moments(x, eps);
                for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(w).zip(b) {
                    *o = (x - mean) * rstd * w + b;
                }
            }
        }
    }

    pub fn layer_norm_last_backward<T: HostRows>(x: T, weight: T, grad: T, eps: f64) -> (T, T, T) {
        let (x, weight) = (x.contiguous(), weight.contiguous());
        let w = weight.values();
        let (h, chunk) = rows_per_chunk(&x);
        let mut dx = writable(grad);
        let partial: Vec<(Vec<f32>, Vec<f32>)> = (dx.values_mut().par_chunks_mut(chunk))
            .zip(x.values().par_chunks(chunk))
            .map(|(g, x)| {
                let (mut dw, mut db) = (vec![0f32; h], vec![0f32; h]);
                layer_norm_backward_rows(g, x, w, &mut dw, &mut db, eps);
                (dw, db)
            })
            .collect();
        let (dw, db): (Vec<_>, Vec<_>) = partial.into_iter().unzip();
        (dx, T::vector(&in_order(dw, h)), T::vector(&in_order(db, h)))
    }

    simd_fn! {
        /// Rows of `g` (overwritten with the input's gradient) and `x`; the weight's and the
        /// bias's gradients added to `dw` and `db`.
        fn layer_norm_backward_rows(
            g: &mut [f32],
            x: &[f32],
            w: &[f32],
            dw: &mut [f32],
            db: &mut [f32],
            eps: f64,
        ) {
            let h = w.len();
            for (g, x) in g.chunks_mut(h).zip(x.chunks(h)) {
                // x̂ = (x - mean)·rstd; with ĝ = g·w:
                // dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), dw = Σ g·x̂, db = Σ g.
                let (mean, rstd) = moments(x, eps);
                for (((dw, db), &g), &x) in dw.iter_mut().zip(db.iter_mut()).zip(&*g).zip(x) {
                    *dw += g * ((x - mean) * rstd);
                    *db += g;
                }
                let mean_g = sum16(g, w, w, |g, w, _| g * w) / h as f32;
                let mean_gx = sum16(g, w, x, |g, w, x| g * w * ((x - mean) * rstd)) / h as f32;
                for ((g, &w), &x) in g.iter_mut().zip(w).zip(x) {
                    let xh = (x - mean) * rstd;
                    *g = rstd * (*g * w - mean_g - xh * mean_gx);
                }
            }
        }
    }

    pub fn adamw_update<T: HostRows>(
        param: T,
        grad: T,
        exp_avg: T,
        exp_avg_sq: T,
        clip: T,
        step: AdamWStep,
    ) -> (T, T, T) {
        let grad = grad.contiguous();
        let clip = clip.contiguous().values()[0];
        let (mut p, mut m, mut v) = (writable(param), writable(exp_avg), writable(exp_avg_sq));
        let f = |x: f64| x as f32;
        // The scalars rounded to f32 as torch's kernels take them from Python floats.
        let (w1, b2, w2, eps) = (
            f(1.0 - step.beta1),
            f(step.beta2),
            f(1.0 - step.beta2),
            f(step.eps),
        );
        let (keep, step_size, bc2) = (
            f(1.0 - step.decay),
            f(step.step_size),
            f(step.bias_correction2_sqrt),
        );
        let k = [clip, keep, w1, b2, w2, bc2, eps, step_size];
        (p.values_mut().par_chunks_mut(CHUNK))
            .zip(m.values_mut().par_chunks_mut(CHUNK))
            .zip(v.values_mut().par_chunks_mut(CHUNK))
            .zip(grad.values().par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| adamw_chunk(p, m, v, g, k));
        (p, m, v)
    }

    simd_fn! {
        fn adamw_chunk(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], k: [f32; 8]) {
            let [clip, keep, w1, b2, w2, bc2, eps, step_size] = k;
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                // The same f32 operations, in the same order, as torch's in-place ones (without
                // weight decay `keep` is 1, and `p·1` is `p` exactly).
                let g = g * clip;
                *p *= keep;
                *m += w1 * (g - *m);
                *v = *v * b2 + w2 * g * g;
                let denom = v.sqrt() / bc2 + eps;
                *p += -step_size * (*m / denom);
            }
        }
    }

    pub fn sum_squares<T: HostRows>(x: T) -> T {
        let x = x.contiguous();
        // Blocks of 1,024 summed over 16 f32 lanes, the blocks' sums in f64, in block order.
        let blocks: Vec<f64> = (x.values().par_chunks(1024)).map(squares_block).collect();
        let sum: f64 = blocks.iter().sum();
        T::vector(&[sum as f32])
    }

    simd_fn! {
        fn squares_block(b: &[f32]) -> f64 {
            sum16(b, b, b, |v, _, _| v * v) as f64
        }
    }

    /// `Σ f(a_i, b_i, c_i)` over `a`'s length in 16 f32 lanes (so that it vectorises: an f32 sum
    /// in one chain does not), the lanes and the tail added at the end.
    #[inline(always)]
    fn sum16(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
        let n = a.len();
        let (b, c) = (&b[..n], &c[..n]);
        let full = n - n % 16;
        let mut lanes = [0f32; 16];
        for ((a, b), c) in (a[..full].chunks_exact(16))
            .zip(b[..full].chunks_exact(16))
            .zip(c[..full].chunks_exact(16))
        {
            let (a, b, c): (&[f32; 16], &[f32; 16], &[f32; 16]) = (
                a.try_into().unwrap(),
                b.try_into().unwrap(),
                c.try_into().unwrap(),
            );
            for l in 0..16 {
                lanes[l] += f(a[l], b[l], c[l]);
            }
        }
        let tail: f32 = (full..n).map(|i| f(a[i], b[i], c[i])).sum();
        lanes.iter().sum::<f32>() + tail
    }

    /// The largest of `a` (`-inf` when empty), 16 lanes at a time.
    #[inline(always)]
    fn max16(a: &[f32]) -> f32 {
        let full = a.len() - a.len() % 16;
        let mut lanes = [f32::NEG_INFINITY; 16];
        for c in a[..full].chunks_exact(16) {
            let c: &[f32; 16] = c.try_into().unwrap();
            for l in 0..16 {
                lanes[l] = lanes[l].max(c[l]);
            }
        }
        (lanes.iter().chain(&a[full..])).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    }

    pub fn linear_2d<T: HostRows>(x: T, weight: T, bias: T, layout: WeightLayout) -> T {
        let (x, weight, bias) = (x.contiguous(), weight.contiguous(), bias.contiguous());
        let [n, k, m] = linear_sizes(&x, &weight, layout);
        let b = bias.values();
        assert_eq!(b.len(), m, "linear: bias size");
        let init = |y: &mut [MaybeUninit<f32>]| {
            // Every row the bias, then y += x·w: x `[n, k]` row-major, w `[k, m]` read through
            // the weight's strides.
            (y.par_chunks_mut(m)).for_each(|row| {
                row.write_copy_of_slice(b);
            });
            // SAFETY: every element was just written (rows of `m`, as many as `b` has).
            let y = unsafe { y.assume_init_mut() };
            let w = weight_strides(weight.values(), [k, m], layout);
            gemm(Dst::Add(y), [n, m, k], (x.values(), k as isize, 1), w);
        };
        // SAFETY: `init` writes every element.
        unsafe { T::matrix(n, m, init) }
    }

    pub fn linear_2d_backward<T: HostRows>(
        x: T,
        weight: T,
        grad: T,
        layout: WeightLayout,
    ) -> (T, T, T) {
        let (x, weight, grad) = (x.contiguous(), weight.contiguous(), grad.contiguous());
        let [n, k, m] = linear_sizes(&x, &weight, layout);
        let g = grad.values();
        // dx = g·wᵀ: g `[n, m]`; wᵀ `[m, k]` read through w's strides.
        let (w, w_rows, w_cols) = weight_strides(weight.values(), [k, m], layout);
        let product = |dx: &mut [MaybeUninit<f32>]| {
            gemm(
                Dst::Write(dx),
                [n, k, m],
                (g, m as isize, 1),
                (w, w_cols, w_rows),
            );
        };
        // SAFETY: a `Dst::Write` product writes every element.
        let dx = unsafe { T::matrix(n, k, product) };
        // dw in the weight's layout: xᵀ·g (`[k, n]`·`[n, m]`) or gᵀ·x (`[m, n]`·`[n, k]`), the
        // transposed operand read through its strides.
        let ([rows, cols], lhs, rhs): ([usize; 2], GemmOperand, GemmOperand) = match layout {
            WeightLayout::InOut => ([k, m], (x.values(), 1, k as isize), (g, m as isize, 1)),
            WeightLayout::OutIn => ([m, k], (g, 1, m as isize), (x.values(), k as isize, 1)),
        };
        let product = |dw: &mut [MaybeUninit<f32>]| {
            gemm(Dst::Write(dw), [rows, cols, n], lhs, rhs);
        };
        // SAFETY: as above.
        let dw = unsafe { T::matrix(rows, cols, product) };
        let partial: Vec<Vec<f32>> = (g.par_chunks(rows_per_chunk(&grad).1))
            .map(|c| {
                let mut sums = vec![0f32; m];
                add_rows(&mut sums, c);
                sums
            })
            .collect();
        (dx, dw, T::vector(&in_order(partial, m)))
    }

    /// The label of row `i` as an index into its `classes` logits.
    fn label_index(labels: &[i64], i: usize, classes: usize) -> usize {
        let label = labels[i];
        usize::try_from(label)
            .ok()
            .filter(|&l| l < classes)
            .unwrap_or_else(|| panic!("cross-entropy: label {label} outside 0..{classes}"))
    }

    pub fn log_softmax_pick<T: HostRows>(logits: T, labels: &[i64]) -> T {
        let x = logits.contiguous();
        let classes = x.row_len();
        let xv = x.values();
        assert_eq!(
            xv.len(),
            labels.len() * classes,
            "cross-entropy: logits size"
        );
        let picked: Vec<f32> = (xv.par_chunks(classes).enumerate())
            .map(|(i, row)| row[label_index(labels, i, classes)] - log_sum_exp(row))
            .collect();
        T::vector(&picked)
    }

    pub fn log_softmax_pick_backward<T: HostRows>(logits: T, grad: T, labels: &[i64]) -> T {
        let (x, grad) = (logits.contiguous(), grad.contiguous());
        let classes = x.row_len();
        let (xv, gv) = (x.values(), grad.values());
        assert_eq!(
            xv.len(),
            labels.len() * classes,
            "cross-entropy: logits size"
        );
        assert_eq!(gv.len(), labels.len(), "cross-entropy: gradient size");
        let init = |out: &mut [MaybeUninit<f32>]| {
            (out.par_chunks_mut(classes)
                .zip(xv.par_chunks(classes))
                .enumerate())
            .for_each(|(i, (out, row))| {
                let label = label_index(labels, i, classes);
                // SAFETY: f32 has no invalid values, and the row is written whole before
                // anything reads it.
                let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
                neg_softmax_scaled(out, row, gv[i]);
                out[label] += gv[i];
            });
        };
        // SAFETY: every row is written by its task.
        unsafe { T::matrix(labels.len(), classes, init) }
    }

    simd_fn! {
        /// `max + ln Σ exp(x - max)` of a row.
        fn log_sum_exp(row: &[f32]) -> f32 {
            let max = max16(row);
            max + sum16(row, row, row, |x, _, _| exp(x - max)).ln()
        }
    }

    simd_fn! {
        /// `out ← -g · softmax(row)`.
        fn neg_softmax_scaled(out: &mut [f32], row: &[f32], g: f32) {
            let max = max16(row);
            for (o, &x) in out.iter_mut().zip(row) {
                *o = exp(x - max);
            }
            let scale = -g / sum16(out, out, out, |e, _, _| e);
            out.iter_mut().for_each(|o| *o *= scale);
        }
    }

    /// Queries per task of [`attention`].
    const QUERY_BLOCK: usize = 64;

    pub fn attention<T: HostRows>(q: T, k: T, v: T, mask: T, dims: AttentionDims) -> T {
        let (q, k, v, mask) = (
            q.contiguous(),
            k.contiguous(),
            v.contiguous(),
            mask.contiguous(),
        );
        let forward = AttentionForward::new(&q, &k, &v, &mask, dims);
        let init = |out: &mut [MaybeUninit<f32>]| {
            let out = &SharedOut(out.as_mut_ptr().cast::<f32>(), out.len());
            (0..forward.tasks()).into_par_iter().for_each(|task| {
                let mut probs = vec![MaybeUninit::uninit(); forward.block_len(task)];
                forward.block(task, &mut probs, None, out);
            });
        };
        // SAFETY: every (row, column) of the output is written by the task of its batch,
        // head and query block.
        unsafe { T::matrix(dims.batch * dims.q_len, forward.h, init) }
    }

    /// The forward of [`super::attention_train`]: [`attention`] whose tasks keep their block's
    /// probabilities (the second output, sign bit set where dropout dropped one) and multiply
    /// them by the dropout mask before the product with the values.
    pub fn attention_train<T: HostRows>(
        q: T,
        k: T,
        v: T,
        mask: T,
        dims: AttentionDims,
        dropout: Option<HostDraw>,
    ) -> (T, T) {
        let (q, k, v, mask) = (
            q.contiguous(),
            k.contiguous(),
            v.contiguous(),
            mask.contiguous(),
        );
        let forward = AttentionForward::new(&q, &k, &v, &mask, dims);
        let AttentionDims {
            batch,
            q_len,
            k_len,
            heads,
            ..
        } = dims;
        let mut context = None;
        let fill_probs = |probs: &mut [MaybeUninit<f32>]| {
            let probs = &SharedOut(probs.as_mut_ptr().cast::<f32>(), probs.len());
            let fill_context = |out: &mut [MaybeUninit<f32>]| {
                let out = &SharedOut(out.as_mut_ptr().cast::<f32>(), out.len());
                (0..forward.tasks()).into_par_iter().for_each(|task| {
                    let (first, len) = (forward.first_prob(task), forward.block_len(task));
                    assert!(first + len <= probs.len(), "attention: probs size");
                    // SAFETY: inside the buffer (the assert); the tasks' ranges are disjoint,
                    // and nothing reads the buffer until all are done.
                    let p = unsafe {
                        std::slice::from_raw_parts_mut(
                            probs.at(first).cast::<MaybeUninit<f32>>(),
                            len,
                        )
                    };
                    forward.block(task, p, dropout, out);
                });
            };
            // SAFETY: every (row, column) of the context is written by the task of its batch,
            // head and query block.
            context = Some(unsafe { T::matrix(batch * q_len, forward.h, fill_context) });
        };
        // SAFETY: every row of the probabilities is written by the task of its block.
        let probs = unsafe { T::matrix(batch * heads * q_len, k_len, fill_probs) };
        (
            context.expect("the context is made with the probabilities"),
            probs,
        )
    }

    /// The operands of one attention forward and its tasks: one per batch, head and block of
    /// [`QUERY_BLOCK`] queries.
    struct AttentionForward<'a> {
        qv: &'a [f32],
        kv: &'a [f32],
        vv: &'a [f32],
        mv: &'a [f32],
        dims: AttentionDims,
        h: usize,
        blocks: usize,
        norm: f32,
    }

    impl<'a> AttentionForward<'a> {
        fn new<T: HostRows>(
            q: &'a T,
            k: &'a T,
            v: &'a T,
            mask: &'a T,
            dims: AttentionDims,
        ) -> Self {
            let (qv, kv, vv, mv) = (q.values(), k.values(), v.values(), mask.values());
            assert_attention_sizes(&dims, qv, kv, vv);
            let [mb, mh, mq, _] = dims.mask;
            assert_eq!(mv.len(), mb * mh * mq * dims.k_len, "attention: mask size");
            Self {
                qv,
                kv,
                vv,
                mv,
                dims,
                h: dims.heads * dims.head_dim,
                blocks: dims.q_len.div_ceil(QUERY_BLOCK),
                norm: (dims.head_dim as f32).sqrt(),
            }
        }

        fn tasks(&self) -> usize {
            self.dims.batch * self.dims.heads * self.blocks
        }

        /// (batch, head, first query, queries) of `task`.
        fn at(&self, task: usize) -> (usize, usize, usize, usize) {
            let (bh, block) = (task / self.blocks, task % self.blocks);
            let q0 = block * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(self.dims.q_len - q0);
            (bh / self.dims.heads, bh % self.dims.heads, q0, rows)
        }

        /// The size of `task`'s probabilities, `[queries, k_len]`.
        fn block_len(&self, task: usize) -> usize {
            self.at(task).3 * self.dims.k_len
        }

        /// Where `task`'s probabilities start in the `[b, heads, q_len, k_len]` tensor.
        fn first_prob(&self, task: usize) -> usize {
            let (b, head, q0, _) = self.at(task);
            ((b * self.dims.heads + head) * self.dims.q_len + q0) * self.dims.k_len
        }

        /// One task: the block's probabilities into `p` (`[queries, k_len]`, written whole;
        /// sign bit set where `dropout` drops one), its context into the head's columns of its
        /// rows of `out`.
        fn block(
            &self,
            task: usize,
            p: &mut [MaybeUninit<f32>],
            dropout: Option<HostDraw>,
            out: &SharedOut,
        ) {
            let AttentionDims {
                q_len,
                k_len,
                head_dim,
                mask: [mb, mh, mq, _],
                ..
            } = self.dims;
            let (b, head, q0, rows) = self.at(task);
            let (h, col) = (self.h, head * head_dim);
            assert_eq!(p.len(), rows * k_len, "attention: block size");
            // The block's queries `[rows, head_dim]` and the head's keys, transposed,
            // `[head_dim, k_len]`, read in place (row strides `h`).
            let qb = &self.qv[(b * q_len + q0) * h + col..];
            let kb = &self.kv[b * k_len * h + col..];
            // SAFETY: `p` is borrowed mutably, and the product writes all of it (so it holds
            // values after).
            let p = unsafe {
                gemm_raw(
                    p.as_mut_ptr().cast::<f32>(),
                    k_len as isize,
                    false,
                    [rows, k_len, head_dim],
                    (qb, h as isize, 1),
                    (kb, 1, h as isize),
                );
                p.assume_init_mut()
            };
            for (i, row) in p.chunks_mut(k_len).enumerate() {
                let r = (((if mb == 1 { 0 } else { b }) * mh + if mh == 1 { 0 } else { head })
                    * mq
                    + if mq == 1 { 0 } else { q0 + i })
                    * k_len;
                masked_softmax_row(row, &self.mv[r..r + k_len], self.norm);
            }
            // The probabilities after dropout, for the product.
            let dropped = dropout.map(|draw| {
                let mut d = vec![0f32; p.len()];
                draw.fill(self.first_prob(task) as u64, &mut d);
                apply_dropout(p, &mut d);
                d
            });
            let lhs = dropped.as_deref().unwrap_or(p);
            // context rows = probabilities `[rows, k_len]` · the head's values
            // `[k_len, head_dim]`, into the head's columns of the output rows.
            let vb = &self.vv[b * k_len * h + col..];
            let offset = (b * q_len + q0) * h + col;
            assert!(
                offset + (rows - 1) * h + head_dim <= out.len(),
                "attention: output size"
            );
            // SAFETY: the tasks write disjoint (row, column) ranges of `out`, inside it (the
            // assert), and nothing reads it until all are done.
            unsafe {
                gemm_raw(
                    out.at(offset),
                    h as isize,
                    false,
                    [rows, head_dim, k_len],
                    (lhs, k_len as isize, 1),
                    (vb, h as isize, 1),
                );
            }
        }
    }

    /// Panics unless the projections have the sizes `dims` gives them.
    fn assert_attention_sizes(dims: &AttentionDims, qv: &[f32], kv: &[f32], vv: &[f32]) {
        let h = dims.heads * dims.head_dim;
        assert_eq!(
            qv.len(),
            dims.batch * dims.q_len * h,
            "attention: query size"
        );
        assert_eq!(kv.len(), dims.batch * dims.k_len * h, "attention: key size");
        assert_eq!(vv.len(), kv.len(), "attention: value size");
    }

    simd_fn! {
        /// `mask ← probs · mask` (the dropout mask's values, `1/keep` or 0) and the sign bit
        /// of each dropped probability set (a dropped 0 becomes -0).
        fn apply_dropout(probs: &mut [f32], mask: &mut [f32]) {
            for (p, m) in probs.iter_mut().zip(mask.iter_mut()) {
                let kept = *m != 0.0;
                *m *= *p;
                *p = if kept { *p } else { -*p };
            }
        }
    }

    simd_fn! {
        /// One block of the attention backward, from the saved probabilities `probs` (sign bit
        /// set where dropped) and `grad`, the gradient of the dropped probabilities: `grad ←
        /// P·(dP - Σ dP·P) / norm` (softmax's backward, then the scaling's), where `dP` is
        /// `grad · scale` where kept and 0 where dropped; and `dropped ← P · scale` where kept,
        /// 0 where dropped (the probabilities the forward multiplied the values by).
        fn attention_grad_rows(
            probs: &[f32],
            grad: &mut [f32],
            dropped: &mut [f32],
            k_len: usize,
            scale: f32,
            norm: f32,
        ) {
            for ((p, g), d) in probs
                .chunks(k_len)
                .zip(grad.chunks_mut(k_len))
                .zip(dropped.chunks_mut(k_len))
            {
                for ((&p, g), d) in p.iter().zip(g.iter_mut()).zip(d.iter_mut()) {
                    let kept = p.is_sign_positive();
                    *g = if kept { *g * scale } else { 0.0 };
                    *d = if kept { p * scale } else { 0.0 };
                }
                let dot = sum16(g, p, g, |g, p, _| g * p.abs());
                for (g, &p) in g.iter_mut().zip(p) {
                    *g = p.abs() * (*g - dot) / norm;
                }
            }
        }
    }

    /// The backward of [`attention_train`]: one task per batch and head (its columns of `dK` and
    /// `dV` are its own), looping over the blocks of 64 queries.
    pub fn attention_train_backward<T: HostRows>(
        q: T,
        k: T,
        v: T,
        probs: T,
        grad: T,
        dims: AttentionDims,
        dropout: Option<HostDraw>,
    ) -> (T, T, T) {
        let (q, k, v, probs, grad) = (
            q.contiguous(),
            k.contiguous(),
            v.contiguous(),
            probs.contiguous(),
            grad.contiguous(),
        );
        let AttentionDims {
            batch,
            q_len,
            k_len,
            heads,
            head_dim,
            ..
        } = dims;
        let h = heads * head_dim;
        let (qv, kv, vv) = (q.values(), k.values(), v.values());
        let (pv, gv) = (probs.values(), grad.values());
        assert_attention_sizes(&dims, qv, kv, vv);
        assert_eq!(
            pv.len(),
            batch * heads * q_len * k_len,
            "attention: probs size"
        );
        assert_eq!(gv.len(), qv.len(), "attention: gradient size");
        let norm = (head_dim as f32).sqrt();
        let scale = dropout.map_or(1.0, |d| f32::from_bits(d.scale_bits));
        let blocks = q_len.div_ceil(QUERY_BLOCK);
        let tasks = |dq: &SharedOut, dk: &SharedOut, dv: &SharedOut| {
            assert!(dq.len() == qv.len() && dk.len() == kv.len() && dv.len() == kv.len());
            (0..batch * heads).into_par_iter().for_each(|bh| {
                let (b, head) = (bh / heads, bh % heads);
                let col = head * head_dim;
                let (kb, vb) = (&kv[b * k_len * h + col..], &vv[b * k_len * h + col..]);
                let block_len = QUERY_BLOCK.min(q_len) * k_len;
                let (mut ds, mut dropped) = (vec![0f32; block_len], vec![0f32; block_len]);
                for block in 0..blocks {
                    let q0 = block * QUERY_BLOCK;
                    let rows = QUERY_BLOCK.min(q_len - q0);
                    let first = (bh * q_len + q0) * k_len;
                    let p = &pv[first..first + rows * k_len];
                    let (ds, dropped) = (&mut ds[..rows * k_len], &mut dropped[..rows * k_len]);
                    let (qb, gb) = (
                        &qv[(b * q_len + q0) * h + col..],
                        &gv[(b * q_len + q0) * h + col..],
                    );
                    // SAFETY (each product below): `ds` is this task's; `dq`'s rows of this
                    // block and `dk`'s and `dv`'s rows of this batch, in this head's columns,
                    // are this task's alone (inside the buffers: the sizes asserted above), and
                    // the first block writes the `dk`, `dv` values the later ones add to.
                    unsafe {
                        // dP̃ = dO·Vᵀ `[rows, k_len]`
                        gemm_raw(
                            ds.as_mut_ptr(),
                            k_len as isize,
                            false,
                            [rows, k_len, head_dim],
                            (gb, h as isize, 1),
                            (vb, 1, h as isize),
                        );
                    }
                    attention_grad_rows(p, ds, dropped, k_len, scale, norm);
                    let (at, first_block) = (b * k_len * h + col, block == 0);
                    unsafe {
                        // dV += P̃ᵀ·dO `[k_len, head_dim]`
                        gemm_raw(
                            dv.at(at),
                            h as isize,
                            !first_block,
                            [k_len, head_dim, rows],
                            (dropped, 1, k_len as isize),
                            (gb, h as isize, 1),
                        );
                        // dQ = dS·K `[rows, head_dim]`
                        gemm_raw(
                            dq.at((b * q_len + q0) * h + col),
                            h as isize,
                            false,
                            [rows, head_dim, k_len],
                            (ds, k_len as isize, 1),
                            (kb, h as isize, 1),
                        );
                        // dK += dSᵀ·Q `[k_len, head_dim]`
                        gemm_raw(
                            dk.at(at),
                            h as isize,
                            !first_block,
                            [k_len, head_dim, rows],
                            (ds, 1, k_len as isize),
                            (qb, h as isize, 1),
                        );
                    }
                }
            });
        };
        let shared = |x: &mut [MaybeUninit<f32>]| SharedOut(x.as_mut_ptr().cast::<f32>(), x.len());
        let (mut dk, mut dv) = (None, None);
        // SAFETY: the tasks write every element of the three (every block's rows of `dq`,
        // every row of `dk` and `dv` in the first block), in every head's columns.
        let dq = unsafe {
            T::matrix(batch * q_len, h, |dq| {
                dk = Some(T::matrix(batch * k_len, h, |dk| {
                    dv = Some(T::matrix(batch * k_len, h, |dv| {
                        tasks(&shared(dq), &shared(dk), &shared(dv));
                    }));
                }));
            })
        };
        let both = "dk and dv are made with dq";
        (dq, dk.expect(both), dv.expect(both))
    }

    /// An output buffer shared by the parallel tasks that fill it (each writes its own
    /// elements): the attention kernels'.
    struct SharedOut(*mut f32, usize);
    // SAFETY: the tasks write disjoint elements (see each kernel).
    unsafe impl Sync for SharedOut {}

    impl SharedOut {
        fn len(&self) -> usize {
            self.1
        }
        /// # Safety
        /// `offset` is inside the output.
        unsafe fn at(&self, offset: usize) -> *mut f32 {
            // SAFETY: the caller's promise.
            unsafe { self.0.add(offset) }
        }
    }

    simd_fn! {
        /// `row ← softmax(row / norm + mask)` in place (HF's order: scaled scores, then the mask).
        fn masked_softmax_row(row: &mut [f32], mask: &[f32], norm: f32) {
            for (s, &m) in row.iter_mut().zip(mask) {
                *s = *s / norm + m;
            }
            let max = max16(row);
            for s in row.iter_mut() {
                *s = exp(*s - max);
            }
            let inv = 1.0 / sum16(row, row, row, |s, _, _| s);
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }

    /// [`CpuFused::embedding_rows_backward`] with the ids on the host. The table is split into
    /// id ranges, one task each, each scanning all positions for its ids: rows are disjoint
    /// between tasks and each row sums its positions in order.
    pub fn embedding_backward<T: HostRows>(
        ids: &[i64],
        grad: T,
        vocab: usize,
        padding_idx: Option<usize>,
    ) -> T {
        let grad = grad.contiguous();
        let d = grad.row_len();
        let g = grad.values();
        let mut table = T::zeros(vocab, d);
        let rows_per_task = vocab.div_ceil(4 * rayon::current_num_threads()).max(1);
        let skip = padding_idx.map_or(-1, |p| p as i64);
        (table.values_mut().par_chunks_mut(rows_per_task * d))
            .enumerate()
            .for_each(|(k, part)| {
                let first = (k * rows_per_task) as i64;
                let range = first..first + (part.len() / d.max(1)) as i64;
                for (i, &id) in ids.iter().enumerate() {
                    if range.contains(&id) && id != skip {
                        let row = (id - first) as usize * d;
                        add_rows(&mut part[row..row + d], &g[i * d..(i + 1) * d]);
                    }
                }
            });
        table
    }

    simd_fn! {
        /// `sums += ` each of `rows`' rows (of `sums`' length).
        fn add_rows(sums: &mut [f32], rows: &[f32]) {
            for row in rows.chunks(sums.len()) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
        }
    }

    /// `[rows, in, out]` of a linear layer's input `[rows, in]` and weight (`[in, out]` or
    /// `[out, in]` as `layout` says).
    fn linear_sizes<T: HostRows>(x: &T, weight: &T, layout: WeightLayout) -> [usize; 3] {
        let last = weight.row_len();
        let first = weight.values().len() / last;
        let [inp, out] = match layout {
            WeightLayout::InOut => [first, last],
            WeightLayout::OutIn => [last, first],
        };
        assert_eq!(x.row_len(), inp, "linear: input features vs weight");
        [x.values().len() / inp, inp, out]
    }

    /// A weight as the `[in, out]` matrix `W` of `x·W` for [`gemm`]: `(values, row stride,
    /// column stride)`, a `[out, in]` weight read transposed in place.
    fn weight_strides(w: &[f32], [inp, out]: [usize; 2], layout: WeightLayout) -> GemmOperand<'_> {
        match layout {
            WeightLayout::InOut => (w, out as isize, 1),
            WeightLayout::OutIn => (w, 1, inp as isize),
        }
    }

    /// A [`gemm`] operand: `(values, row stride, column stride)`.
    type GemmOperand<'a> = (&'a [f32], isize, isize);

    /// Where [`gemm`] puts its product: added to values there, or written over a buffer that
    /// need not hold values yet (every element is written).
    enum Dst<'a> {
        Add(&'a mut [f32]),
        Write(&'a mut [MaybeUninit<f32>]),
    }

    /// `dst` `[rows, cols]` (row-major) `= lhs·rhs` or `+= lhs·rhs`; `[rows, cols, inner]` the
    /// product's sizes, each operand `(values, row stride, column stride)`. Both cores above
    /// ~7M multiply-adds, as burn-flex's own matmul.
    fn gemm(dst: Dst<'_>, [rows, cols, inner]: [usize; 3], lhs: GemmOperand, rhs: GemmOperand) {
        // `read_dst` false: gemm writes every element of `dst` and reads none.
        let (dst, len, accumulate) = match dst {
            Dst::Add(d) => (d.as_mut_ptr(), d.len(), true),
            Dst::Write(d) => (d.as_mut_ptr().cast::<f32>(), d.len(), false),
        };
        assert_eq!(len, rows * cols, "gemm: destination size");
        assert_operands_fit([rows, cols, inner], lhs, rhs);
        let parallelism = if rows * cols * inner >= 192 * 192 * 192 {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the asserts keep every index the strides reach inside its slice; `dst` is
        // borrowed mutably and apart from the operands.
        unsafe {
            gemm_call(
                dst,
                cols as isize,
                accumulate,
                [rows, cols, inner],
                lhs,
                rhs,
                parallelism,
            );
        }
    }

    /// Panics unless the last element each operand's sizes and strides reach is inside its
    /// slice (what makes the `gemm` crate's raw pointers safe to read).
    fn assert_operands_fit([rows, cols, inner]: [usize; 3], lhs: GemmOperand, rhs: GemmOperand) {
        let last = |(v, rs, cs): GemmOperand, r: usize, c: usize| {
            (r.max(1) - 1) as isize * rs + (c.max(1) - 1) as isize * cs < v.len() as isize
        };
        assert!(
            last(lhs, rows, inner) && last(rhs, inner, cols),
            "gemm: operand sizes"
        );
    }

    /// `dst = lhs·rhs` (written, not read), or `dst += lhs·rhs` when `accumulate`, on one
    /// thread, `dst` with row stride `dst_rs` and column stride 1; the operands as in [`gemm`],
    /// checked to lie in their slices.
    ///
    /// # Safety
    /// `dst` points at `[rows, cols]` elements at that stride that nothing else accesses (and
    /// that hold values, when `accumulate`).
    unsafe fn gemm_raw(
        dst: *mut f32,
        dst_rs: isize,
        accumulate: bool,
        [rows, cols, inner]: [usize; 3],
        lhs: GemmOperand,
        rhs: GemmOperand,
    ) {
        assert_operands_fit([rows, cols, inner], lhs, rhs);
        // SAFETY: the operands by the assert, `dst` by the caller.
        unsafe {
            gemm_call(
                dst,
                dst_rs,
                accumulate,
                [rows, cols, inner],
                lhs,
                rhs,
                gemm::Parallelism::None,
            );
        }
    }

    /// The `gemm` crate's product into `dst` (row stride `dst_rs`, column stride 1).
    ///
    /// # Safety
    /// Every index the sizes and strides reach is inside `dst` and the operands' slices.
    unsafe fn gemm_call(
        dst: *mut f32,
        dst_rs: isize,
        accumulate: bool,
        [rows, cols, inner]: [usize; 3],
        lhs: GemmOperand,
        rhs: GemmOperand,
        parallelism: gemm::Parallelism,
    ) {
        // SAFETY: the caller's promise.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                inner,
                dst,
                1,
                dst_rs,
                accumulate,
                lhs.0.as_ptr(),
                lhs.2,
                lhs.1,
                rhs.0.as_ptr(),
                rhs.2,
                rhs.1,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
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

    /// The element-wise sum of `partial` (vectors of `n`), in their order: the chunks of a
    /// parallel column sum added in the same order every run (rayon's `reduce` pairs them as
    /// its threads happen to split the work, which changed the last bits from run to run).
    fn in_order(partial: Vec<Vec<f32>>, n: usize) -> Vec<f32> {
        let mut sum = vec![0f32; n];
        for p in partial {
            sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        sum
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
            fn adamw_update(
                param: $tensor,
                grad: $tensor,
                exp_avg: $tensor,
                exp_avg_sq: $tensor,
                clip: $tensor,
                step: AdamWStep,
            ) -> ($tensor, $tensor, $tensor) {
                kernels::adamw_update(param, grad, exp_avg, exp_avg_sq, clip, step)
            }
            fn sum_squares(x: $tensor) -> $tensor {
                kernels::sum_squares(x)
            }
            fn linear_2d(
                x: $tensor,
                weight: $tensor,
                bias: $tensor,
                layout: WeightLayout,
            ) -> $tensor {
                kernels::linear_2d(x, weight, bias, layout)
            }
            fn linear_2d_backward(
                x: $tensor,
                weight: $tensor,
                grad: $tensor,
                layout: WeightLayout,
            ) -> ($tensor, $tensor, $tensor) {
                kernels::linear_2d_backward(x, weight, grad, layout)
            }
            fn attention_3d(
                q: $tensor,
                k: $tensor,
                v: $tensor,
                mask: $tensor,
                dims: AttentionDims,
            ) -> $tensor {
                kernels::attention(q, k, v, mask, dims)
            }
            fn attention_train_3d(
                q: $tensor,
                k: $tensor,
                v: $tensor,
                mask: $tensor,
                dims: AttentionDims,
                dropout: Option<HostDraw>,
            ) -> ($tensor, $tensor) {
                kernels::attention_train(q, k, v, mask, dims, dropout)
            }
            fn attention_train_3d_backward(
                q: $tensor,
                k: $tensor,
                v: $tensor,
                probs: $tensor,
                grad: $tensor,
                dims: AttentionDims,
                dropout: Option<HostDraw>,
            ) -> ($tensor, $tensor, $tensor) {
                kernels::attention_train_backward(q, k, v, probs, grad, dims, dropout)
            }
            // The padding index matters to the backward only (autodiff keeps it).
            fn embedding_rows(table: $tensor, ids: $tensor, _padding: Option<usize>) -> $tensor {
                <$backend as burn::backend::ops::ModuleOps<$backend>>::embedding(table, ids)
            }
            fn embedding_rows_backward(
                ids: $tensor,
                grad: $tensor,
                vocab: usize,
                padding_idx: Option<usize>,
            ) -> $tensor {
                let ids = host_ids(ids);
                kernels::embedding_backward(&ids, grad, vocab, padding_idx)
            }
            fn log_softmax_pick(logits: $tensor, labels: $tensor) -> $tensor {
                kernels::log_softmax_pick(logits, &host_ids(labels))
            }
            fn log_softmax_pick_backward(
                logits: $tensor,
                grad: $tensor,
                labels: $tensor,
            ) -> $tensor {
                kernels::log_softmax_pick_backward(logits, grad, &host_ids(labels))
            }
        }
    };
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::ModuleOps;
    use burn::tensor::{Shape, TensorData};

    use std::mem::MaybeUninit;

    use super::{AdamWStep, AttentionDims, CpuFused, HostDraw, HostRows, WeightLayout, kernels};

    // burn-flex's own LayerNorm forward: SIMD and parallel.
    host_fused!(Flex, FlexTensor, |x, w, b, eps| {
        <Flex as ModuleOps<Flex>>::layer_norm(x, w, Some(b), eps)
    });

    /// The values of an int tensor (i64 or i32), for the embedding's backward.
    fn host_ids(ids: FlexTensor) -> Vec<i64> {
        let ids = ids.to_contiguous();
        match (ids.as_slice::<i64>(), ids.as_slice::<i32>()) {
            (Some(v), _) => v.to_vec(),
            (_, Some(v)) => v.iter().map(|&i| i as i64).collect(),
            _ => panic!("embedding ids of dtype {:?}", ids.dtype()),
        }
    }

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
            zeroed(self.layout().shape().clone())
        }
        fn zeros(rows: usize, cols: usize) -> Self {
            zeroed(Shape::new([rows, cols]))
        }
        fn row_len(&self) -> usize {
            let shape = self.layout().shape();
            shape[shape.num_dims() - 1]
        }
        fn vector(values: &[f32]) -> Self {
            FlexTensor::from_data(TensorData::new(values.to_vec(), [values.len()]))
        }
        unsafe fn matrix(
            rows: usize,
            cols: usize,
            init: impl FnOnce(&mut [MaybeUninit<f32>]),
        ) -> Self {
            let n = rows * cols;
            let mut values = Vec::with_capacity(n);
            init(&mut values.spare_capacity_mut()[..n]);
            // SAFETY: `init` wrote all `n` (the caller's promise).
            unsafe { values.set_len(n) };
            FlexTensor::from_data(TensorData::new(values, [rows, cols]))
        }
    }

    /// A zeroed f32 tensor from a `Vec<f32>` (`calloc`: no realigning copy).
    /// `FlexTensor::empty` zeroes a `Vec<u8>` and then copies it into a 16-byte-aligned buffer
    /// (`Bytes::from_bytes_vec`): two passes over memory per new tensor.
    fn zeroed(shape: Shape) -> FlexTensor {
        let n = shape.num_elements();
        FlexTensor::from_data(TensorData::new(vec![0f32; n], shape))
    }
}

#[cfg(feature = "ndarray")]
mod ndarray {
    use burn::backend::NdArray;
    use burn::backend::ndarray::{NdArrayTensor, SharedArray};
    use ndarray_crate::IxDyn;

    use std::mem::MaybeUninit;

    use super::{AdamWStep, AttentionDims, CpuFused, HostDraw, HostRows, WeightLayout, kernels};

    host_fused!(NdArray, NdArrayTensor, kernels::layer_norm_last);

    /// The values of an int tensor (i64 or i32), for the embedding's backward.
    fn host_ids(ids: NdArrayTensor) -> Vec<i64> {
        match ids {
            NdArrayTensor::I64(s) => s.view().iter().copied().collect(),
            NdArrayTensor::I32(s) => s.view().iter().map(|&i| i as i64).collect(),
            ids => panic!(
                "embedding ids of dtype {:?}",
                burn::backend::TensorMetadata::dtype(&ids)
            ),
        }
    }

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
        fn zeros(rows: usize, cols: usize) -> Self {
            NdArrayTensor::from(SharedArray::<f32>::zeros(IxDyn(&[rows, cols])))
        }
        fn row_len(&self) -> usize {
            f32_storage!(self, |s| s.shape().last().copied().unwrap_or(1))
        }
        fn vector(values: &[f32]) -> Self {
            let array = SharedArray::<f32>::from_shape_vec(IxDyn(&[values.len()]), values.to_vec());
            NdArrayTensor::from(array.expect("a 1-D shape"))
        }
        unsafe fn matrix(
            rows: usize,
            cols: usize,
            init: impl FnOnce(&mut [MaybeUninit<f32>]),
        ) -> Self {
            let mut values = ndarray_crate::Array::<f32, _>::uninit(IxDyn(&[rows, cols]));
            init(values.as_slice_mut().expect("a new array is contiguous"));
            // SAFETY: `init` wrote every element (the caller's promise).
            NdArrayTensor::from(unsafe { values.assume_init() }.into_shared())
        }
    }
}

/// [`CpuFused`] methods of [`Autodiff`] that run on the inner backend unrecorded: float tensors,
/// then other arguments; one float tensor out, or three ([`untracked`]).
macro_rules! untracked {
    ($(fn $name:ident($($t:ident),*; $($arg:ident: $ty:ty),*) -> $out:ident;)*) => {$(
        fn $name($($t: FloatTensor<Self>,)* $($arg: $ty),*) -> untracked!(@type $out) {
            untracked!(@wrap $out, B::$name($(Self::inner($t),)* $($arg),*))
        }
    )*};
    (@type one) => { FloatTensor<Self> };
    (@type three) => { Three<Self> };
    (@wrap one, $e:expr) => { Self::from_inner($e) };
    (@wrap three, $e:expr) => { untracked::<B, C>($e) };
}

impl<B: CpuFused, C: CheckpointStrategy> CpuFused for Autodiff<B, C> {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C>(x, B::gelu_erf, B::gelu_erf_backward, Saved::Input)
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked::<B, C>(x, B::softmax_last, B::softmax_last_backward, Saved::Output)
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let forward = |x, w, b| B::layer_norm_last(x, w, b, eps);
        weighted::<B, C>(
            [x, weight, bias],
            WeightedBackward::LayerNorm { eps },
            forward,
        )
    }

    fn embedding_rows(
        table: FloatTensor<Self>,
        ids: IntTensor<Self>,
        padding_idx: Option<usize>,
    ) -> FloatTensor<Self> {
        let (table, node) = table.into_parts();
        let vocab = burn::backend::TensorMetadata::shape(&table)[0];
        // The table's gradient from the ids it saved.
        let backward = UnaryBackward::<B, (IntTensor<B>, usize, Option<usize>)> {
            grad: |(ids, vocab, padding_idx), g| {
                B::embedding_rows_backward(ids, g, vocab, padding_idx)
            },
        };
        match backward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::embedding_rows(table, ids.clone(), padding_idx);
                prep.finish((ids, vocab, padding_idx), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::embedding_rows(table, ids, padding_idx)),
        }
    }

    /// Not differentiated again.
    fn embedding_rows_backward(
        ids: IntTensor<Self>,
        grad: FloatTensor<Self>,
        vocab: usize,
        padding_idx: Option<usize>,
    ) -> FloatTensor<Self> {
        let g = Self::inner(grad);
        Self::from_inner(B::embedding_rows_backward(ids, g, vocab, padding_idx))
    }

    fn log_softmax_pick(logits: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = logits.into_parts();
        // The logits' gradient from them and the labels.
        let backward = UnaryBackward::<B, (FloatTensor<B>, IntTensor<B>)> {
            grad: |(x, labels), g| B::log_softmax_pick_backward(x, g, labels),
        };
        match backward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::log_softmax_pick(x.clone(), labels.clone());
                prep.finish((x, labels), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::log_softmax_pick(x, labels)),
        }
    }

    /// Not differentiated again.
    fn log_softmax_pick_backward(
        logits: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x, g) = (Self::inner(logits), Self::inner(grad));
        Self::from_inner(B::log_softmax_pick_backward(x, g, labels))
    }

    // Not recorded: the backward kernels (not differentiated again: the first-order backward is
    // all training needs), the optimizer step, the gradient norm's Σg², and inference
    // attention (`attention` is for devices that record no gradients).
    untracked! {
        fn gelu_erf_backward(x, grad;) -> one;
        fn softmax_last_backward(y, grad;) -> one;
        fn layer_norm_last_backward(x, weight, grad; eps: f64) -> three;
        fn linear_2d_backward(x, weight, grad; layout: WeightLayout) -> three;
        fn adamw_update(p, g, m, v, clip; step: AdamWStep) -> three;
        fn sum_squares(x;) -> one;
        fn attention_3d(q, k, v, mask; dims: AttentionDims) -> one;
        fn attention_train_3d_backward(
            q, k, v, probs, grad; dims: AttentionDims, dropout: Option<HostDraw>
        ) -> three;
    }

    fn attention_train_3d(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        dims: AttentionDims,
        dropout: Option<HostDraw>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let ((q, q_node), (k, k_node), (v, v_node)) =
            (q.into_parts(), k.into_parts(), v.into_parts());
        let mask = Self::inner(mask);
        let forward = |q, k, v, mask| B::attention_train_3d(q, k, v, mask, dims, dropout);
        match (AttentionBackward { dims, dropout })
            .prepare::<C>([q_node, k_node, v_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (context, probs) = forward(q.clone(), k.clone(), v.clone(), mask);
                let probs_out = Self::from_inner(probs.clone());
                (prep.finish((q, k, v, probs), context), probs_out)
            }
            OpsKind::UnTracked(prep) => {
                let (context, probs) = forward(q, k, v, mask);
                (prep.finish(context), Self::from_inner(probs))
            }
        }
    }

    fn linear_2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        layout: WeightLayout,
    ) -> FloatTensor<Self> {
        let forward = |x, w, b| B::linear_2d(x, w, b, layout);
        weighted::<B, C>([x, weight, bias], WeightedBackward::Linear(layout), forward)
    }
}

/// An op of an input, a weight and a bias (`forward` on the inner backend), recorded for
/// autodiff with the input and the weight saved for `backward`.
fn weighted<B: CpuFused, C: CheckpointStrategy>(
    [x, weight, bias]: [FloatTensor<Autodiff<B, C>>; 3],
    backward: WeightedBackward,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let ((x, x_node), (w, w_node)) = (x.into_parts(), weight.into_parts());
    let (b, b_node) = bias.into_parts();
    match backward
        .prepare::<C>([x_node, w_node, b_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(x.clone(), w.clone(), b);
            prep.finish((x, w), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x, w, b)),
    }
}

/// Three tensors of the inner backend as autodiff tensors that nothing tracks (here and in
/// `cube_kernels`).
pub(crate) type Three<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);
pub(crate) fn untracked<B: Backend, C: CheckpointStrategy>(
    (a, b, c): Three<B>,
) -> Three<Autodiff<B, C>> {
    let t = Autodiff::<B, C>::from_inner;
    (t(a), t(b), t(c))
}

/// The backward step of [`CpuFused::layer_norm_last`] or [`CpuFused::linear_2d`]: input, weight
/// and bias gradients from the saved input and weight.
#[derive(Debug)]
enum WeightedBackward {
    LayerNorm { eps: f64 },
    Linear(WeightLayout),
}

impl<B: CpuFused> Backward<B, 3> for WeightedBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let (dx, dw, db) = match self {
            Self::LayerNorm { eps } => B::layer_norm_last_backward(x, weight, grad, eps),
            Self::Linear(layout) => B::linear_2d_backward(x, weight, grad, layout),
        };
        register::<B, 3>(ops.parents.map(|p| p.map(|n| n.id)), grads, [dx, dw, db]);
    }
}

/// Each gradient registered for its parent, where the parent is tracked.
pub(crate) fn register<B: Backend, const N: usize>(
    parents: [Option<NodeId>; N],
    grads: &mut Gradients,
    values: [FloatTensor<B>; N],
) {
    for (parent, value) in parents.into_iter().zip(values) {
        if let Some(id) = parent {
            grads.register::<B>(id, value);
        }
    }
}

/// The backward of [`CpuFused::attention_train_3d`]: the gradients of the query, key and value
/// projections from them and the probabilities it saved.
#[derive(Debug)]
struct AttentionBackward {
    dims: AttentionDims,
    dropout: Option<HostDraw>,
}

impl<B: CpuFused> Backward<B, 3> for AttentionBackward {
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, probs) = ops.state;
        use burn::backend::TensorMetadata;
        // The kernel's `[rows, h]` gradients in the projections' own shapes.
        let shapes = [q.shape(), k.shape(), v.shape()];
        let (dq, dk, dv) =
            B::attention_train_3d_backward(q, k, v, probs, grad, self.dims, self.dropout);
        let [sq, sk, sv] = shapes;
        let shaped = [
            B::float_reshape(dq, sq),
            B::float_reshape(dk, sk),
            B::float_reshape(dv, sv),
        ];
        register::<B, 3>(ops.parents.map(|p| p.map(|n| n.id)), grads, shaped);
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

/// The backward step of a fused op of one differentiable input: `grad(saved, incoming
/// gradient)`, what it saved being the op's input or output ([`Saved`]) or, for the ops with
/// other arguments, those too.
pub(crate) struct UnaryBackward<B: Backend, S = FloatTensor<B>> {
    pub(crate) grad: fn(S, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend, S> std::fmt::Debug for UnaryBackward<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnaryBackward")
    }
}

impl<B: Backend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 1>
    for UnaryBackward<B, S>
{
    type State = S;

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
    erf_given_exp(x, exp(-x * x))
}

/// [`erf`] with its `e^(-x²)` computed by the caller.
#[inline(always)]
fn erf_given_exp(x: f32, exp_minus_x2: f32) -> f32 {
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
    let y = 1.0 - poly * exp_minus_x2;
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
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `shifted`'s low mantissa bits hold n (|n| ≤ 127) above MAGIC's 0x4B40_0000: 2ⁿ's exponent
    // from integer arithmetic that vectorises (`n as i32` saturates, and does not).
    let biased = shifted.to_bits().wrapping_sub(0x4B40_0000 - 127);
    let y = p * f32::from_bits(biased << 23);
    if x0 < -87.0 { 0.0 } else { y }
}

/// What the AdamW kernels' tests share (here and in `cube_kernels`): their data, and torch's
/// arithmetic done in f64 on the host.
#[cfg(test)]
pub(crate) mod adamw_reference {
    use super::AdamWStep;

    /// The gradients are multiplied by this before each step.
    pub const CLIP: f32 = 0.5;

    /// Step `t` at learning rate 1e-3, weight decay 0.01, torch's defaults otherwise.
    pub fn step(t: i32) -> AdamWStep {
        let (lr, wd) = (1e-3, 0.01);
        AdamWStep {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decay: lr * wd,
            step_size: lr / (1.0 - 0.9f64.powi(t)),
            bias_correction2_sqrt: (1.0 - 0.999f64.powi(t)).sqrt(),
        }
    }

    /// `n` starting parameter values in [-0.72, 0.72].
    pub fn init(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
            .collect()
    }

    /// Two steps' gradients of `n` values each.
    pub fn grads(n: usize) -> Vec<Vec<f32>> {
        (0..2)
            .map(|k| {
                (0..n)
                    .map(|i| ((i * 13 + k * 7) % 29) as f32 / 9.0 - 1.5)
                    .collect()
            })
            .collect()
    }

    /// The parameters and both moments after one step per gradient, from zero moments.
    pub fn run(init: &[f32], grads: &[Vec<f32>]) -> [Vec<f64>; 3] {
        let n = init.len();
        let (mut p, mut m, mut v) = (
            init.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            vec![0f64; n],
            vec![0f64; n],
        );
        for (t, g) in (1..).zip(grads) {
            let s = step(t);
            for i in 0..n {
                let g = g[i] as f64 * CLIP as f64;
                p[i] *= 1.0 - s.decay;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                p[i] -= s.step_size * m[i] / (v[i].sqrt() / s.bias_correction2_sqrt + 1e-8);
            }
        }
        [p, m, v]
    }

    /// The parameters and moments a kernel gave within 1e-5 relative of [`run`]'s.
    pub fn assert_close(what: &str, got: [Vec<f32>; 3], want: &[Vec<f64>; 3]) {
        let names = ["param", "exp_avg", "exp_avg_sq"];
        for (((name, got), want), floor) in names.iter().zip(got).zip(want).zip([1e-3, 1e-3, 1e-9])
        {
            let worst = (got.iter().zip(want))
                .map(|(a, b)| (*a as f64 - b).abs() / b.abs().max(floor))
                .fold(0f64, f64::max);
            assert!(worst < 1e-5, "{what} {name}: {worst}");
        }
    }
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

    /// A tensor's values as f32 bit patterns, for bit-for-bit comparisons.
    fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
        let data = t.into_data().convert::<f32>();
        let values = data.as_slice::<f32>().expect("f32 values");
        values.iter().map(|x| x.to_bits()).collect()
    }

    /// The autodiff devices of the CPU backends the kernels run on.
    #[allow(clippy::vec_init_then_push, unused_mut)] // each push is behind its feature
    fn cpu_devices() -> Vec<Device> {
        let mut devices = Vec::new();
        #[cfg(feature = "flex")]
        devices.push(Device::flex().autodiff());
        #[cfg(feature = "ndarray")]
        devices.push(Device::ndarray().autodiff());
        devices
    }

    /// The fused inference attention against HF's eager attention composed of Burn's own ops
    /// on each CPU device without autodiff, for every case of
    /// [`crate::attention::reference_cases`] (mask shapes, query blocks, cross-attention, fully
    /// masked rows); a mask that does not broadcast is left to the caller.
    #[test]
    fn fused_attention_matches_composed_attention() {
        for d in cpu_devices().into_iter().map(Device::inner) {
            for (i, case) in crate::attention::reference_cases(&d)
                .into_iter()
                .enumerate()
            {
                let [b, sq, h] = case.q.dims();
                let got = attention(case.q, case.k, case.v, case.mask, case.heads)
                    .expect("the shapes fit");
                assert_eq!(got.dims(), [b, sq, h]);
                let diff: f32 = (got - case.want).abs().max().into_scalar();
                assert!(diff < 2e-6, "{d:?} case {i}: max |Δ| {diff}");
            }
            let q = Tensor::<3>::zeros([2, 5, 8], &d);
            let bad = Tensor::<4>::zeros([2, 1, 3, 5], &d);
            assert!(attention(q.clone(), q.clone(), q, Some(bad), 2).is_none());
        }
    }

    /// The fused training attention against HF's eager attention composed of Burn's ops under
    /// autodiff (Burn's softmax, [`crate::dropout::forward`] on the probabilities), on each CPU
    /// device, for every reference case: the context and the gradients of the query, key and
    /// value projections, without dropout and with dropout at 0.1 (the same stream seeded
    /// before each, so the same mask); a module not training draws no mask.
    #[test]
    fn fused_training_attention_matches_composed_attention_and_its_gradients() {
        use burn::nn::DropoutConfig;
        for d in cpu_devices() {
            for prob in [0.0, 0.1] {
                let dropout = DropoutConfig::new(prob).init();
                for (i, case) in crate::attention::reference_cases(&d)
                    .into_iter()
                    .enumerate()
                {
                    let [b, sq, h] = case.q.dims();
                    let (heads, sk) = (case.heads, case.k.dims()[1]);
                    let hd = h / heads;
                    let weights = (case.want.clone() * 7.0).sin();
                    let run = |fused: bool| {
                        let (q, k, v) = (
                            case.q.clone().require_grad(),
                            case.k.clone().require_grad(),
                            case.v.clone().require_grad(),
                        );
                        crate::dropout::seed(11);
                        let out = if fused {
                            attention_train(
                                q.clone(),
                                k.clone(),
                                v.clone(),
                                case.mask.clone(),
                                heads,
                                &dropout,
                            )
                            .expect("the shapes fit")
                        } else {
                            let split = |x: Tensor<3>, s: usize| {
                                x.reshape([b, s, heads, hd]).swap_dims(1, 2)
                            };
                            let mut scores = split(q.clone(), sq)
                                .matmul(split(k.clone(), sk).swap_dims(2, 3))
                                / (hd as f64).sqrt();
                            if let Some(m) = case.mask.clone() {
                                scores = scores + m;
                            }
                            let probs = burn::tensor::activation::softmax(scores, 3);
                            crate::dropout::forward(&dropout, probs)
                                .matmul(split(v.clone(), sk))
                                .swap_dims(1, 2)
                                .reshape([b, sq, h])
                        };
                        let grads = (out.clone() * weights.clone()).sum().backward();
                        let g = |x: &Tensor<3>| x.grad(&grads).expect("a gradient");
                        (out.inner(), [g(&q), g(&k), g(&v)])
                    };
                    let ((fused, fused_grads), (composed, composed_grads)) =
                        (run(true), run(false));
                    let diff: f32 = (fused - composed).abs().max().into_scalar();
                    assert!(
                        diff < 2e-6,
                        "{d:?} p {prob} case {i}: context max |Δ| {diff}"
                    );
                    for (name, (a, b)) in ["q", "k", "v"]
                        .iter()
                        .zip(fused_grads.into_iter().zip(composed_grads))
                    {
                        let diff: f32 = (a - b).abs().max().into_scalar();
                        assert!(
                            diff < 1e-5,
                            "{d:?} p {prob} case {i}: d{name} max |Δ| {diff}"
                        );
                    }
                }
            }
        }
    }

    /// The parallel sums are the same bits every run: LayerNorm's weight and bias gradients
    /// and the linear layer's bias gradient (column sums over the rows, chunk by chunk), and the
    /// sum of squares, over inputs of many chunks, 12 runs each on each CPU device.
    #[test]
    fn parallel_sums_are_the_same_bits_every_run() {
        use burn::tensor::TensorData;
        for d in cpu_devices() {
            let (n, h) = (6000, 96);
            let values: Vec<f32> = (0..n * h)
                .map(|i| ((i * 7919 % 10_007) as f32 / 10_007.0 - 0.5) * 3.0)
                .collect();
            let x = Tensor::<2>::from_data(TensorData::new(values, [n, h]), &d);
            let up = (x.clone() * 1.7).sin();
            let w = Tensor::<2>::from_data(TensorData::new(vec![0.01f32; h * h], [h, h]), &d);
            let run = || {
                let (weight, bias) = (
                    Tensor::<1>::ones([h], &d).require_grad(),
                    Tensor::<1>::zeros([h], &d).require_grad(),
                );
                let lin_bias = Tensor::<1>::zeros([h], &d).require_grad();
                let y = layer_norm(x.clone(), weight.clone(), bias.clone(), 1e-12);
                let y = linear(y, w.clone(), lin_bias.clone());
                let g = (y * up.clone()).sum().backward();
                let grad = |t: &Tensor<1>| bits(t.grad(&g).expect("a gradient"));
                let squares = bits(sum_squares(x.clone().inner()));
                [grad(&weight), grad(&bias), grad(&lin_bias), squares]
            };
            let first = run();
            for i in 1..12 {
                assert!(run() == first, "{d:?}: run {i} differs from the first");
            }
        }
    }

    /// The fused log-softmax pick against Burn's `log_softmax` and `gather` under autodiff,
    /// forward and the logits' gradient, on each CPU device: a vocabulary-sized row (with
    /// large logits), a two-class one; and `loss::cross_entropy` with ignored rows against
    /// the composed form.
    #[test]
    fn fused_log_softmax_pick_matches_burns_and_its_gradient() {
        use burn::tensor::TensorData;
        for d in cpu_devices() {
            for (n, classes) in [(37, 1000), (9, 2)] {
                let values: Vec<f32> = (0..n * classes)
                    .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 40.0)
                    .collect();
                let x = Tensor::<2>::from_data(TensorData::new(values, [n, classes]), &d);
                let labels: Vec<i64> = (0..n).map(|i| ((i * 31) % classes) as i64).collect();
                let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &d);
                let weights = Tensor::<1>::from_data(
                    TensorData::new((0..n).map(|i| (i as f32 * 0.7).sin()).collect(), [n]),
                    &d,
                );
                let (a, b) = (x.clone().require_grad(), x.require_grad());
                let fused = log_softmax_pick(a.clone(), labels.clone());
                let composed = burn::tensor::activation::log_softmax(b.clone(), 1)
                    .gather(1, labels.clone().reshape([n, 1]))
                    .reshape([n]);
                let diff: f32 = (fused.clone() - composed.clone()).abs().max().into_scalar();
                assert!(
                    diff < 2e-5,
                    "{d:?} {classes} classes: picked max |Δ| {diff}"
                );
                let ga = (fused * weights.clone()).sum().backward();
                let gb = (composed * weights).sum().backward();
                let (ga, gb) = (a.grad(&ga).unwrap(), b.grad(&gb).unwrap());
                let diff: f32 = (ga - gb).abs().max().into_scalar();
                assert!(
                    diff < 1e-6,
                    "{d:?} {classes} classes: gradient max |Δ| {diff}"
                );
            }
            // `loss::cross_entropy` through the fused pick, an ignored row among the rows.
            let x =
                Tensor::<2>::from_floats([[0.5, -1.0, 2.0], [1.0, 1.0, 0.0], [3.0, 0.1, -2.0]], &d);
            let labels = Tensor::<1, Int>::from_ints([2, -100, 0], &d);
            let a = x.clone().require_grad();
            let loss = crate::loss::cross_entropy(a.clone(), labels, -100);
            let g = a.grad(&loss.backward()).unwrap();
            // By hand: mean of -log_softmax at (0, 2) and (2, 0); row 1 ignored.
            let ls = burn::tensor::activation::log_softmax(x.inner(), 1);
            let want = -(ls.clone().slice([0..1, 2..3]).reshape([1])
                + ls.slice([2..3, 0..1]).reshape([1]))
                / 2.0;
            let diff: f32 = (loss.inner() - want).abs().into_scalar();
            assert!(diff < 1e-6, "{d:?}: loss |Δ| {diff}");
            let row1: f32 = g.clone().slice([1..2, 0..3]).abs().sum().into_scalar();
            assert_eq!(row1, 0.0, "an ignored row has no gradient");
            let row0: Vec<f32> = g.slice([0..1, 0..3]).into_data().try_to_vec().unwrap();
            assert!(
                (row0.iter().sum::<f32>()).abs() < 1e-6 && row0[2] < 0.0,
                "{row0:?}"
            );
        }
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

    /// `op(x, w, b)` and the gradients of `Σ op(x, w, b)·upstream` for `x`, `w` and `b`, as
    /// flat vectors.
    fn output_and_gradients<const D: usize, const W: usize>(
        x: &Tensor<D>,
        w: &Tensor<W>,
        b: &Tensor<1>,
        upstream: &Tensor<D>,
        op: impl Fn(Tensor<D>, Tensor<W>, Tensor<1>) -> Tensor<D>,
    ) -> [Vec<f32>; 4] {
        let (x, w, b) = (
            x.clone().require_grad(),
            w.clone().require_grad(),
            b.clone().require_grad(),
        );
        let y = op(x.clone(), w.clone(), b.clone());
        let g = (y.clone() * upstream.clone()).sum().backward();
        let flat = |t: burn::tensor::TensorData| t.try_to_vec::<f32>().unwrap();
        [
            flat(y.into_data()),
            flat(x.grad(&g).unwrap().into_data()),
            flat(w.grad(&g).unwrap().into_data()),
            flat(b.grad(&g).unwrap().into_data()),
        ]
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
            let (fused, composed) = (
                output_and_gradients(&x, &weight, &bias, &upstream, |x, w, b| {
                    layer_norm(x, w, b, 1e-12)
                }),
                output_and_gradients(&x, &weight, &bias, &upstream, |x, w, b| {
                    burn::tensor::module::layer_norm(x, w, Some(b), 1e-12)
                }),
            );
            let worst = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                    .fold(0f32, f32::max)
            };
            // Rows offset by up to 150 with a spread of ~7: (x - mean) keeps ~1e-5 of f32.
            assert!(worst(&fused[0], &composed[0]) < 5e-5, "forward");
            assert!(worst(&fused[1], &composed[1]) < 1e-4, "input gradient");
            assert!(worst(&fused[2], &composed[2]) < 1e-4, "weight gradient");
            assert!(worst(&fused[3], &composed[3]) < 1e-5, "bias gradient");
            assert!(
                composed[2].iter().any(|g| g.abs() > 1.0),
                "a weight gradient worth checking"
            );
        }
    }

    /// Forward and backward of the fused linear layer against Burn's `x·w + b`, the weight
    /// `[in, out]` ([`linear`]) and `[out, in]` ([`linear_out_in`] against `x·wᵀ + b`): the
    /// output and the input's, weight's and bias's gradients, at a size that runs the GEMM on
    /// both cores.
    #[test]
    fn fused_linear_matches_burns_and_its_gradients() {
        use burn::tensor::TensorData;
        let (n, k, m) = (200, 96, 384);
        let data = |len: usize, seed: usize, shape: Vec<usize>| {
            let v = (0..len).map(|i| ((i * 37 + seed) % 101) as f32 / 50.0 - 1.0);
            TensorData::new(v.collect::<Vec<_>>(), shape)
        };
        for d in cpu_devices() {
            let x = Tensor::<2>::from_data(data(n * k, 1, vec![n, k]), &d);
            let w = Tensor::<2>::from_data(data(k * m, 2, vec![k, m]), &d);
            let wt = Tensor::<2>::from_data(data(k * m, 2, vec![m, k]), &d);
            let b = Tensor::<1>::from_data(data(m, 3, vec![m]), &d);
            let up = Tensor::<2>::from_data(data(n * m, 4, vec![n, m]), &d);
            let cases = [
                (
                    "[in, out]",
                    output_and_gradients(&x, &w, &b, &up, linear),
                    output_and_gradients(&x, &w, &b, &up, |x, w, b| x.matmul(w) + b.unsqueeze()),
                ),
                (
                    "[out, in]",
                    output_and_gradients(&x, &wt, &b, &up, linear_out_in),
                    output_and_gradients(&x, &wt, &b, &up, |x, w, b| {
                        x.matmul(w.transpose()) + b.unsqueeze()
                    }),
                ),
            ];
            for (layout, fused, burn) in &cases {
                for (name, (a, b)) in ["output", "input grad", "weight grad", "bias grad"]
                    .iter()
                    .zip(fused.iter().zip(burn))
                {
                    assert_eq!(a.len(), b.len(), "{layout} {name}");
                    let worst = (a.iter().zip(b))
                        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                        .fold(0f32, f32::max);
                    assert!(worst < 1e-5, "{layout} {name}: {worst}");
                }
            }
        }
    }

    /// The fused embedding gives Burn's rows and, bit for bit, the gradient of Burn's lookup
    /// with the padding positions masked (repeated ids summed in order, the padding row zero).
    #[test]
    fn fused_embedding_matches_burns_lookup_and_gradient() {
        use burn::tensor::{Int, TensorData};
        let (vocab, d, b, s) = (50, 24, 3, 40);
        let values = (0..vocab * d).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0);
        // Ids with repeats, the padding id 0 at some positions, ids at both ends of the table.
        let ids: Vec<i64> = (0..b * s).map(|i| ((i * 7) % vocab) as i64).collect();
        let up: Vec<f32> = (0..b * s * d)
            .map(|i| ((i * 13) % 29) as f32 / 7.0 - 2.0)
            .collect();
        for dev in cpu_devices() {
            let table = Tensor::<2>::from_data(
                TensorData::new(values.clone().collect::<Vec<_>>(), [vocab, d]),
                &dev,
            );
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [b, s]), &dev);
            let up = Tensor::<3>::from_data(TensorData::new(up.clone(), [b, s, d]), &dev);
            let run = |fused: bool| {
                let t = table.clone().require_grad();
                let rows = if fused {
                    embedding(t.clone(), ids.clone(), Some(0))
                } else {
                    let rows = burn::tensor::module::embedding(t.clone(), ids.clone());
                    let pad = ids
                        .clone()
                        .equal_elem(0)
                        .unsqueeze_dim::<3>(2)
                        .expand(rows.dims());
                    rows.clone().mask_where(pad, rows.detach())
                };
                let g = (rows.clone() * up.clone()).sum().backward();
                let flat = |t: TensorData| t.try_to_vec::<f32>().unwrap();
                (
                    flat(rows.into_data()),
                    flat(t.grad(&g).unwrap().into_data()),
                )
            };
            let (fused, burn) = (run(true), run(false));
            assert_eq!(fused.0, burn.0, "rows");
            assert_eq!(fused.1, burn.1, "table gradient");
            assert!(
                fused.1[..d].iter().all(|&g| g == 0.0),
                "the padding row has a gradient"
            );
            assert!(
                fused.1[d..2 * d].iter().any(|&g| g != 0.0),
                "row 1 has none"
            );
        }
    }

    /// Every kernel, forward and backward, gives the same bits at each instruction-set level
    /// the CPU has (AVX-512, AVX2 + FMA, baseline): the claim of `simd_fn!`.
    #[test]
    fn kernels_give_the_same_bits_at_every_simd_level() {
        let run = |d: &Device| -> Vec<Vec<u32>> {
            let (n, h) = (37, 80); // rows and a width that is no multiple of 16
            let values = |seed: f32| -> Vec<f32> {
                (0..n * h)
                    .map(|i| (i as f32 * 0.37 + seed).sin() * 4.0)
                    .collect()
            };
            let t = |seed: f32, rows: usize, cols: usize| {
                let v: Vec<f32> = values(seed).into_iter().take(rows * cols).collect();
                Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [rows, cols]), d)
            };
            let x = t(0.1, n, h).require_grad();
            let (w, b) = (t(0.2, 1, h).reshape([h]), t(0.3, 1, h).reshape([h]));
            let w = w.require_grad();
            let lw = t(0.4, h, 24).require_grad();
            let lb = t(0.5, 1, 24).reshape([24]).require_grad();
            let up = t(0.6, n, h);
            let y = gelu(x.clone())
                + softmax_last(x.clone())
                + layer_norm(x.clone(), w.clone(), b, 1e-12);
            let lin = linear(y.clone(), lw.clone(), lb.clone());
            let loss = (y * up).sum() + lin.sum();
            let g = loss.backward();
            let grad = |p: Tensor<2>| p.grad(&g).unwrap();
            let (p, m, v) = adamw_step(
                t(0.7, n, h).inner(),
                t(0.8, n, h).inner(),
                t(0.9, n, h).inner(),
                t(1.0, n, h).inner().abs(),
                None,
                AdamWStep {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    decay: 1e-4,
                    step_size: 1e-3,
                    bias_correction2_sqrt: 0.05,
                },
            );
            let sq = sum_squares(t(1.1, n, h).inner()).reshape([1, 1]);
            // Attention for training (several query blocks, dropout) and its gradients.
            let case = crate::attention::reference_cases(d).swap_remove(1);
            let [ab, aq, ah] = case.q.dims();
            let (qa, ka, va) = (
                case.q.require_grad(),
                case.k.require_grad(),
                case.v.require_grad(),
            );
            let dropout = burn::nn::DropoutConfig::new(0.1).init();
            crate::dropout::seed(5);
            let context = attention_train(
                qa.clone(),
                ka.clone(),
                va.clone(),
                case.mask,
                case.heads,
                &dropout,
            )
            .expect("the shapes fit");
            let ga = (context.clone() * case.want).sum().backward();
            let flat = |x: Tensor<3>| x.reshape([ab * aq, ah]);
            let agrad = |x: &Tensor<3>| flat(x.grad(&ga).unwrap());
            vec![
                bits(flat(context)),
                bits(agrad(&qa)),
                bits(agrad(&ka)),
                bits(agrad(&va)),
                bits(grad(x.clone())),
                bits(w.grad(&g).unwrap().reshape([1, h])),
                bits(grad(lw)),
                bits(lb.grad(&g).unwrap().reshape([1, 24])),
                bits(p),
                bits(m),
                bits(v),
                bits(sq),
            ]
        };
        for d in cpu_devices() {
            let widest = simd_level();
            let mut levels = vec![SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512];
            levels.retain(|&l| l <= widest);
            let results: Vec<_> = (levels.iter())
                .map(|&l| {
                    cap_simd_level(l);
                    run(&d)
                })
                .collect();
            cap_simd_level(SimdLevel::Avx512);
            for (l, r) in levels.iter().zip(&results).skip(1) {
                assert!(r == &results[0], "{l:?} differs from the baseline");
            }
        }
    }

    /// The fused sum of squares against Burn's `square().sum()`, over more than one chunk.
    #[test]
    fn fused_sum_of_squares_matches_burns() {
        for d in cpu_devices() {
            let d = d.inner();
            let values: Vec<f32> = (0..100_003)
                .map(|i| ((i % 97) as f32 - 48.0) / 13.0)
                .collect();
            let x = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(values.clone(), [1, values.len()]),
                &d,
            );
            let want: f64 = values.iter().map(|&v| v as f64 * v as f64).sum();
            let fused: f32 = sum_squares(x.clone()).into_scalar();
            let composed: f32 = x.square().sum().into_scalar();
            assert!(
                ((fused as f64 - want) / want).abs() < 1e-6,
                "{fused} vs {want}"
            );
            assert!(
                ((composed as f64 - want) / want).abs() < 1e-4,
                "{composed} vs {want}"
            );
        }
    }

    /// The fused AdamW step against torch's arithmetic done in f64 on the host, two steps with
    /// clipping and weight decay; buffers held elsewhere are left as they were.
    #[test]
    fn fused_adamw_matches_torchs_arithmetic_and_leaves_shared_buffers_alone() {
        use super::adamw_reference as r;
        use burn::tensor::TensorData;
        let n = 40_000; // more than one chunk
        let (init, grads) = (r::init(n), r::grads(n));
        let want = r::run(&init, &grads);
        for d in cpu_devices() {
            let d = d.inner();
            let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &d);
            let (first, mut m1, mut v1) = (t(&init), t(&vec![0.0; n]), t(&vec![0.0; n]));
            let mut p1 = first.clone(); // shared: the first step must copy it
            for (k, g) in grads.iter().enumerate() {
                let clip = Tensor::<1>::from_floats([r::CLIP], &d);
                (p1, m1, v1) = adamw_step(p1, t(g), m1, v1, Some(clip), r::step(k as i32 + 1));
            }
            let host = |x: Tensor<1>| x.into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(
                host(first),
                init,
                "a shared parameter buffer was overwritten"
            );
            r::assert_close(&format!("{d:?}"), [host(p1), host(m1), host(v1)], &want);
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
