//! Fused kernels for the CubeCL backends (`cuda`, `wgpu`, `vulkan`, `cpu`), written in CubeCL
//! and reached through Burn's `#[backend_extension]`, with or without Burn's `fusion`.
//!
//! One AdamW step of a parameter ([`adamw_step`]): composed from tensor ops it is about fifteen
//! element-wise ops per parameter tensor (~3,000 for BERT-base, each recorded, and without
//! `fusion` each launched), which is what kept a GPU step waiting on the host; here it is one
//! kernel launch per parameter that reads the gradient and updates the parameter and both
//! moments in place (a copy first of any buffer something else holds), with the clipping
//! factor read on the device. The arithmetic is torch's single-tensor AdamW, in f32 whatever the
//! parameters' type (as torch's fused AdamW computes), the same operations in the same order as
//! [`crate::cpu_kernels::adamw_step`].
//!
//! The global gradient norm ([`SumSquares`]): composed, a square, a sum and an addition per
//! gradient; here one launch per gradient in which every thread writes its partial `Σ g²` into
//! one f32 buffer, summed once at the end.
//!
//! LayerNorm and softmax over the last dimension ([`layer_norm`], [`softmax_last`], f32,
//! differentiable): composed, Burn 0.22 records nine ops for a LayerNorm forward and about
//! fifteen backward, five and about six for a softmax; here one kernel forward, and backward
//! one (softmax) or two (LayerNorm: the input's gradient per row, the weight's and bias's as
//! partial sums over chunks of rows, summed by one reduction each). A row is reduced by the
//! threads of a cube through shared memory on a GPU; on the CubeCL CPU runtime, where a barrier
//! is a round of thread switches, one thread takes a row. The exact GELU ([`gelu`]) is one
//! element-wise kernel each way (composed: five ops forward, about ten backward), its
//! derivative `Φ(x) + x·φ(x)` exact. Dropout ([`dropout`], any float type) is one kernel that
//! hashes each element's index with a key of the host stream (`crate::dropout`), and backward
//! the same mask on the gradient: no mask tensor is drawn or kept (composed: a Bernoulli tensor
//! and two recorded products, the mask kept for the backward). Cross-entropy's log-softmax
//! picked at the labels ([`log_softmax_pick`]) is one row kernel each way (composed: the
//! log-softmax's five ops and a gather, backward a scatter into a zero tensor of the logits'
//! size, each a pass over the MLM head's `[rows, vocabulary]` logits). The residual block's
//! `LayerNorm(dropout(x) + residual)` ([`add_layer_norm`]) is one kernel forward (the mask
//! hashed as dropout's, the sum normalised and kept), and backward LayerNorm's kernels with the
//! dropout kernel on the input's gradient (composed: three ops each way). Attention's
//! `dropout(softmax(scores / √d + mask))` ([`attention_softmax`]) is one row kernel each way:
//! the mask read by index where it broadcasts, the probabilities kept for the backward and the
//! dropped ones written beside them; backward the gradient through the mask, the softmax's and
//! the division's (composed: four ops forward, three backward, each a pass over the
//! `[b, heads, q, k]` scores).
//!
//! `kernels/ptx.rs` compiles every kernel for an H100 with the `cuda` backend's compiler, on
//! the host (with `--features cuda`; no GPU).
//!
//! Under `fusion` each kernel is an opaque custom operation of Burn's fusion stream: recorded
//! once, executed in order with the fused element-wise chains around it.
#![cfg_attr(not(cube), allow(dead_code, unused_variables))]

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{DType, Tensor};

pub use crate::cpu_kernels::AdamWStep;

/// Threads per cube of the gradient norm's sum of squares.
const NORM_CUBE_DIM: usize = 128;

#[cfg(cube)]
mod kernels {
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::{FloatTensor, IntTensor};
    use burn::backend::{AutodiffBackend, Backend, backend_extension};
    use burn::tensor::Shape;
    use burn_cubecl::CubeBackend;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;
    use burn_cubecl::cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
    use burn_cubecl::tensor::CubeTensor;

    use super::{AdamWStep, NORM_CUBE_DIM};
    use crate::cpu_kernels::{UnaryBackward, register, untracked};
    use crate::dropout::HostDraw;

    #[backend_extension(Cube, Fusion: cfg(feature = "fusion"), Autodiff)]
    pub trait CubeFused: Backend {
        /// One AdamW step of a parameter with its gradient and moments, all four of one shape
        /// and type (the gradient first multiplied by `clip`, a `[1]` tensor); returns the
        /// parameter and the moments after it.
        #[fusion(meta = |p, _g, m, v, _clip, _step| (p.clone(), m.clone(), v.clone()))]
        fn adamw_update(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            exp_avg: FloatTensor<Self>,
            exp_avg_sq: FloatTensor<Self>,
            clip: FloatTensor<Self>,
            step: AdamWStep,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

        /// Writes `cubes` × [`NORM_CUBE_DIM`] partial sums of `Σ grad²` (f32) into `partials`
        /// from `offset` on, and returns `partials` (the same buffer when nothing else holds it).
        #[fusion(meta = |partials, _grad, _offset, _cubes| partials.clone())]
        fn sum_squares_into(
            partials: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            offset: usize,
            cubes: usize,
        ) -> FloatTensor<Self>;

        /// LayerNorm over the last dimension of an f32 `x` (`[.., h]`), `weight` and `bias`
        /// `[h]`: the output, and each row's mean and `1/√(var + eps)` (`[rows, 2]`) for
        /// [`CubeFused::layer_norm_last_backward`].
        #[fusion(meta = |x, _w, _b, _eps| (x.clone(), stats_spec(x)))]
        fn layer_norm_last(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            eps: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);

        /// LayerNorm over the last dimension of `z = dropout(x) + residual` (f32, one shape;
        /// `draw`'s mask on `x` as [`CubeFused::dropout_mask`] makes it, none without one):
        /// the output, `z` and its rows' mean and `1/√(var + eps)` (for the backward: the
        /// LayerNorm's of `z`, then the mask on the gradient for `x`).
        #[fusion(meta = |x, _r, _w, _b, _eps, _draw| (x.clone(), x.clone(), stats_spec(x)))]
        fn add_layer_norm_last(
            x: FloatTensor<Self>,
            residual: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            eps: f64,
            draw: Option<HostDraw>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

        /// The gradients of [`CubeFused::layer_norm_last`] for its input, weight and bias, from
        /// its input, weight, row statistics and the output's gradient.
        #[fusion(meta = |x, w, _s, _g| (x.clone(), w.clone(), w.clone()))]
        fn layer_norm_last_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

        /// Softmax over the last dimension of an f32 tensor.
        #[fusion(meta = |x| x.clone())]
        fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;

        /// The softmax's input gradient from its output `y`: `y · (grad - Σ grad·y)` per row.
        #[fusion(meta = |y, _g| y.clone())]
        fn softmax_last_backward(
            y: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self>;

        /// Attention's probabilities: `softmax(scores / divisor + mask)` over the last
        /// dimension of f32 scores `[b, heads, q, k]`, the additive f32 `mask` broadcastable to
        /// them (`[b|1, heads|1, q|1, k|1]`).
        #[fusion(meta = |x, _mask, _divisor| x.clone())]
        fn attention_softmax(
            scores: FloatTensor<Self>,
            mask: FloatTensor<Self>,
            divisor: f32,
        ) -> FloatTensor<Self>;

        /// [`CubeFused::attention_softmax`] and `draw`'s dropout mask on it, in one kernel:
        /// the dropped probabilities and the probabilities (for the backward).
        #[fusion(meta = |x, _mask, _divisor, _draw| (x.clone(), x.clone()))]
        fn attention_softmax_dropout(
            scores: FloatTensor<Self>,
            mask: FloatTensor<Self>,
            divisor: f32,
            draw: HostDraw,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);

        /// The scores' gradient of either from the probabilities and the output's gradient
        /// (through `draw`'s mask, the one the forward applied): `p·(ĝ - Σ ĝ·p)·(1/divisor)`.
        #[fusion(meta = |p, _g, _divisor, _draw| p.clone())]
        fn attention_softmax_backward(
            probs: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            divisor: f32,
            draw: Option<HostDraw>,
        ) -> FloatTensor<Self>;

        /// Exact GELU of an f32 tensor, `x·½(1 + erf(x/√2))`.
        #[fusion(meta = |x| x.clone())]
        fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self>;

        /// `grad · GELU'(x)`.
        #[fusion(meta = |x, _g| x.clone())]
        fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

        /// Cross-entropy's log-probabilities: `log_softmax(logits[i])[labels[i]]` for f32
        /// `logits` `[n, classes]` and integer `labels` `[n]`, as `[n]` (NaN for a label
        /// outside `0..classes`: the losses check them first).
        #[fusion(meta = |x, _labels| picked_spec(x))]
        fn log_softmax_pick(
            logits: FloatTensor<Self>,
            labels: IntTensor<Self>,
        ) -> FloatTensor<Self>;

        /// The gradient of [`CubeFused::log_softmax_pick`] for its logits from the picked
        /// values' gradient `grad` `[n]`: `grad[i]·(onehot(labels[i]) - softmax(logits[i]))`.
        #[fusion(meta = |x, _g, _labels| x.clone())]
        fn log_softmax_pick_backward(
            logits: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            labels: IntTensor<Self>,
        ) -> FloatTensor<Self>;

        /// Dropout's mask applied to `x` (any float type): element `i` kept, times `1/keep`,
        /// when a 32-bit hash of `i` and `draw.key` falls below `draw.threshold`, else 0. The
        /// same `draw` gives the same mask: the backward applies it to the gradient.
        #[fusion(meta = |x, _draw| x.clone())]
        fn dropout_mask(x: FloatTensor<Self>, draw: HostDraw) -> FloatTensor<Self>;
    }

    /// One dropout mask, as the kernels take it ([`HostDraw`]): element `i` kept, times
    /// `scale`, when `hash32(hash32(i ^ lo) + hi) < threshold` ([`kept`]).
    #[derive(CubeLaunch, CubeType)]
    struct DropoutKey {
        lo: u32,
        hi: u32,
        threshold: u32,
        scale: f32,
    }

    /// The step's scalars, rounded to f32 as torch's kernels take them from Python floats.
    #[derive(CubeLaunch, CubeType)]
    struct AdamWScalars {
        keep: f32,
        w1: f32,
        b2: f32,
        w2: f32,
        bc2: f32,
        eps: f32,
        step_size: f32,
    }

    /// One thread per vector of `N` elements, in f32 whatever `F` is: the same operations, in
    /// the same order, as torch's in-place ones (and `cpu_kernels`' `adamw_chunk`).
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn adamw_kernel<F: Float, N: Size>(
        param: &mut Tensor<Vector<F, N>>,
        grad: &Tensor<Vector<F, N>>,
        exp_avg: &mut Tensor<Vector<F, N>>,
        exp_avg_sq: &mut Tensor<Vector<F, N>>,
        clip: &Tensor<F>,
        s: AdamWScalars,
        vectors: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= vectors {
            terminate!();
        }
        // The scalars, broadcast to the vector.
        let clip = Vector::<f32, N>::new(f32::cast_from(clip[0]));
        let keep = Vector::<f32, N>::new(s.keep);
        let (w1, b2, w2) = (
            Vector::<f32, N>::new(s.w1),
            Vector::<f32, N>::new(s.b2),
            Vector::<f32, N>::new(s.w2),
        );
        let (bc2, eps) = (Vector::<f32, N>::new(s.bc2), Vector::<f32, N>::new(s.eps));
        let neg_step_size = Vector::<f32, N>::new(-s.step_size);

        let g = Vector::<f32, N>::cast_from(grad[i]) * clip;
        let mut p = Vector::<f32, N>::cast_from(param[i]) * keep;
        let mut m = Vector::<f32, N>::cast_from(exp_avg[i]);
        m += w1 * (g - m);
        let v = Vector::<f32, N>::cast_from(exp_avg_sq[i]) * b2 + w2 * g * g;
        let denom = v.sqrt() / bc2 + eps;
        p += neg_step_size * (m / denom);
        param[i] = Vector::cast_from(p);
        exp_avg[i] = Vector::cast_from(m);
        exp_avg_sq[i] = Vector::cast_from(v);
    }

    /// `cubes` cubes of [`NORM_CUBE_DIM`] threads stride over `grad`, each thread summing its
    /// elements' squares in f32 and writing its sum at `partials[offset + thread]` (0 for a
    /// thread with no element). No shared memory and no barrier: on the CubeCL CPU runtime each
    /// `sync_cube` of a cube's threads costs a round of thread switches on every core, and a
    /// tree of them per cube made the norm of a tiny model take minutes on 2 cores.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn sum_squares_kernel<F: Float>(
        grad: &Tensor<F>,
        partials: &mut Tensor<f32>,
        len: usize,
        offset: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let thread = ABSOLUTE_POS_X as usize;
        let threads = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
        let mut acc = f32::new(0.0);
        let mut i = thread;
        while i < len {
            let g = f32::cast_from(grad[i]);
            acc += g * g;
            i += threads;
        }
        partials[offset + thread] = acc;
    }

    /// Sum (or, with `max`, maximum) of `value` over the `CUBE_DIM_X` threads of a row: each
    /// thread gets the row's total. A tree in shared memory where a cube holds several threads
    /// per row (`threads` > 1, the GPUs); the value itself where a thread holds a row (the CubeCL
    /// CPU runtime, whose `sync_cube` is a round of thread switches). Every thread of the cube
    /// must call it, rows past the end included.
    #[cube]
    fn row_reduce(
        value: f32,
        #[comptime] threads: usize,
        #[comptime] rows: usize,
        #[comptime] max: bool,
    ) -> f32 {
        let mut total = value;
        if comptime!(threads > 1) {
            let mut shared = Shared::<[f32]>::new_slice(threads * rows);
            let base = UNIT_POS_Y as usize * threads;
            let lane = UNIT_POS_X as usize;
            shared[base + lane] = value;
            sync_cube();
            let mut stride = CUBE_DIM_X as usize / 2;
            while stride > 0 {
                if lane < stride {
                    let (a, b) = (shared[base + lane], shared[base + lane + stride]);
                    shared[base + lane] = if comptime!(max) {
                        f32::max(a, b)
                    } else {
                        a + b
                    };
                }
                sync_cube();
                stride /= 2;
            }
            total = shared[base];
            sync_cube();
        }
        total
    }

    /// The row a thread of the row kernels works on: `CUBE_DIM_Y` rows per cube, the cubes
    /// numbered across a 2-D grid (more than 65,535 of them for large batches).
    #[cube]
    fn row_index() -> usize {
        (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize * CUBE_DIM_Y as usize
            + UNIT_POS_Y as usize
    }

    /// LayerNorm of `rows` rows of `h` (contiguous): `(x - mean) · rstd · weight + bias`, the
    /// variance from the centred values (two passes, as torch). Writes each row's mean and
    /// `rstd = 1/√(var + eps)` into `stats` (`[rows, 2]`) for the backward.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn layer_norm_kernel(
        x: &Tensor<f32>,
        weight: &Tensor<f32>,
        bias: &Tensor<f32>,
        y: &mut Tensor<f32>,
        stats: &mut Tensor<f32>,
        rows: usize,
        h: usize,
        eps: f32,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let row = row_index();
        let lane = UNIT_POS_X as usize;
        // Rows past the end read nothing but take part in the reductions' barriers.
        let end = if row < rows { h } else { 0usize };
        let start = row * h;
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            acc += x[start + i];
            i += threads;
        }
        normalize_row(
            x, weight, bias, y, stats, acc, row, rows, h, eps, threads, per_cube,
        );
    }

    /// The rest of LayerNorm on a row of `h` values of `src` (from `row · h`) once each thread
    /// has summed its elements into `sum`: the mean, the centred variance, the output
    /// `(src - mean) · rstd · weight + bias` and the row's `stats` (mean, rstd).
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn normalize_row(
        src: &Tensor<f32>,
        weight: &Tensor<f32>,
        bias: &Tensor<f32>,
        y: &mut Tensor<f32>,
        stats: &mut Tensor<f32>,
        sum: f32,
        row: usize,
        rows: usize,
        h: usize,
        eps: f32,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let lane = UNIT_POS_X as usize;
        let end = if row < rows { h } else { 0usize };
        let start = row * h;
        let mean = row_reduce(sum, threads, per_cube, false) / f32::cast_from(h);
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            let d = src[start + i] - mean;
            acc += d * d;
            i += threads;
        }
        let var = row_reduce(acc, threads, per_cube, false) / f32::cast_from(h);
        let rstd = f32::new(1.0) / f32::sqrt(var + eps);
        let mut i = lane;
        while i < end {
            y[start + i] = (src[start + i] - mean) * rstd * weight[i] + bias[i];
            i += threads;
        }
        if lane == 0 && row < rows {
            stats[2 * row] = mean;
            stats[2 * row + 1] = rstd;
        }
    }

    /// [`layer_norm_kernel`] of `z = x·mask + residual`, `z` written too (each thread reads back
    /// only what it wrote). With `dropout`, the mask is [`dropout_kernel`]'s for `key` (element
    /// `i` of the tensor: `scale` where [`kept`], else 0), so the backward applies that kernel
    /// to the gradient; without, 1.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn add_layer_norm_kernel(
        x: &Tensor<f32>,
        residual: &Tensor<f32>,
        weight: &Tensor<f32>,
        bias: &Tensor<f32>,
        y: &mut Tensor<f32>,
        z: &mut Tensor<f32>,
        stats: &mut Tensor<f32>,
        rows: usize,
        h: usize,
        eps: f32,
        key: DropoutKey,
        #[comptime] dropout: bool,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let row = row_index();
        let lane = UNIT_POS_X as usize;
        let end = if row < rows { h } else { 0usize };
        let start = row * h;
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            let mut v = x[start + i];
            if comptime!(dropout) {
                v = drop_at(v, start + i, &key);
            }
            let sum = v + residual[start + i];
            z[start + i] = sum;
            acc += sum;
            i += threads;
        }
        normalize_row(
            &*z, weight, bias, y, stats, acc, row, rows, h, eps, threads, per_cube,
        );
    }

    /// LayerNorm's input gradient per row, from the saved `stats`: with `x̂ = (x - mean)·rstd`
    /// and `ĝ = grad·weight`, `dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂))`.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn layer_norm_backward_kernel(
        x: &Tensor<f32>,
        weight: &Tensor<f32>,
        stats: &Tensor<f32>,
        grad: &Tensor<f32>,
        dx: &mut Tensor<f32>,
        rows: usize,
        h: usize,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let row = row_index();
        let lane = UNIT_POS_X as usize;
        let valid = row < rows;
        let end = if valid { h } else { 0usize };
        let (mut mean, mut rstd) = (f32::new(0.0), f32::new(0.0));
        if valid {
            mean = stats[2 * row];
            rstd = stats[2 * row + 1];
        }
        let start = row * h;
        let (mut sum_g, mut sum_gx) = (f32::new(0.0), f32::new(0.0));
        let mut i = lane;
        while i < end {
            let g = grad[start + i] * weight[i];
            sum_g += g;
            sum_gx += g * (x[start + i] - mean) * rstd;
            i += threads;
        }
        let n = f32::cast_from(h);
        let mean_g = row_reduce(sum_g, threads, per_cube, false) / n;
        let mean_gx = row_reduce(sum_gx, threads, per_cube, false) / n;
        let mut i = lane;
        while i < end {
            let g = grad[start + i] * weight[i];
            let xhat = (x[start + i] - mean) * rstd;
            dx[start + i] = rstd * (g - mean_g - xhat * mean_gx);
            i += threads;
        }
    }

    /// LayerNorm's weight and bias gradients in `chunks` partial sums over rows: thread `col`
    /// of chunk `CUBE_POS_Y` sums `grad·x̂` and `grad` over its `rows_per_chunk` rows into
    /// `[chunks, h]` (`dw`, `db`), summed over the chunks afterwards. Neighbouring threads read
    /// neighbouring columns of a row.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn layer_norm_columns_kernel(
        x: &Tensor<f32>,
        stats: &Tensor<f32>,
        grad: &Tensor<f32>,
        dw: &mut Tensor<f32>,
        db: &mut Tensor<f32>,
        rows: usize,
        h: usize,
        rows_per_chunk: usize,
    ) {
        let col = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
        let chunk = CUBE_POS_Y as usize;
        if col >= h {
            terminate!();
        }
        let first = chunk * rows_per_chunk;
        let last = usize::min(first + rows_per_chunk, rows);
        let (mut sw, mut sb) = (f32::new(0.0), f32::new(0.0));
        let mut r = first;
        while r < last {
            let g = grad[r * h + col];
            sw += g * (x[r * h + col] - stats[2 * r]) * stats[2 * r + 1];
            sb += g;
            r += 1;
        }
        dw[chunk * h + col] = sw;
        db[chunk * h + col] = sb;
    }

    /// Softmax of `rows` rows of `k` (contiguous): `exp(x - max) / Σ exp(x - max)`.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn softmax_kernel(
        x: &Tensor<f32>,
        y: &mut Tensor<f32>,
        rows: usize,
        k: usize,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let row = row_index();
        let lane = UNIT_POS_X as usize;
        let end = if row < rows { k } else { 0usize };
        let start = row * k;
        let mut m = f32::new(f32::MIN);
        let mut i = lane;
        while i < end {
            m = f32::max(m, x[start + i]);
            i += threads;
        }
        let m = row_reduce(m, threads, per_cube, true);
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            acc += f32::exp(x[start + i] - m);
            i += threads;
        }
        let sum = row_reduce(acc, threads, per_cube, false);
        let mut i = lane;
        while i < end {
            y[start + i] = f32::exp(x[start + i] - m) / sum;
            i += threads;
        }
    }

    /// `v` through dropout's mask at element `i`: `v·scale` if [`kept`], else 0 (as
    /// [`dropout_kernel`]).
    #[cube]
    fn drop_at(v: f32, i: usize, key: &DropoutKey) -> f32 {
        let mut out = f32::new(0.0);
        if kept(i, key) {
            out = v * key.scale;
        }
        out
    }

    /// Attention's probabilities, `softmax(x / divisor + mask)` over `rows` rows of `k` scores
    /// (`[b, heads, queries, k]`, contiguous), the additive mask `[mask_b, mask_h, mask_q,
    /// mask_k]` (contiguous; each extent the scores' or 1, broadcast), into `probs`; with
    /// `dropped`, `key`'s dropout mask on them there too ([`drop_at`]).
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn attention_softmax_kernel(
        x: &Tensor<f32>,
        mask: &Tensor<f32>,
        probs: &mut Tensor<f32>,
        dropped: ComptimeOption<&mut Tensor<f32>>,
        rows: usize,
        k: usize,
        heads: usize,
        queries: usize,
        mask_b: usize,
        mask_h: usize,
        mask_q: usize,
        mask_k: usize,
        divisor: f32,
        key: DropoutKey,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let row = row_index();
        let lane = UNIT_POS_X as usize;
        let end = if row < rows { k } else { 0usize };
        let start = row * k;
        // The mask's row for this row's batch, head and query; its column per key, or one.
        let (query, head) = (row % queries, (row / queries) % heads);
        let batch = row / (queries * heads);
        let mask_row = ((batch % mask_b) * mask_h + head % mask_h) * mask_q + query % mask_q;
        let mask_start = mask_row * mask_k;
        let step = if mask_k > 1 { 1usize } else { 0usize };
        let mut m = f32::new(f32::MIN);
        let mut i = lane;
        while i < end {
            m = f32::max(m, x[start + i] / divisor + mask[mask_start + i * step]);
            i += threads;
        }
        let m = row_reduce(m, threads, per_cube, true);
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            acc += f32::exp(x[start + i] / divisor + mask[mask_start + i * step] - m);
            i += threads;
        }
        let sum = row_reduce(acc, threads, per_cube, false);
        #[comptime]
        match dropped {
            ComptimeOption::Some(out) => {
                let mut i = lane;
                while i < end {
                    let s = x[start + i] / divisor + mask[mask_start + i * step];
                    let p = f32::exp(s - m) / sum;
                    probs[start + i] = p;
                    out[start + i] = drop_at(p, start + i, &key);
                    i += threads;
                }
            }
            ComptimeOption::None => {
                let mut i = lane;
                while i < end {
                    let s = x[start + i] / divisor + mask[mask_start + i * step];
                    probs[start + i] = f32::exp(s - m) / sum;
                    i += threads;
                }
            }
        }
    }

    /// A softmax's input gradient from its output `p` and the output's gradient: with `ĝ` the
    /// gradient through dropout's mask (with `dropout`; else the gradient),
    /// `p·(ĝ - Σ ĝ·p)·inv_divisor` per row. [`softmax_kernel`]'s with no dropout and 1 (×1 is
    /// exact); [`attention_softmax_kernel`]'s with its mask and `1/divisor` in f32 (the
    /// division's backward as Burn's autodiff takes it).
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn softmax_backward_kernel(
        p: &Tensor<f32>,
        grad: &Tensor<f32>,
        dx: &mut Tensor<f32>,
        rows: usize,
        k: usize,
        inv_divisor: f32,
        key: DropoutKey,
        #[comptime] dropout: bool,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) {
        let row = row_index();
        let lane = UNIT_POS_X as usize;
        let end = if row < rows { k } else { 0usize };
        let start = row * k;
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            let mut g = grad[start + i];
            if comptime!(dropout) {
                g = drop_at(g, start + i, &key);
            }
            acc += g * p[start + i];
            i += threads;
        }
        let dot = row_reduce(acc, threads, per_cube, false);
        let mut i = lane;
        while i < end {
            let mut g = grad[start + i];
            if comptime!(dropout) {
                g = drop_at(g, start + i, &key);
            }
            dx[start + i] = p[start + i] * (g - dot) * inv_divisor;
            i += threads;
        }
    }

    /// The maximum and `log Σ exp(x - max)` of row `row` (of `k`, from `start`; `end` is 0 for
    /// a row past the end), reduced over the row's threads: the log-softmax's shift is their
    /// sum.
    #[cube]
    fn row_log_sum_exp(
        x: &Tensor<f32>,
        start: usize,
        end: usize,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
    ) -> f32 {
        let lane = UNIT_POS_X as usize;
        let mut m = f32::new(f32::MIN);
        let mut i = lane;
        while i < end {
            m = f32::max(m, x[start + i]);
            i += threads;
        }
        let m = row_reduce(m, threads, per_cube, true);
        let mut acc = f32::new(0.0);
        let mut i = lane;
        while i < end {
            acc += f32::exp(x[start + i] - m);
            i += threads;
        }
        m + f32::ln(row_reduce(acc, threads, per_cube, false))
    }

    /// Cross-entropy's log-probability of each row's label: `x[label] - max - log Σ exp(x -
    /// max)` for `rows` rows of `k` (contiguous), `nan` for a label outside `0..k` (NaN, from
    /// the host: WGSL has no NaN literal).
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn log_softmax_pick_kernel<I: Int>(
        x: &Tensor<f32>,
        labels: &Tensor<I>,
        out: &mut Tensor<f32>,
        rows: usize,
        k: usize,
        nan: f32,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
        #[define(I)] _int: ElemType,
    ) {
        let row = row_index();
        let valid = row < rows;
        let end = if valid { k } else { 0usize };
        let start = row * k;
        let shift = row_log_sum_exp(x, start, end, threads, per_cube);
        if UNIT_POS_X == 0 && valid {
            let label = labels[row];
            let mut v = nan;
            if label >= I::new(0) && usize::cast_from(label) < k {
                v = x[start + usize::cast_from(label)] - shift;
            }
            out[row] = v;
        }
    }

    /// Its gradient: `dx[row, j] = grad[row]·([j = label] - exp(x[row, j] - shift))`, the shift
    /// reduced again from the row.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn log_softmax_pick_backward_kernel<I: Int>(
        x: &Tensor<f32>,
        grad: &Tensor<f32>,
        labels: &Tensor<I>,
        dx: &mut Tensor<f32>,
        rows: usize,
        k: usize,
        #[comptime] threads: usize,
        #[comptime] per_cube: usize,
        #[define(I)] _int: ElemType,
    ) {
        let row = row_index();
        let valid = row < rows;
        let end = if valid { k } else { 0usize };
        let start = row * k;
        let shift = row_log_sum_exp(x, start, end, threads, per_cube);
        let (mut g, mut label) = (f32::new(0.0), k);
        if valid {
            g = grad[row];
            let l = labels[row];
            if l >= I::new(0) {
                label = usize::cast_from(l);
            }
        }
        let mut i = UNIT_POS_X as usize;
        while i < end {
            let mut onehot = f32::new(0.0);
            if i == label {
                onehot = f32::new(1.0);
            }
            dx[start + i] = g * (onehot - f32::exp(x[start + i] - shift));
            i += threads;
        }
    }

    /// Exact GELU, `x·½(1 + erf(x/√2))`, one thread per vector of `N` f32 elements.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn gelu_kernel<N: Size>(
        x: &Tensor<Vector<f32, N>>,
        y: &mut Tensor<Vector<f32, N>>,
        vectors: usize,
    ) {
        let i = ABSOLUTE_POS;
        if i >= vectors {
            terminate!();
        }
        let v = x[i];
        let half = Vector::<f32, N>::new(0.5);
        let one = Vector::<f32, N>::new(1.0);
        let cdf = half * (one + (v * Vector::<f32, N>::new(FRAC_1_SQRT_2)).erf());
        y[i] = v * cdf;
    }

    /// `grad · GELU'(x)`, `GELU'(x) = Φ(x) + x·φ(x)`, one thread per vector of `N` elements.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn gelu_backward_kernel<N: Size>(
        x: &Tensor<Vector<f32, N>>,
        grad: &Tensor<Vector<f32, N>>,
        dx: &mut Tensor<Vector<f32, N>>,
        vectors: usize,
    ) {
        let i = ABSOLUTE_POS;
        if i >= vectors {
            terminate!();
        }
        let v = x[i];
        let half = Vector::<f32, N>::new(0.5);
        let one = Vector::<f32, N>::new(1.0);
        let cdf = half * (one + (v * Vector::<f32, N>::new(FRAC_1_SQRT_2)).erf());
        let pdf = Vector::<f32, N>::new(FRAC_1_SQRT_2PI) * (-half * v * v).exp();
        dx[i] = grad[i] * (cdf + v * pdf);
    }

    /// Chris Wellons' `lowbias32` integer hash (bias ~0.17 of the best 32-bit hash found).
    #[cube]
    fn hash32(x: u32) -> u32 {
        let mut h = x;
        h ^= h >> 16u32;
        h *= 0x7feb_352du32;
        h ^= h >> 15u32;
        h *= 0x846c_a68bu32;
        h ^= h >> 16u32;
        h
    }

    /// Whether element `i` survives `key`'s mask: `hash32(hash32(i ^ lo) + hi) < threshold`.
    #[cube]
    fn kept(i: usize, key: &DropoutKey) -> bool {
        hash32(hash32(u32::cast_from(i) ^ key.lo) + key.hi) < key.threshold
    }

    /// Dropout's mask on `x`, one thread per element: `x·scale` where [`kept`], else 0.
    #[cube(launch_unchecked, create_dummy_kernel)]
    fn dropout_kernel<F: Float>(
        x: &Tensor<F>,
        y: &mut Tensor<F>,
        len: usize,
        key: DropoutKey,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= len {
            terminate!();
        }
        let mut v = F::new(0.0);
        if kept(i, &key) {
            v = x[i] * F::cast_from(key.scale);
        }
        y[i] = v;
    }

    /// `t` as a buffer this kernel may write: itself when nothing else holds it and it is
    /// contiguous, a contiguous copy otherwise.
    fn writable(t: CubeTensor) -> CubeTensor {
        if t.can_mut() && t.is_contiguous() && t.is_contiguous_buffer() {
            t
        } else if t.is_contiguous() {
            t.copy()
        } else {
            into_contiguous(t)
        }
    }

    impl CubeFused for CubeBackend {
        fn adamw_update(
            param: CubeTensor,
            grad: CubeTensor,
            exp_avg: CubeTensor,
            exp_avg_sq: CubeTensor,
            clip: CubeTensor,
            step: AdamWStep,
        ) -> (CubeTensor, CubeTensor, CubeTensor) {
            let (p, m, v) = (writable(param), writable(exp_avg), writable(exp_avg_sq));
            let (g, clip) = (into_contiguous(grad), into_contiguous(clip));
            let client = p.client.clone();
            let (vector_size, vectors, cube_count, cube_dim) = elementwise_layout(&p);
            let f = |x: f64| x as f32;
            let scalars = AdamWScalarsLaunch::new(
                f(1.0 - step.decay),
                f(1.0 - step.beta1),
                f(step.beta2),
                f(1.0 - step.beta2),
                f(step.bias_correction2_sqrt),
                f(step.eps),
                f(step.step_size),
            );
            let dtype = burn::backend::cubecl::dtype_to_storage_type(p.dtype);
            // SAFETY: every index is checked against `vectors`, the vector count of the four
            // contiguous tensors of one shape (`adamw_step` checks the shapes), and `clip` has
            // its one element.
            unsafe {
                adamw_kernel::launch_unchecked(
                    &client,
                    cube_count,
                    cube_dim,
                    vector_size,
                    p.clone().into_tensor_arg(),
                    g.into_tensor_arg(),
                    m.clone().into_tensor_arg(),
                    v.clone().into_tensor_arg(),
                    clip.into_tensor_arg(),
                    scalars,
                    vectors,
                    dtype,
                );
            }
            (p, m, v)
        }

        fn sum_squares_into(
            partials: CubeTensor,
            grad: CubeTensor,
            offset: usize,
            cubes: usize,
        ) -> CubeTensor {
            let partials = writable(partials);
            let grad = into_contiguous(grad);
            let len = grad.meta.shape().num_elements();
            assert!(
                partials.dtype == burn::tensor::DType::F32
                    && offset + cubes * NORM_CUBE_DIM <= partials.meta.shape().num_elements(),
                "sum_squares_into: {cubes} cubes' partial sums at {offset} do not fit {:?} {:?}",
                partials.dtype,
                partials.meta.shape()
            );
            let client = grad.client.clone();
            let dtype = burn::backend::cubecl::dtype_to_storage_type(grad.dtype);
            // SAFETY: the threads read `grad` below `len`, its element count (contiguous), and
            // thread `t` of `cubes` × NORM_CUBE_DIM writes `partials[offset + t]`, inside it
            // (checked above).
            unsafe {
                sum_squares_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(cubes as u32, 1, 1),
                    CubeDim::new_1d(NORM_CUBE_DIM as u32),
                    grad.into_tensor_arg(),
                    partials.clone().into_tensor_arg(),
                    len,
                    offset,
                    dtype,
                );
            }
            partials
        }

        fn layer_norm_last(
            x: CubeTensor,
            weight: CubeTensor,
            bias: CubeTensor,
            eps: f64,
        ) -> (CubeTensor, CubeTensor) {
            let (x, weight, bias) = (
                into_contiguous(x),
                into_contiguous(weight),
                into_contiguous(bias),
            );
            let (rows, h) = rows_of(&x);
            let y = empty_like(&x, x.meta.shape().clone());
            let stats = empty_like(&x, Shape::new([rows, 2]));
            let (threads, per_cube) = row_layout(plane_size(&x), h);
            // SAFETY: each row's threads read and write `x`'s and `y`'s row below `rows · h`
            // (both contiguous, of that many elements), `weight` and `bias` below `h` (checked
            // in `layer_norm`), and `stats` below `2 · rows`.
            unsafe {
                layer_norm_kernel::launch_unchecked(
                    &x.client.clone(),
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    x.into_tensor_arg(),
                    weight.into_tensor_arg(),
                    bias.into_tensor_arg(),
                    y.clone().into_tensor_arg(),
                    stats.clone().into_tensor_arg(),
                    rows,
                    h,
                    eps as f32,
                    threads,
                    per_cube,
                );
            }
            (y, stats)
        }

        fn add_layer_norm_last(
            x: CubeTensor,
            residual: CubeTensor,
            weight: CubeTensor,
            bias: CubeTensor,
            eps: f64,
            draw: Option<HostDraw>,
        ) -> (CubeTensor, CubeTensor, CubeTensor) {
            let (x, residual) = (into_contiguous(x), into_contiguous(residual));
            let (weight, bias) = (into_contiguous(weight), into_contiguous(bias));
            let (rows, h) = rows_of(&x);
            assert!(
                residual.meta.shape() == x.meta.shape() && residual.dtype == x.dtype,
                "add_layer_norm: the residual is {:?} {:?}, the input {:?} {:?}",
                residual.dtype,
                residual.meta.shape(),
                x.dtype,
                x.meta.shape()
            );
            assert_dropout_index("add_layer_norm", x.meta.shape());
            let y = empty_like(&x, x.meta.shape().clone());
            let z = empty_like(&x, x.meta.shape().clone());
            let stats = empty_like(&x, Shape::new([rows, 2]));
            let (threads, per_cube) = row_layout(plane_size(&x), h);
            // SAFETY: as in `layer_norm_last`; `residual` and `z` are `x`'s shape, contiguous.
            unsafe {
                add_layer_norm_kernel::launch_unchecked(
                    &x.client.clone(),
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    x.into_tensor_arg(),
                    residual.into_tensor_arg(),
                    weight.into_tensor_arg(),
                    bias.into_tensor_arg(),
                    y.clone().into_tensor_arg(),
                    z.clone().into_tensor_arg(),
                    stats.clone().into_tensor_arg(),
                    rows,
                    h,
                    eps as f32,
                    dropout_key(draw),
                    draw.is_some(),
                    threads,
                    per_cube,
                );
            }
            (y, z, stats)
        }

        fn layer_norm_last_backward(
            x: CubeTensor,
            weight: CubeTensor,
            stats: CubeTensor,
            grad: CubeTensor,
        ) -> (CubeTensor, CubeTensor, CubeTensor) {
            let (x, weight, stats, grad) = (
                into_contiguous(x),
                into_contiguous(weight),
                into_contiguous(stats),
                into_contiguous(grad),
            );
            let (rows, h) = rows_of(&x);
            let client = x.client.clone();
            let dx = empty_like(&x, x.meta.shape().clone());
            let (threads, per_cube) = row_layout(plane_size(&x), h);
            // The weight's and bias's gradients: partial sums over chunks of rows.
            let rows_per_chunk = rows.div_ceil(rows.div_ceil(32).clamp(1, 256)).max(1);
            let chunks = rows.div_ceil(rows_per_chunk).max(1);
            let dw = empty_like(&x, Shape::new([chunks, h]));
            let db = empty_like(&x, Shape::new([chunks, h]));
            let weight_shape = weight.meta.shape().clone();
            // SAFETY: as in `layer_norm_last`; `grad` and `dx` are `x`'s shape, contiguous.
            unsafe {
                layer_norm_backward_kernel::launch_unchecked(
                    &client,
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    x.clone().into_tensor_arg(),
                    weight.into_tensor_arg(),
                    stats.clone().into_tensor_arg(),
                    grad.clone().into_tensor_arg(),
                    dx.clone().into_tensor_arg(),
                    rows,
                    h,
                    threads,
                    per_cube,
                );
            }
            // SAFETY: thread `col < h` of chunk `c < chunks` reads rows below `rows` and writes
            // `[c, col]` of the `[chunks, h]` partial sums.
            unsafe {
                layer_norm_columns_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(h.div_ceil(COLUMN_CUBE_DIM) as u32, chunks as u32, 1),
                    CubeDim::new_1d(COLUMN_CUBE_DIM as u32),
                    x.into_tensor_arg(),
                    stats.into_tensor_arg(),
                    grad.into_tensor_arg(),
                    dw.clone().into_tensor_arg(),
                    db.clone().into_tensor_arg(),
                    rows,
                    h,
                    rows_per_chunk,
                );
            }
            let total = |t: CubeTensor| {
                CubeBackend::float_reshape(CubeBackend::float_sum_dim(t, 0), weight_shape.clone())
            };
            (dx, total(dw), total(db))
        }

        fn softmax_last(x: CubeTensor) -> CubeTensor {
            let x = into_contiguous(x);
            let (rows, k) = rows_of(&x);
            let y = empty_like(&x, x.meta.shape().clone());
            let (threads, per_cube) = row_layout(plane_size(&x), k);
            // SAFETY: each row's threads read and write their row of `x` and `y`, both
            // contiguous `rows · k` elements.
            unsafe {
                softmax_kernel::launch_unchecked(
                    &x.client.clone(),
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    x.into_tensor_arg(),
                    y.clone().into_tensor_arg(),
                    rows,
                    k,
                    threads,
                    per_cube,
                );
            }
            y
        }

        fn softmax_last_backward(y: CubeTensor, grad: CubeTensor) -> CubeTensor {
            Self::attention_softmax_backward(y, grad, 1.0, None)
        }

        fn attention_softmax(x: CubeTensor, mask: CubeTensor, divisor: f32) -> CubeTensor {
            attention_softmax_launch(x, mask, divisor, None).0
        }

        fn attention_softmax_dropout(
            x: CubeTensor,
            mask: CubeTensor,
            divisor: f32,
            draw: HostDraw,
        ) -> (CubeTensor, CubeTensor) {
            let (probs, dropped) = attention_softmax_launch(x, mask, divisor, Some(draw));
            (
                dropped.expect("a dropout launch writes the dropped probabilities"),
                probs,
            )
        }

        fn attention_softmax_backward(
            p: CubeTensor,
            grad: CubeTensor,
            divisor: f32,
            draw: Option<HostDraw>,
        ) -> CubeTensor {
            let (p, grad) = (into_contiguous(p), into_contiguous(grad));
            let (rows, k) = rows_of(&p);
            if draw.is_some() {
                assert_dropout_index("attention_softmax", p.meta.shape());
            }
            let dx = empty_like(&p, p.meta.shape().clone());
            let (threads, per_cube) = row_layout(plane_size(&p), k);
            // SAFETY: each row's threads read and write their row of `p`, `grad` and `dx`, all
            // contiguous `rows · k` elements.
            unsafe {
                softmax_backward_kernel::launch_unchecked(
                    &p.client.clone(),
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    p.into_tensor_arg(),
                    grad.into_tensor_arg(),
                    dx.clone().into_tensor_arg(),
                    rows,
                    k,
                    1.0 / divisor,
                    dropout_key(draw),
                    draw.is_some(),
                    threads,
                    per_cube,
                );
            }
            dx
        }
        fn log_softmax_pick(x: CubeTensor, labels: CubeTensor) -> CubeTensor {
            let (x, labels) = (into_contiguous(x), into_contiguous(labels));
            let (rows, k) = rows_of(&x);
            assert_labels(&labels, rows);
            let out = empty_like(&x, Shape::new([rows]));
            let (threads, per_cube) = row_layout(plane_size(&x), k);
            let int = burn::backend::cubecl::dtype_to_storage_type(labels.dtype);
            // SAFETY: each row's threads read their row of `x` (contiguous `rows · k`
            // elements), `labels[row]` and write `out[row]` (`rows` elements each, checked), and
            // read `x` at the label only inside `0..k`.
            unsafe {
                log_softmax_pick_kernel::launch_unchecked(
                    &x.client.clone(),
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    x.into_tensor_arg(),
                    labels.into_tensor_arg(),
                    out.clone().into_tensor_arg(),
                    rows,
                    k,
                    f32::NAN,
                    threads,
                    per_cube,
                    int,
                );
            }
            out
        }

        fn log_softmax_pick_backward(
            x: CubeTensor,
            grad: CubeTensor,
            labels: CubeTensor,
        ) -> CubeTensor {
            let (x, grad, labels) = (
                into_contiguous(x),
                into_contiguous(grad),
                into_contiguous(labels),
            );
            let (rows, k) = rows_of(&x);
            assert_labels(&labels, rows);
            assert_eq!(grad.meta.shape().num_elements(), rows, "one gradient a row");
            let dx = empty_like(&x, x.meta.shape().clone());
            let (threads, per_cube) = row_layout(plane_size(&x), k);
            let int = burn::backend::cubecl::dtype_to_storage_type(labels.dtype);
            // SAFETY: as in `log_softmax_pick`; `dx` is `x`'s shape, contiguous, and `grad` has
            // `rows` elements (checked).
            unsafe {
                log_softmax_pick_backward_kernel::launch_unchecked(
                    &x.client.clone(),
                    row_grid(rows, per_cube),
                    CubeDim::new_2d(threads as u32, per_cube as u32),
                    x.into_tensor_arg(),
                    grad.into_tensor_arg(),
                    labels.into_tensor_arg(),
                    dx.clone().into_tensor_arg(),
                    rows,
                    k,
                    threads,
                    per_cube,
                    int,
                );
            }
            dx
        }

        fn gelu_erf(x: CubeTensor) -> CubeTensor {
            let x = into_contiguous(x);
            assert_f32(&x);
            let y = empty_like(&x, x.meta.shape().clone());
            let (vector_size, vectors, count, dim) = elementwise_layout(&x);
            // SAFETY: every index is checked against `vectors`, the vector count of `x` and
            // `y`, contiguous and of one shape.
            unsafe {
                gelu_kernel::launch_unchecked(
                    &x.client.clone(),
                    count,
                    dim,
                    vector_size,
                    x.into_tensor_arg(),
                    y.clone().into_tensor_arg(),
                    vectors,
                );
            }
            y
        }

        fn gelu_erf_backward(x: CubeTensor, grad: CubeTensor) -> CubeTensor {
            let (x, grad) = (into_contiguous(x), into_contiguous(grad));
            assert_f32(&x);
            let dx = empty_like(&x, x.meta.shape().clone());
            let (vector_size, vectors, count, dim) = elementwise_layout(&x);
            // SAFETY: as in `gelu_erf`; `grad` is `x`'s shape, contiguous.
            unsafe {
                gelu_backward_kernel::launch_unchecked(
                    &x.client.clone(),
                    count,
                    dim,
                    vector_size,
                    x.into_tensor_arg(),
                    grad.into_tensor_arg(),
                    dx.clone().into_tensor_arg(),
                    vectors,
                );
            }
            dx
        }

        fn dropout_mask(x: CubeTensor, draw: HostDraw) -> CubeTensor {
            let x = into_contiguous(x);
            let len = x.meta.shape().num_elements();
            assert_dropout_index("dropout", x.meta.shape());
            let y = empty_like(&x, x.meta.shape().clone());
            let client = x.client.clone();
            let cube_dim = CubeDim::new(&client, len);
            let cube_count = calculate_cube_count_elemwise(&client, len, cube_dim);
            let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
            // SAFETY: every index is checked against `len`, the element count of `x` and `y`,
            // contiguous and of one shape.
            unsafe {
                dropout_kernel::launch_unchecked(
                    &client,
                    cube_count,
                    cube_dim,
                    x.into_tensor_arg(),
                    y.clone().into_tensor_arg(),
                    len,
                    dropout_key(Some(draw)),
                    dtype,
                );
            }
            y
        }
    }

    /// `1/√2`, `1/√(2π)`.
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

    /// [`attention_softmax_kernel`] on scores `[b, heads, q, k]` and a mask broadcastable to
    /// them: the probabilities, and with `draw` the dropped ones.
    fn attention_softmax_launch(
        x: CubeTensor,
        mask: CubeTensor,
        divisor: f32,
        draw: Option<HostDraw>,
    ) -> (CubeTensor, Option<CubeTensor>) {
        let (x, mask) = (into_contiguous(x), into_contiguous(mask));
        let (rows, k) = rows_of(&x);
        assert_f32(&mask);
        let (s, m) = (x.meta.shape().clone(), mask.meta.shape().clone());
        assert!(
            s.num_dims() == 4 && m.num_dims() == 4 && (0..4).all(|d| m[d] == 1 || m[d] == s[d]),
            "attention_softmax: a mask {m:?} for scores {s:?}"
        );
        if draw.is_some() {
            assert_dropout_index("attention_softmax", &s);
        }
        let probs = empty_like(&x, s.clone());
        let dropped = draw.map(|_| empty_like(&x, s.clone()));
        let (threads, per_cube) = row_layout(plane_size(&x), k);
        // SAFETY: each row's threads read their row of `x` and write it in `probs` (and
        // `dropped`), all contiguous `rows · k` elements; the mask's index is its row (the
        // row's batch, head and query, each modulo the mask's extent) times its last extent,
        // plus the key where that extent is `k`.
        unsafe {
            attention_softmax_kernel::launch_unchecked(
                &x.client.clone(),
                row_grid(rows, per_cube),
                CubeDim::new_2d(threads as u32, per_cube as u32),
                x.into_tensor_arg(),
                mask.into_tensor_arg(),
                probs.clone().into_tensor_arg(),
                dropped.clone().map(|d| d.into_tensor_arg()).into(),
                rows,
                k,
                s[1],
                s[2],
                m[0],
                m[1],
                m[2],
                m[3],
                divisor,
                dropout_key(draw),
                threads,
                per_cube,
            );
        }
        (probs, dropped)
    }

    /// Dropout's mask hashes a 32-bit element index: a larger tensor would repeat it.
    fn assert_dropout_index(what: &str, shape: &Shape) {
        let len = shape.num_elements();
        assert!(
            len <= u32::MAX as usize,
            "{what}: {len} elements, more than dropout's 32-bit index"
        );
    }

    /// `draw` as the kernels take it; any key without one (they then skip the mask at compile
    /// time).
    fn dropout_key(draw: Option<HostDraw>) -> DropoutKeyLaunch {
        let d = draw.unwrap_or(HostDraw {
            key: 0,
            threshold: u32::MAX,
            scale_bits: 1f32.to_bits(),
        });
        DropoutKeyLaunch::new(
            d.key as u32,
            (d.key >> 32) as u32,
            d.threshold,
            f32::from_bits(d.scale_bits),
        )
    }

    /// An element-wise launch over a contiguous tensor: the widest vector the runtime loads
    /// well that divides its length, the vector count, and cubes for them.
    fn elementwise_layout(x: &CubeTensor) -> (usize, usize, CubeCount, CubeDim) {
        let len = x.meta.shape().num_elements();
        let client = &x.client;
        let vector_size = client
            .io_optimized_vector_sizes(x.dtype.size())
            .filter(|&n| len.is_multiple_of(n))
            .max()
            .unwrap_or(1);
        let vectors = len / vector_size;
        let dim = CubeDim::new(client, vectors);
        let count = calculate_cube_count_elemwise(client, vectors, dim);
        (vector_size, vectors, count, dim)
    }

    /// Threads per cube of LayerNorm's weight and bias gradient sums (one per column).
    const COLUMN_CUBE_DIM: usize = 128;

    /// `(rows, last dimension)` of a contiguous f32 tensor, for the row kernels.
    fn rows_of(x: &CubeTensor) -> (usize, usize) {
        assert_f32(x);
        let shape = x.meta.shape();
        let last = shape[shape.num_dims() - 1];
        (shape.num_elements() / last.max(1), last)
    }

    /// The f32 kernels' check of their input's type.
    fn assert_f32(x: &CubeTensor) {
        assert_eq!(
            x.dtype,
            burn::tensor::DType::F32,
            "these CubeCL kernels take f32"
        );
    }

    /// Cross-entropy's labels: one integer a row.
    fn assert_labels(labels: &CubeTensor, rows: usize) {
        assert!(
            labels.meta.shape().num_elements() == rows && labels.dtype.is_int(),
            "log_softmax_pick: labels {:?} {:?} for {rows} rows",
            labels.dtype,
            labels.meta.shape()
        );
    }

    /// An uninitialised contiguous tensor of `like`'s type on its device.
    fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
        empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
    }

    /// Threads per row and rows per cube of the row kernels for rows of `len`: on a GPU a
    /// power of two from 32 to 256 threads, ~4 elements each, and cubes of 256 threads; on the
    /// CubeCL CPU runtime (planes of one thread) a thread per row, 64 rows a cube.
    fn row_layout(plane_size: u32, len: usize) -> (usize, usize) {
        if plane_size <= 1 {
            return (1, 64);
        }
        let threads = (len / 4).next_power_of_two().clamp(32, 256);
        (threads, 256 / threads)
    }

    /// The largest plane (warp) of `x`'s device: 32 on NVIDIA, 1 on the CubeCL CPU runtime.
    fn plane_size(x: &CubeTensor) -> u32 {
        x.client.properties().hardware.plane_size_max
    }

    /// Enough cubes of `per_cube` rows for `rows`, in a 2-D grid (at most 65,535 a side).
    fn row_grid(rows: usize, per_cube: usize) -> CubeCount {
        let cubes = rows.div_ceil(per_cube).max(1);
        let x = cubes.min(65_535);
        CubeCount::Static(x as u32, cubes.div_ceil(x) as u32, 1)
    }

    /// The row statistics' metadata for Burn's fusion stream: `[rows, 2]` f32.
    #[cfg(feature = "fusion")]
    fn stats_spec(
        x: &burn::backend::fusion::custom::TensorSpec,
    ) -> burn::backend::fusion::custom::TensorSpec {
        let last = x.shape[x.shape.num_dims() - 1];
        let rows = x.shape.num_elements() / last.max(1);
        burn::backend::fusion::custom::TensorSpec::new(
            Shape::new([rows, 2]),
            burn::tensor::DType::F32,
        )
    }

    /// The picked log-probabilities' metadata for Burn's fusion stream: `[rows]` f32.
    #[cfg(feature = "fusion")]
    fn picked_spec(
        x: &burn::backend::fusion::custom::TensorSpec,
    ) -> burn::backend::fusion::custom::TensorSpec {
        let last = x.shape[x.shape.num_dims() - 1];
        let rows = x.shape.num_elements() / last.max(1);
        burn::backend::fusion::custom::TensorSpec::new(Shape::new([rows]), burn::tensor::DType::F32)
    }

    /// Under autodiff: LayerNorm and softmax recorded with their kernels' backward; the
    /// backward kernels, the optimizer step and the norm's sums are not recorded (the
    /// first-order backward is all training needs; the optimizer's tensors are the inner
    /// device's).
    impl<B: CubeFused, C: CheckpointStrategy> CubeFused for Autodiff<B, C> {
        fn layer_norm_last(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            eps: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let ((x, x_node), (w, w_node)) = (x.into_parts(), weight.into_parts());
            let (b, b_node) = bias.into_parts();
            match LayerNormBackward
                .prepare::<C>([x_node, w_node, b_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (y, stats) = B::layer_norm_last(x.clone(), w.clone(), b, eps);
                    let stats_out = Self::from_inner(stats.clone());
                    (prep.finish((x, w, stats), y), stats_out)
                }
                OpsKind::UnTracked(prep) => {
                    let (y, stats) = B::layer_norm_last(x, w, b, eps);
                    (prep.finish(y), Self::from_inner(stats))
                }
            }
        }

        fn add_layer_norm_last(
            x: FloatTensor<Self>,
            residual: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            eps: f64,
            draw: Option<HostDraw>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let ((x, x_node), (r, r_node)) = (x.into_parts(), residual.into_parts());
            let ((w, w_node), (b, b_node)) = (weight.into_parts(), bias.into_parts());
            match AddLayerNormBackward
                .prepare::<C>([x_node, r_node, w_node, b_node])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (y, z, stats) = B::add_layer_norm_last(x, r, w.clone(), b, eps, draw);
                    let (z_out, stats_out) =
                        (Self::from_inner(z.clone()), Self::from_inner(stats.clone()));
                    (prep.finish((z, w, stats, draw), y), z_out, stats_out)
                }
                OpsKind::UnTracked(prep) => {
                    let (y, z, stats) = B::add_layer_norm_last(x, r, w, b, eps, draw);
                    (prep.finish(y), Self::from_inner(z), Self::from_inner(stats))
                }
            }
        }

        fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
            let (x, node) = x.into_parts();
            let backward = UnaryBackward::<B> {
                grad: B::softmax_last_backward,
            };
            match backward.prepare::<C>([node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let y = B::softmax_last(x);
                    prep.finish(y.clone(), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x)),
            }
        }

        fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
            let (x, node) = x.into_parts();
            let backward = UnaryBackward::<B> {
                grad: B::gelu_erf_backward,
            };
            match backward.prepare::<C>([node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let y = B::gelu_erf(x.clone());
                    prep.finish(x, y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::gelu_erf(x)),
            }
        }

        fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
            Self::from_inner(B::gelu_erf_backward(Self::inner(x), Self::inner(grad)))
        }

        fn log_softmax_pick(
            logits: FloatTensor<Self>,
            labels: IntTensor<Self>,
        ) -> FloatTensor<Self> {
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

        fn dropout_mask(x: FloatTensor<Self>, draw: HostDraw) -> FloatTensor<Self> {
            let (x, node) = x.into_parts();
            // The backward is the same mask on the gradient: nothing but `draw` is kept.
            let backward = UnaryBackward::<B, HostDraw> {
                grad: |draw, g| B::dropout_mask(g, draw),
            };
            match backward.prepare::<C>([node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(draw, B::dropout_mask(x, draw)),
                OpsKind::UnTracked(prep) => prep.finish(B::dropout_mask(x, draw)),
            }
        }

        fn layer_norm_last_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stats: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let i = Self::inner;
            untracked::<B, C>(B::layer_norm_last_backward(
                i(x),
                i(weight),
                i(stats),
                i(grad),
            ))
        }

        fn softmax_last_backward(
            y: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            Self::from_inner(B::softmax_last_backward(Self::inner(y), Self::inner(grad)))
        }

        fn attention_softmax(
            scores: FloatTensor<Self>,
            mask: FloatTensor<Self>,
            divisor: f32,
        ) -> FloatTensor<Self> {
            let (x, node) = scores.into_parts();
            let mask = Self::inner(mask);
            let backward = UnaryBackward::<B, (FloatTensor<B>, f32)> {
                grad: |(p, divisor), g| B::attention_softmax_backward(p, g, divisor, None),
            };
            match backward.prepare::<C>([node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let p = B::attention_softmax(x, mask, divisor);
                    prep.finish((p.clone(), divisor), p)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::attention_softmax(x, mask, divisor)),
            }
        }

        fn attention_softmax_dropout(
            scores: FloatTensor<Self>,
            mask: FloatTensor<Self>,
            divisor: f32,
            draw: HostDraw,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let (x, node) = scores.into_parts();
            let mask = Self::inner(mask);
            // The backward: the probabilities, the divisor and the mask's keys.
            let backward = UnaryBackward::<B, (FloatTensor<B>, f32, HostDraw)> {
                grad: |(p, divisor, draw), g| {
                    B::attention_softmax_backward(p, g, divisor, Some(draw))
                },
            };
            match backward.prepare::<C>([node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (y, p) = B::attention_softmax_dropout(x, mask, divisor, draw);
                    let p_out = Self::from_inner(p.clone());
                    (prep.finish((p, divisor, draw), y), p_out)
                }
                OpsKind::UnTracked(prep) => {
                    let (y, p) = B::attention_softmax_dropout(x, mask, divisor, draw);
                    (prep.finish(y), Self::from_inner(p))
                }
            }
        }

        /// Not differentiated again.
        fn attention_softmax_backward(
            probs: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            divisor: f32,
            draw: Option<HostDraw>,
        ) -> FloatTensor<Self> {
            let (p, g) = (Self::inner(probs), Self::inner(grad));
            Self::from_inner(B::attention_softmax_backward(p, g, divisor, draw))
        }

        fn adamw_update(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            exp_avg: FloatTensor<Self>,
            exp_avg_sq: FloatTensor<Self>,
            clip: FloatTensor<Self>,
            step: AdamWStep,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let i = Self::inner;
            let (p, g, m, v) = (i(param), i(grad), i(exp_avg), i(exp_avg_sq));
            untracked::<B, C>(B::adamw_update(p, g, m, v, i(clip), step))
        }

        fn sum_squares_into(
            partials: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            offset: usize,
            cubes: usize,
        ) -> FloatTensor<Self> {
            let (p, g) = (Self::inner(partials), Self::inner(grad));
            Self::from_inner(B::sum_squares_into(p, g, offset, cubes))
        }
    }

    /// The backward step of [`CubeFused::layer_norm_last`]: the input's, weight's and bias's
    /// gradients from the saved input, weight and row statistics.
    #[derive(Debug)]
    struct LayerNormBackward;

    impl<B: CubeFused> Backward<B, 3> for LayerNormBackward {
        type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (x, weight, stats) = ops.state;
            let (dx, dw, db) = B::layer_norm_last_backward(x, weight, stats, grad);
            register::<B, 3>(ops.parents.map(|p| p.map(|n| n.id)), grads, [dx, dw, db]);
        }
    }

    /// The backward step of [`CubeFused::add_layer_norm_last`]: LayerNorm's gradients of `z`
    /// (the residual's gradient), its weight and bias, and the input's: `z`'s through the
    /// dropout mask, drawn again from its keys.
    #[derive(Debug)]
    struct AddLayerNormBackward;

    impl<B: CubeFused> Backward<B, 4> for AddLayerNormBackward {
        type State = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            Option<HostDraw>,
        );

        fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (z, weight, stats, draw) = ops.state;
            let (dz, dw, db) = B::layer_norm_last_backward(z, weight, stats, grad);
            let dx = match draw {
                Some(draw) => B::dropout_mask(dz.clone(), draw),
                None => dz.clone(),
            };
            register::<B, 4>(
                ops.parents.map(|p| p.map(|n| n.id)),
                grads,
                [dx, dz, dw, db],
            );
        }
    }

    #[cfg(all(test, feature = "cuda"))]
    mod ptx;
}

/// How many cubes of [`NORM_CUBE_DIM`] threads [`SumSquares::add`] gives a gradient of `len`
/// elements: one per 2,048 elements (16 per thread), at least 1 and at most 128. Each thread
/// writes one partial sum: BERT-base's gradients take ~1.2 M of them (4.6 MiB), summed once by
/// [`SumSquares::norm`].
fn norm_cubes(len: usize) -> usize {
    len.div_ceil(2048).clamp(1, 128)
}

/// The partial sums a gradient of `len` elements writes: one per thread.
fn norm_slots(len: usize) -> usize {
    norm_cubes(len) * NORM_CUBE_DIM
}

/// The global gradient norm `√Σ g²` over many gradients in one kernel launch each: every
/// gradient's partial sums go into one f32 buffer, summed once at the end ([`Self::norm`]),
/// where the composed form records a square, a sum and an addition per gradient.
pub struct SumSquares {
    /// Moved into each launch (`Option::take`), so that the kernel owns the buffer and writes it
    /// in place: a clone alive during the launch would make it copy the whole buffer first.
    partials: Option<Tensor<1>>,
    offset: usize,
}

impl SumSquares {
    /// Room for the partial sums of gradients of these element counts (in any order), on
    /// `device` (a CubeCL one: see [`applies`]).
    pub fn new(lens: impl IntoIterator<Item = usize>, device: &burn::tensor::Device) -> Self {
        let total: usize = lens.into_iter().map(norm_slots).sum();
        Self {
            partials: Some(Tensor::empty([total.max(1)], (device, DType::F32))),
            offset: 0,
        }
    }

    /// Adds `grad`'s squares (a float tensor on the device of [`Self::new`]).
    pub fn add<const D: usize>(&mut self, grad: Tensor<D>) {
        let len = grad.shape().num_elements();
        let cubes = norm_cubes(len);
        #[cfg(cube)]
        {
            use burn::backend::Dispatch;
            let partials = self.partials.take().expect("SumSquares holds its buffer");
            self.partials = Some(Tensor::from_dispatch(
                <Dispatch as kernels::CubeFused>::sum_squares_into(
                    partials.into_dispatch(),
                    grad.into_dispatch(),
                    self.offset,
                    cubes,
                ),
            ));
        }
        self.offset += norm_slots(len);
        #[cfg(not(cube))]
        unreachable!("cube_kernels::SumSquares without a CubeCL backend compiled in: see `applies`")
    }

    /// `√Σ g²` over the gradients added, `[1]` in `dtype`, on the device (nothing is read).
    pub fn norm(self, dtype: DType) -> Tensor<1> {
        let (written, partials) = (
            self.offset,
            self.partials.expect("SumSquares holds its buffer"),
        );
        assert!(
            written <= partials.dims()[0],
            "SumSquares: more gradients added than room was made for"
        );
        let sum = match written {
            0 => Tensor::zeros([1], (&partials.device(), DType::F32)),
            n => partials.slice(0..n).sum(),
        };
        sum.sqrt().cast(dtype)
    }
}

/// Whether the model's LayerNorm, softmax, GELU, dropout and cross-entropy use this module's
/// kernels on the CubeCL backends (on by default): off, they are composed from Burn's tensor
/// ops as on any backend (dropout's masks then drawn by the device's generator), for
/// before/after comparisons in one process (`benches run --composed-layers`).
static LAYER_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns the LayerNorm, softmax, GELU, dropout and cross-entropy kernels on or off for the
/// whole process (see [`applies_rows`], [`applies_dropout`]); the optimizer's are
/// `AdamW::composed`'s to turn off.
/// Dropout then draws from the device's generator, not the host stream's keys: switch it
/// between runs, not within one whose masks should replay.
pub fn set_layer_kernels(on: bool) {
    LAYER_KERNELS.store(on, Ordering::Relaxed);
}

/// `BERT_CUBE_KERNELS=off` (or `0`) turns every kernel of this module off, the optimizer's
/// included: the composed forms then run, as before these kernels existed. An escape hatch for
/// a runtime whose compiler rejects one of them; read once.
fn kernels_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        !matches!(
            std::env::var("BERT_CUBE_KERNELS").as_deref(),
            Ok("off" | "0" | "false")
        )
    })
}

/// Whether [`adamw_step`] runs on `x`: a float parameter of f32, f16 or bf16 on a CubeCL
/// device (`cuda`, `wgpu`, `vulkan`, `cpu`), without autodiff (the optimizer's tensors are the
/// inner device's).
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(cube)]
    {
        kernels_allowed()
            && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
            && !x.device().is_autodiff()
            && matches!(
                x.device().as_dispatch(),
                burn::backend::DispatchDevice::Cube(_)
            )
    }
    #[cfg(not(cube))]
    false
}

/// One AdamW step on a CubeCL parameter (see [`applies`]; the moments and the gradient of its
/// shape and type): `p ← p·(1 - decay)`, `m ← m + (1-β1)(g - m)` (torch's `lerp_`),
/// `v ← β2·v + (1-β2)·g²`, `p ← p - step_size · m / (√v / √(1-β2ᵗ) + ε)`, after `g ← g·clip`,
/// in one kernel launch. Returns the parameter and the moments.
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    exp_avg: Tensor<D>,
    exp_avg_sq: Tensor<D>,
    clip: Option<Tensor<1>>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let shape = param.shape();
    for (what, t) in [
        ("gradient", &grad),
        ("exp_avg", &exp_avg),
        ("exp_avg_sq", &exp_avg_sq),
    ] {
        assert!(
            t.shape() == shape && t.dtype() == param.dtype(),
            "adamw_step: the {what} is {:?} {:?}, the parameter {:?} {:?}",
            t.dtype(),
            t.shape(),
            param.dtype(),
            shape
        );
    }
    let clip = match clip {
        Some(c) => c.cast(param.dtype()),
        None => Tensor::<1>::ones([1], &param.device()).cast(param.dtype()),
    };
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        let (p, m, v) = <Dispatch as kernels::CubeFused>::adamw_update(
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
    #[cfg(not(cube))]
    unreachable!("cube_kernels::adamw_step without a CubeCL backend compiled in: see `applies`")
}

/// Whether [`layer_norm`], [`add_layer_norm`], [`softmax_last`], [`attention_softmax`], [`gelu`]
/// and [`log_softmax_pick`] run on `x`: f32 on a CubeCL device
/// (`cuda`, `wgpu`, `vulkan`, `cpu`), recording gradients or not, with [`set_layer_kernels`] on
/// (the default).
pub fn applies_rows<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(cube)]
    {
        LAYER_KERNELS.load(Ordering::Relaxed)
            && kernels_allowed()
            && x.dtype() == DType::F32
            && matches!(
                x.device().inner().as_dispatch(),
                burn::backend::DispatchDevice::Cube(_)
            )
    }
    #[cfg(not(cube))]
    false
}

/// LayerNorm over the last dimension of a CubeCL f32 tensor (see [`applies_rows`]),
/// differentiable in `x`, `weight` and `bias` (f32, `[h]`): one kernel forward (a cube's
/// threads per row, the mean and the centred variance reduced in shared memory), and backward
/// one for the input's gradient and one for the weight's and bias's partial sums over chunks of
/// rows. Composed, Burn 0.22 records nine ops forward and about fifteen backward.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    let h = x.dims()[D - 1];
    for (what, t) in [("weight", &weight), ("bias", &bias)] {
        assert!(
            t.dims() == [h] && t.dtype() == DType::F32,
            "layer_norm: the {what} is {:?} {:?}, the input's last dimension {h} (f32)",
            t.dtype(),
            t.dims()
        );
    }
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        let (y, _stats) = <Dispatch as kernels::CubeFused>::layer_norm_last(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            eps,
        );
        Tensor::from_dispatch(y)
    }
    #[cfg(not(cube))]
    unreachable!(
        "cube_kernels::layer_norm without a CubeCL backend compiled in: see `applies_rows`"
    )
}

/// LayerNorm of `dropout(x) + residual` over the last dimension of CubeCL f32 tensors of one
/// shape (see [`applies_rows`]; `draw`: dropout's mask on `x`, as [`dropout`] makes it, or none),
/// differentiable in all four: BERT's `LayerNorm(dropout(dense(h)) + input)` after attention
/// and after the feed-forward block. One kernel forward; backward [`layer_norm`]'s two, and
/// the dropout kernel on the gradient for `x`. Composed from this module's kernels it records
/// three ops each way, and the same numbers bit for bit.
pub fn add_layer_norm<const D: usize>(
    x: Tensor<D>,
    residual: Tensor<D>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
    draw: Option<crate::dropout::HostDraw>,
) -> Tensor<D> {
    let h = x.dims()[D - 1];
    for (what, t) in [("weight", &weight), ("bias", &bias)] {
        assert!(
            t.dims() == [h] && t.dtype() == DType::F32,
            "add_layer_norm: the {what} is {:?} {:?}, the input's last dimension {h} (f32)",
            t.dtype(),
            t.dims()
        );
    }
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        let (y, _z, _stats) = <Dispatch as kernels::CubeFused>::add_layer_norm_last(
            x.into_dispatch(),
            residual.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            eps,
            draw,
        );
        Tensor::from_dispatch(y)
    }
    #[cfg(not(cube))]
    unreachable!(
        "cube_kernels::add_layer_norm without a CubeCL backend compiled in: see `applies_rows`"
    )
}

/// Softmax over the last dimension of a CubeCL f32 tensor (see [`applies_rows`]),
/// differentiable: one kernel each way (composed: five ops forward, about six backward).
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as kernels::CubeFused>::softmax_last(
            x.into_dispatch(),
        ))
    }
    #[cfg(not(cube))]
    unreachable!(
        "cube_kernels::softmax_last without a CubeCL backend compiled in: see `applies_rows`"
    )
}

/// Attention's probabilities on CubeCL f32 scores `[b, heads, q, k]` (see [`applies_rows`]):
/// `dropout(softmax(scores / divisor + mask))`, HF's eager attention between its two products,
/// differentiable in the scores. `mask`: additive, f32, broadcastable to the scores with a
/// column per key or one (none: no mask), never differentiated; `draw`: dropout's mask, as
/// [`dropout`] makes it, or none. One row kernel forward (the row's max and sum reduced by its
/// threads, the probabilities kept for the backward and, with dropout, the dropped ones
/// written beside them) and one backward (the gradient through the mask, the softmax's and
/// the division's); composed from this module's kernels: a division, the mask's addition, the
/// softmax and the dropout each way but the addition's, and the same numbers bit for bit.
pub fn attention_softmax(
    scores: Tensor<4>,
    mask: Option<Tensor<4>>,
    divisor: f64,
    draw: Option<crate::dropout::HostDraw>,
) -> Tensor<4> {
    let dims = scores.dims();
    let mask = mask.unwrap_or_else(|| Tensor::zeros([1, 1, 1, 1], (&scores.device(), DType::F32)));
    let m = mask.dims();
    assert!(
        mask.dtype() == DType::F32 && (0..4).all(|d| m[d] == 1 || m[d] == dims[d]),
        "attention_softmax: a mask {:?} {m:?} for scores {dims:?}",
        mask.dtype()
    );
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        let (x, mask) = (scores.into_dispatch(), mask.into_dispatch());
        let divisor = divisor as f32;
        Tensor::from_dispatch(match draw {
            Some(draw) => {
                <Dispatch as kernels::CubeFused>::attention_softmax_dropout(x, mask, divisor, draw)
                    .0
            }
            None => <Dispatch as kernels::CubeFused>::attention_softmax(x, mask, divisor),
        })
    }
    #[cfg(not(cube))]
    unreachable!(
        "cube_kernels::attention_softmax without a CubeCL backend compiled in: see `applies_rows`"
    )
}

/// Exact GELU of a CubeCL f32 tensor (see [`applies_rows`]), differentiable: one element-wise
/// kernel each way, the derivative `Φ(x) + x·φ(x)` exact (composed: five ops forward and about
/// ten backward; Burn's own `gelu` backward is off by up to 8.7e-4 on wgpu).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as kernels::CubeFused>::gelu_erf(
            x.into_dispatch(),
        ))
    }
    #[cfg(not(cube))]
    unreachable!("cube_kernels::gelu without a CubeCL backend compiled in: see `applies_rows`")
}

/// Cross-entropy's log-probabilities on a CubeCL f32 tensor (see [`applies_rows`]):
/// `log_softmax(logits, 1)` picked at `labels` (`[n, classes]`, `[n]` in `0..classes`),
/// differentiable in the logits. One row kernel each way (the row's max and `log Σ exp`
/// reduced by its threads, the pick; backward `grad·(onehot - softmax)` written once), where
/// the composed form records the log-softmax's five ops, a gather, and backward a scatter into
/// a zero tensor of the logits' size and the log-softmax's backward: over BERT's 30,522-word
/// vocabulary each is a pass over the MLM logits.
pub fn log_softmax_pick(logits: Tensor<2>, labels: Tensor<1, burn::tensor::Int>) -> Tensor<1> {
    assert_eq!(
        labels.dims()[0],
        logits.dims()[0],
        "log_softmax_pick: one label a row"
    );
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as kernels::CubeFused>::log_softmax_pick(
            logits.into_dispatch(),
            labels.into_dispatch(),
        ))
    }
    #[cfg(not(cube))]
    unreachable!(
        "cube_kernels::log_softmax_pick without a CubeCL backend compiled in: see `applies_rows`"
    )
}

/// Whether [`dropout`] runs on `device`: a CubeCL one, with [`set_layer_kernels`] on. Then
/// dropout's masks come from this thread's host stream of keys (`crate::dropout`), as on flex
/// and ndarray, not from the device's generator.
pub fn applies_dropout(device: &burn::tensor::Device) -> bool {
    #[cfg(cube)]
    {
        LAYER_KERNELS.load(Ordering::Relaxed)
            && kernels_allowed()
            && matches!(
                device.clone().inner().as_dispatch(),
                burn::backend::DispatchDevice::Cube(_)
            )
    }
    #[cfg(not(cube))]
    false
}

/// Dropout with `draw`'s mask on a CubeCL tensor of any float type (see [`applies_dropout`]),
/// differentiable: one kernel forward, and the same mask on the gradient backward, drawn again
/// from `draw` (no mask tensor is kept). Composed, the device draws a Bernoulli tensor and
/// records two products, keeping the mask for the backward.
pub fn dropout<const D: usize>(x: Tensor<D>, draw: crate::dropout::HostDraw) -> Tensor<D> {
    #[cfg(cube)]
    {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as kernels::CubeFused>::dropout_mask(
            x.into_dispatch(),
            draw,
        ))
    }
    #[cfg(not(cube))]
    unreachable!(
        "cube_kernels::dropout without a CubeCL backend compiled in: see `applies_dropout`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// The backend under test (`BERT_TEST_BACKEND`) without autodiff, if it is a CubeCL one.
    fn cube_test_device() -> Option<Device> {
        let d = crate::backend::test_device().inner();
        let cube = applies(&Tensor::<1>::zeros([1], &d));
        if !cube {
            eprintln!("not a CubeCL device: {d:?}");
        }
        cube.then_some(d)
    }

    /// The CubeCL AdamW step against torch's arithmetic done in f64 on the host, two steps with
    /// clipping and weight decay, on the backend under test (`BERT_TEST_BACKEND`; CI runs it on
    /// `wgpu` and `cpu`): element counts that take the widest vector and none, a gradient read
    /// through transposed strides, and a parameter buffer something else holds left as it was.
    #[test]
    fn cube_adamw_matches_torchs_arithmetic_and_leaves_shared_buffers_alone() {
        let Some(d) = cube_test_device() else {
            return;
        };
        use crate::cpu_kernels::adamw_reference as r;
        // [rows, cols]: 64 × 160 takes 4-wide vectors, 17 × 59 single elements.
        for (rows, cols) in [(64, 160), (17, 59)] {
            let n = rows * cols;
            // The gradients in row-major [rows, cols] order.
            let (init, grads) = (r::init(n), r::grads(n));
            let want = r::run(&init, &grads);
            let t =
                |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, cols]), &d);
            // Each gradient stored [cols, rows] and read transposed: non-contiguous strides.
            let transposed = |g: &[f32]| {
                let mut tr = vec![0f32; n];
                for row in 0..rows {
                    for col in 0..cols {
                        tr[col * rows + row] = g[row * cols + col];
                    }
                }
                Tensor::<2>::from_data(TensorData::new(tr, [cols, rows]), &d).transpose()
            };
            let zeros = vec![0.0; n];
            let (first, mut m1, mut v1) = (t(&init), t(&zeros), t(&zeros));
            let mut p1 = first.clone(); // shared: the first step must copy it
            for (k, g) in grads.iter().enumerate() {
                let clip = Tensor::<1>::from_floats([r::CLIP], &d);
                let g = if k == 0 { transposed(g) } else { t(g) };
                (p1, m1, v1) = adamw_step(p1, g, m1, v1, Some(clip), r::step(k as i32 + 1));
            }
            let host = |x: Tensor<2>| x.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            assert_eq!(
                host(first),
                init,
                "a shared parameter buffer was overwritten"
            );
            let got = [host(p1), host(m1), host(v1)];
            r::assert_close(&format!("{rows}×{cols}"), got, &want);
        }
    }

    /// [`SumSquares`] against the norm in f64 on the host, over gradients that take one cube,
    /// several and the most (the last: 128 cubes over 1.3 M elements, ~80 per thread) and one
    /// read through transposed strides.
    #[test]
    fn cube_sum_squares_matches_the_norm_in_f64() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 31 + seed * 17) % 97) as f32 - 48.0) / 25.0)
                .collect()
        };
        let lens = [3, 1000, 64 * 160, 1_300_000];
        let mut want = 0f64;
        let mut sums = SumSquares::new(lens, &d);
        for (k, &n) in lens.iter().enumerate() {
            let v = values(n, k);
            want += v.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
            if n == 64 * 160 {
                let t = Tensor::<2>::from_data(TensorData::new(v, [160, 64]), &d);
                sums.add(t.transpose());
            } else {
                sums.add(Tensor::<1>::from_data(TensorData::new(v, [n]), &d));
            }
        }
        let got = sums.norm(DType::F32).into_scalar::<f32>() as f64;
        let want = want.sqrt();
        // f32 sums of 1.3 M squares in an order the backend's reduction picks (autotuned): a
        // few 1e-6 apart from run to run.
        assert!(
            ((got - want) / want).abs() < 1e-5,
            "norm {got} vs {want} in f64"
        );
    }

    /// Deterministic values in [-1.9, 1.9] for the row kernels' tests.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 26.0)
            .collect()
    }

    /// `got` within `tol·(1 + |want|)` of `want`, element by element.
    fn assert_near(what: &str, got: Tensor<2>, want: &[f64], tol: f64) {
        let got = got
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w} in f64"
            );
        }
    }

    /// `[rows, cols]` on `d`, optionally stored `[cols, rows]` and read transposed.
    fn matrix(v: Vec<f32>, rows: usize, cols: usize, transposed: bool, d: &Device) -> Tensor<2> {
        if !transposed {
            return Tensor::from_data(TensorData::new(v, [rows, cols]), d);
        }
        let mut tr = vec![0f32; v.len()];
        for r in 0..rows {
            for c in 0..cols {
                tr[c * rows + r] = v[r * cols + c];
            }
        }
        Tensor::<2>::from_data(TensorData::new(tr, [cols, rows]), d).transpose()
    }

    /// `op` of `x` (`[rows, cols]`, stored transposed or not) on the autodiff device `ad`: its
    /// output and the gradient of `Σ op(x)·r` within `tol` of `want` (f64).
    fn check_unary(
        op: fn(Tensor<2>) -> Tensor<2>,
        (rows, cols, transposed): (usize, usize, bool),
        (x, r): (Vec<f32>, Vec<f32>),
        (y, dx): (&[f64], &[f64]),
        tol: f64,
        ad: &Device,
    ) {
        let xt = matrix(x, rows, cols, transposed, ad).require_grad();
        let out = op(xt.clone());
        let grads = (out.clone() * matrix(r, rows, cols, false, ad))
            .sum()
            .backward();
        let case = format!("{rows}×{cols}");
        assert_near(&format!("{case} y"), out.inner(), y, tol);
        let dx_got = xt.grad(&grads).expect("x's gradient");
        assert_near(&format!("{case} dx"), dx_got, dx, tol);
    }

    /// [`layer_norm`] forward and backward (the input's, weight's and bias's gradients of
    /// `Σ y·r`) against the same in f64 on the host, on the backend under test: rows shorter
    /// and longer than a cube's threads (37, 768), more rows than a cube holds with a
    /// remainder, and an input read through transposed strides.
    #[test]
    fn cube_layer_norm_matches_f64_forward_and_backward() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.autodiff();
        let eps = 1e-12;
        for (rows, h, transposed) in [(5, 37, false), (300, 768, false), (70, 128, true)] {
            let (x, r) = (values(rows * h, 1), values(rows * h, 2));
            let (w, b) = (values(h, 3), values(h, 4));
            // f64 on the host.
            let (mut y, mut dx) = (vec![0f64; rows * h], vec![0f64; rows * h]);
            let (mut dw, mut db) = (vec![0f64; h], vec![0f64; h]);
            for row in 0..rows {
                let xs: Vec<f64> = x[row * h..][..h].iter().map(|&v| v as f64).collect();
                let mean = xs.iter().sum::<f64>() / h as f64;
                let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
                let rstd = 1.0 / (var + eps).sqrt();
                let xhat: Vec<f64> = xs.iter().map(|v| (v - mean) * rstd).collect();
                let gw: Vec<f64> = (0..h)
                    .map(|j| r[row * h + j] as f64 * w[j] as f64)
                    .collect();
                let mean_g = gw.iter().sum::<f64>() / h as f64;
                let mean_gx = (0..h).map(|j| gw[j] * xhat[j]).sum::<f64>() / h as f64;
                for j in 0..h {
                    y[row * h + j] = xhat[j] * w[j] as f64 + b[j] as f64;
                    dx[row * h + j] = rstd * (gw[j] - mean_g - xhat[j] * mean_gx);
                    dw[j] += r[row * h + j] as f64 * xhat[j];
                    db[j] += r[row * h + j] as f64;
                }
            }
            let xt = matrix(x, rows, h, transposed, &ad).require_grad();
            let wt = Tensor::<1>::from_data(TensorData::new(w, [h]), &ad).require_grad();
            let bt = Tensor::<1>::from_data(TensorData::new(b, [h]), &ad).require_grad();
            let out = layer_norm(xt.clone(), wt.clone(), bt.clone(), eps);
            let grads = (out.clone() * matrix(r, rows, h, false, &ad))
                .sum()
                .backward();
            let case = format!("{rows}×{h}");
            assert_near(&format!("{case} y"), out.inner(), &y, 2e-5);
            let dx_got = xt.grad(&grads).expect("x's gradient");
            assert_near(&format!("{case} dx"), dx_got, &dx, 2e-5);
            let row = |t: Tensor<1>| t.unsqueeze::<2>();
            let dw_got = row(wt.grad(&grads).expect("weight's gradient"));
            assert_near(&format!("{case} dweight"), dw_got, &dw, 2e-5);
            let db_got = row(bt.grad(&grads).expect("bias's gradient"));
            assert_near(&format!("{case} dbias"), db_got, &db, 2e-5);
        }
    }

    /// [`add_layer_norm`] against this module's kernels composed, `layer_norm` of
    /// `dropout(x, draw)` plus the residual, with dropout and without: the output and the
    /// gradients of `Σ y·g` for the input, the residual, the weight and the bias, bit for bit
    /// (the same operations on the same values); rows shorter and longer than a cube, an input
    /// read transposed.
    #[test]
    fn cube_add_layer_norm_is_the_composed_kernels_bit_for_bit() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.autodiff();
        let eps = 1e-12;
        let draw = crate::dropout::HostDraw {
            key: 0x0123_4567_89ab_cdef,
            threshold: (0.9 * 4_294_967_296.0) as u32,
            scale_bits: (1.0f32 / 0.9).to_bits(),
        };
        let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for (rows, h, transposed) in [(300, 768, false), (5, 37, true)] {
            for draw in [Some(draw), None] {
                let run = |fused: bool| {
                    let x = matrix(values(rows * h, 13), rows, h, transposed, &ad).require_grad();
                    let r = matrix(values(rows * h, 14), rows, h, false, &ad).require_grad();
                    let w = Tensor::<1>::from_data(TensorData::new(values(h, 15), [h]), &ad)
                        .require_grad();
                    let b = Tensor::<1>::from_data(TensorData::new(values(h, 16), [h]), &ad)
                        .require_grad();
                    let y = if fused {
                        add_layer_norm(x.clone(), r.clone(), w.clone(), b.clone(), eps, draw)
                    } else {
                        let dropped = match draw {
                            Some(draw) => dropout(x.clone(), draw),
                            None => x.clone(),
                        };
                        layer_norm(dropped + r.clone(), w.clone(), b.clone(), eps)
                    };
                    let g = matrix(values(rows * h, 17), rows, h, false, &ad);
                    let grads = (y.clone() * g).sum().backward();
                    let row = |t: Tensor<1>| t.unsqueeze::<2>();
                    [
                        host(y.inner()),
                        host(x.grad(&grads).expect("x's gradient")),
                        host(r.grad(&grads).expect("the residual's gradient")),
                        host(row(w.grad(&grads).expect("the weight's gradient"))),
                        host(row(b.grad(&grads).expect("the bias's gradient"))),
                    ]
                };
                let (fused, composed) = (run(true), run(false));
                let what = ["y", "dx", "dresidual", "dweight", "dbias"];
                for ((f, c), what) in fused.iter().zip(&composed).zip(what) {
                    assert!(
                        f == c,
                        "{rows}×{h}, dropout {}: {what} differs from the composed kernels'",
                        draw.is_some()
                    );
                }
                if draw.is_some() {
                    let dropped = fused[1].iter().filter(|&&v| v == 0.0).count();
                    assert!(dropped > 0, "{rows}×{h}: dropout dropped nothing");
                }
            }
        }
    }

    /// [`softmax_last`] forward and backward (the gradient of `Σ y·r`) against the same in f64
    /// on the host: rows of 37 and 512, a row with scores at HF's f32 mask minimum, and an
    /// input read through transposed strides.
    #[test]
    fn cube_softmax_matches_f64_forward_and_backward() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.autodiff();
        for (rows, k, transposed) in [(3, 37, false), (130, 512, false), (70, 128, true)] {
            let mut x = values(rows * k, 5);
            // Masked keys, as BERT's extended attention mask makes them.
            for v in &mut x[k / 2..k] {
                *v += f32::MIN;
            }
            let r = values(rows * k, 6);
            let (mut y, mut dx) = (vec![0f64; rows * k], vec![0f64; rows * k]);
            for row in 0..rows {
                let xs: Vec<f64> = x[row * k..][..k].iter().map(|&v| v as f64).collect();
                let max = xs.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = xs.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let ys: Vec<f64> = e.iter().map(|v| v / sum).collect();
                let dot: f64 = (0..k).map(|j| ys[j] * r[row * k + j] as f64).sum();
                for j in 0..k {
                    y[row * k + j] = ys[j];
                    dx[row * k + j] = ys[j] * (r[row * k + j] as f64 - dot);
                }
            }
            let shape = (rows, k, transposed);
            check_unary(softmax_last, shape, (x, r), (&y, &dx), 1e-6, &ad);
        }
    }

    /// [`attention_softmax`] against the composed kernels it replaces,
    /// `dropout(softmax_last(x / divisor + mask))`: the output and the scores' gradient equal
    /// bit for bit, with and without dropout, for masks per batch and query (BERT's), per
    /// batch, per head and query, one for all, a mask of one column, none, and scores read
    /// through transposed strides.
    #[test]
    fn cube_attention_softmax_is_the_composed_kernels_bit_for_bit() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.autodiff();
        let draw = crate::dropout::HostDraw {
            key: 0x0fed_cba9_8765_4321,
            threshold: (0.9 * 4_294_967_296.0) as u32,
            scale_bits: (1.0f32 / 0.9).to_bits(),
        };
        let host = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let tensor4 =
            |v: Vec<f32>, dims: [usize; 4]| Tensor::<4>::from_data(TensorData::new(v, dims), &ad);
        // (scores, mask or none, scores transposed)
        type Case = ([usize; 4], Option<[usize; 4]>, bool);
        let cases: [Case; 7] = [
            ([2, 3, 70, 70], Some([2, 1, 70, 70]), false),
            ([2, 4, 7, 30], Some([2, 1, 1, 30]), false),
            ([2, 3, 20, 20], Some([2, 3, 20, 20]), false),
            ([3, 2, 9, 12], Some([1, 1, 1, 12]), false),
            ([2, 2, 5, 16], Some([2, 1, 5, 1]), false),
            ([2, 2, 65, 65], None, false),
            ([2, 2, 33, 40], Some([2, 1, 1, 40]), true),
        ];
        for (dims, mask_dims, transposed) in cases {
            let n: usize = dims.iter().product();
            let mask = mask_dims.map(|m| {
                let len: usize = m.iter().product();
                // Masked keys at f32's minimum, as BERT's extended mask has them, in a pattern
                // that differs from batch to batch, head to head and query to query.
                let v: Vec<f32> = (0..len)
                    .map(|i| match (i * 7 + i / m[3]) % 5 == 0 || i % 11 == 3 {
                        true => f32::MIN,
                        false => 0.0,
                    })
                    .collect();
                tensor4(v, m)
            });
            let mut zeros = Vec::new();
            for draw in [Some(draw), None] {
                let run = |fused: bool| {
                    let v: Vec<f32> = values(n, 21).iter().map(|v| v * 4.0).collect();
                    let [b, h, q, k] = dims;
                    let x = match transposed {
                        true => tensor4(v, [b, h, k, q]).swap_dims(2, 3),
                        false => tensor4(v, dims),
                    }
                    .require_grad();
                    let divisor = 8f64.sqrt();
                    let y = if fused {
                        attention_softmax(x.clone(), mask.clone(), divisor, draw)
                    } else {
                        let mut s = x.clone() / divisor;
                        if let Some(m) = mask.clone() {
                            s = s + m;
                        }
                        let p = softmax_last(s);
                        match draw {
                            Some(draw) => dropout(p, draw),
                            None => p,
                        }
                    };
                    let g = tensor4(values(n, 22), dims);
                    let grads = (y.clone() * g).sum().backward();
                    [
                        host(y.inner()),
                        host(x.grad(&grads).expect("the scores' gradient")),
                    ]
                };
                let (fused, composed) = (run(true), run(false));
                for ((f, c), what) in fused.iter().zip(&composed).zip(["y", "dx"]) {
                    let differ = f.iter().zip(c).filter(|(a, b)| a.to_bits() != b.to_bits());
                    assert_eq!(
                        differ.count(),
                        0,
                        "{dims:?}, mask {mask_dims:?}, dropout {}: {what} differs from the composed kernels'",
                        draw.is_some()
                    );
                }
                zeros.push(fused[0].iter().filter(|&&v| v == 0.0).count());
            }
            assert!(zeros[0] > zeros[1], "{dims:?}: dropout dropped nothing");
        }
    }

    /// [`gelu`] forward and backward (the gradient of `Σ y·r`) against `x·Φ(x)` and
    /// `Φ(x) + x·φ(x)` in f64 (erf by its Taylor series in f64: ~1e-9 here): a length the widest
    /// vector divides, one it does not, and an input read through transposed strides.
    #[test]
    fn cube_gelu_matches_f64_forward_and_backward() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.autodiff();
        for (rows, cols, transposed) in [(64, 96, false), (7, 13, false), (40, 24, true)] {
            // Values in [-5.7, 5.7]: the tails where Φ saturates included.
            let x: Vec<f32> = values(rows * cols, 7).iter().map(|v| v * 3.0).collect();
            let r = values(rows * cols, 8);
            let phi = |v: f64| 0.5 * (1.0 + erf_f64(v / std::f64::consts::SQRT_2));
            let pdf = |v: f64| (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let y: Vec<f64> = x.iter().map(|&v| v as f64 * phi(v as f64)).collect();
            let dx: Vec<f64> = x
                .iter()
                .zip(&r)
                .map(|(&v, &g)| g as f64 * (phi(v as f64) + v as f64 * pdf(v as f64)))
                .collect();
            let shape = (rows, cols, transposed);
            check_unary(gelu, shape, (x, r), (&y, &dx), 1e-6, &ad);
        }
    }

    /// [`log_softmax_pick`] forward and backward (the logits' gradient of `Σ picked·r`) against
    /// the same in f64 on the host: rows of 37, of BERT's vocabulary (30,522: a row of 256
    /// threads on a GPU, one on the CubeCL CPU runtime) and logits read through transposed
    /// strides; and NaN, not a stray read, for a label outside the row.
    #[test]
    fn cube_log_softmax_pick_matches_f64_forward_and_backward() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.clone().autodiff();
        for (rows, k, transposed) in [(5, 37, false), (70, 30_522, false), (40, 128, true)] {
            let x: Vec<f32> = values(rows * k, 10).iter().map(|v| v * 4.0).collect();
            let labels: Vec<i64> = (0..rows).map(|i| ((i * 7919 + 3) % k) as i64).collect();
            let r = values(rows, 11);
            let (mut y, mut dx) = (vec![0f64; rows], vec![0f64; rows * k]);
            for row in 0..rows {
                let xs: Vec<f64> = x[row * k..][..k].iter().map(|&v| v as f64).collect();
                let max = xs.iter().cloned().fold(f64::MIN, f64::max);
                let shift = max + xs.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                let label = labels[row] as usize;
                y[row] = xs[label] - shift;
                for j in 0..k {
                    let onehot = if j == label { 1.0 } else { 0.0 };
                    dx[row * k + j] = r[row] as f64 * (onehot - (xs[j] - shift).exp());
                }
            }
            let xt = matrix(x, rows, k, transposed, &ad).require_grad();
            let lt =
                Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(labels, [rows]), &ad);
            let out = log_softmax_pick(xt.clone(), lt);
            let rt = Tensor::<1>::from_data(TensorData::new(r, [rows]), &ad);
            let grads = (out.clone() * rt).sum().backward();
            let case = format!("{rows}×{k}");
            assert_near(&format!("{case} y"), out.inner().unsqueeze(), &y, 1e-6);
            let dx_got = xt.grad(&grads).expect("logits' gradient");
            assert_near(&format!("{case} dx"), dx_got, &dx, 1e-6);
        }
        let x = Tensor::<2>::from_data(TensorData::new(values(3 * 37, 12), [3, 37]), &d);
        let labels =
            Tensor::<1, burn::tensor::Int>::from_data(TensorData::from([36i64, 37, -1]), &d);
        let got = log_softmax_pick(x, labels)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            got[0].is_finite() && got[1].is_nan() && got[2].is_nan(),
            "labels 36, 37 and -1 of 37 classes: {got:?}"
        );
    }

    /// erf by its Taylor series, `2/√π · Σ (-1)ⁿ x²ⁿ⁺¹ / (n!(2n+1))`: for |x| ≤ 4.1 the terms
    /// peak near e^(x²) ≈ 2e7, so ~1e-9 of f64's precision survives the cancellation.
    fn erf_f64(x: f64) -> f64 {
        assert!(x.abs() <= 4.1, "erf_f64 is for |x| <= 4.1");
        let (mut term, mut sum) = (x, x);
        for n in 1..400 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// [`dropout`] on the backend under test: the rate (binomial over 2²⁰ elements, 10 σ ≈
    /// 0.003), the scale, neighbours independent, the same mask for the same draw and another
    /// for another key (its high half too), and the backward: the gradient of `Σ y·r` is `r`
    /// times the mask, bit for bit.
    #[test]
    fn cube_dropout_keeps_its_rate_and_its_backward_is_its_mask() {
        let Some(d) = cube_test_device() else {
            return;
        };
        let ad = d.clone().autodiff();
        let keep = 0.9;
        let scale = (1.0 / keep) as f32;
        let draw = |key: u64| crate::dropout::HostDraw {
            key,
            threshold: (keep * 4_294_967_296.0) as u32,
            scale_bits: scale.to_bits(),
        };
        let (rows, cols) = (1024, 1024);
        let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let x = Tensor::<2>::ones([rows, cols], &ad).require_grad();
        let r = values(rows * cols, 9);
        let y = dropout(x.clone(), draw(42));
        let grads = (y.clone() * matrix(r.clone(), rows, cols, false, &ad))
            .sum()
            .backward();
        let m = host(y.inner());
        assert!(
            m.iter().all(|&v| v == 0.0 || v == scale),
            "values other than 0 and 1/keep"
        );
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / m.len() as f64;
        assert!((kept - keep).abs() < 0.003, "kept {kept}");
        let both = m.chunks(2).filter(|p| p[0] != 0.0 && p[1] != 0.0).count() as f64
            / (m.len() / 2) as f64;
        assert!(
            (both - keep * keep).abs() < 0.004,
            "neighbours both kept {both}"
        );
        let dx = host(x.grad(&grads).expect("x's gradient"));
        let want: Vec<f32> = r
            .iter()
            .zip(&m)
            .map(|(&g, &v)| if v != 0.0 { g * scale } else { 0.0 })
            .collect();
        assert!(
            dx == want,
            "the backward is not the forward's mask on the gradient"
        );
        let ones = Tensor::<2>::ones([rows, cols], &d);
        let again = |key| host(dropout(ones.clone(), draw(key)));
        assert!(again(42) == m, "the same draw gave another mask");
        assert!(again(43) != m, "another key gave the same mask");
        assert!(
            again(42 + (1 << 32)) != m,
            "the key's high half is not used"
        );
    }
}
