//! What libtorch has fused that Burn's tch backend does not reach, through Burn's
//! `#[backend_extension]` on `LibTorch` (`tch` and `tch-cuda`) and its autodiff wrapper.
//!
//! Attention ([`attention`]): HF's BERT runs `torch.nn.functional.scaled_dot_product_attention`
//! by default (transformers 4's `BertSdpaSelfAttention`, 5's `sdpa_attention_forward`), handing
//! it the additive float mask and, in training, the attention dropout. Composed through Burn it
//! is five libtorch ops with the `[b, heads, q, k]` scores made twice (and under autodiff kept
//! for the backward several times over); torch's SDPA picks a fused kernel (flash or
//! memory-efficient attention on CUDA, dropout included; a blocked flash kernel on the CPU
//! without dropout, its math form with it). Burn 0.22's own `module::attention` reaches the same
//! torch function on tch, but an additive bias sends it to Burn's composed fallback, it takes no
//! dropout and no autodiff, and the bool mask it passes on means "masked" in Burn and "attend"
//! in torch (burn-tch 0.22.1 `ops/module.rs`; the test
//! `burn_tch_attention_reads_the_bool_mask_inverted` shows it), so this module calls torch
//! itself.
//!
//! LayerNorm ([`layer_norm`]) and cross-entropy's log-probabilities ([`log_softmax_pick`]):
//! under autodiff Burn composes both from element-wise ops (about 25 libtorch ops for a
//! LayerNorm with its backward; for log-softmax several `[n, classes]` tensors, the MLM head's
//! `[b·s, vocab]`); torch has one kernel each way (`native_layer_norm` and its backward,
//! `_log_softmax` and `_log_softmax_backward_data`). Exact GELU needs nothing here: Burn's
//! `gelu` is torch's `gelu` and `gelu_backward` on libtorch (`activation::gelu_exact`).
//!
//! How training reaches torch's backward kernels for attention and LayerNorm, whose backward
//! torch's C API does not expose: the ops are *recorded by torch's autograd*
//! ([`TchFused::torch_op`] on an autodiff device). The forward runs on detached copies of the
//! inputs that require a gradient (the leaves; they share the inputs' memory), hands Burn the
//! output detached, and keeps the output still attached to torch's graph, with the leaves, as
//! the state of one Burn autodiff node ([`TchFused::torch_record`]). Burn's backward pass hands
//! that node the output's gradient `g` and torch's engine computes the leaves' gradients for it
//! ([`TchFused::torch_replay`]: `torch::autograd::grad(output, leaves, g)`, through
//! `csrc/torch_multi_tensor.cpp`; the tch crate's backward seeds the output with ones, which
//! cost a product `output · g` and its backward, two passes over the output, before). torch
//! keeps what its backward kernels need and frees it when the pass is done, as it does for
//! PyTorch; the node holds the inputs' storage, so Burn never updates them in place while the
//! graph lives. The log-softmax pick's backward is exposed, so it is a Burn node of its own.
//! Under `--gradient-checkpointing` (`crate::checkpoint`) a layer's forward pass records
//! nothing (its inputs are untracked: [`TchFused::torch_op`], no torch graph either) and its
//! recomputation in the backward pass records these nodes for that one layer.
//!
//! AdamW and clipping ([`FusedAdamWGroup`], [`global_norm`]): torch's multi-tensor kernels,
//! which the tch crate does not expose (`csrc/torch_multi_tensor.cpp`, compiled by `build.rs`
//! against the libtorch torch-sys links): `_foreach_norm` for `clip_grad_norm_`'s global norm and
//! `_fused_adamw_`, the step of `torch.optim.AdamW(fused=True)`, with the clipping factor as its
//! `grad_scale`. The whole optimizer phase is a handful of kernels for all parameters (on CUDA,
//! where the single-tensor form launched eleven per parameter and the norm three), and on the
//! CPU torch's vectorised fused loop (the optimizer phase of a tiny-BERT step 7.8 → 5.4 ms,
//! small 18.2 → 13.2 ms on a 2-core Xeon, vs the CPU backends' fused pass over libtorch's
//! memory before).
// Burn 0.22 deprecates tch in favour of the CubeCL backends; it is still one of this crate's.
#![cfg_attr(feature = "tch", allow(deprecated))]
#![cfg_attr(
    not(feature = "tch"),
    allow(dead_code, unused_variables, unused_imports)
)]

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Device, Int, Tensor};

use crate::cpu_kernels::UnaryBackward;
use crate::precision;

/// A libtorch op of three differentiable inputs (and one that takes no gradient) that
/// [`TchFused`] runs, plain or recorded by torch's autograd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TorchOp {
    /// `scaled_dot_product_attention(q, k, v, mask, dropout, scale)`: `q`
    /// `[b, heads, q_len, d]`, `k`, `v` `[b, heads, k_len, d]` and an additive mask
    /// broadcastable to `[b, heads, q_len, k_len]` in `q`'s type (passed to torch only when
    /// `masked`: torch's flash kernels take none).
    Sdpa {
        masked: bool,
        scale: f64,
        dropout: f64,
    },
    /// `layer_norm(x, [last dim], weight, bias, eps)`: `x`, `weight`, `bias` (the last two with
    /// `x`'s rank, `[1, …, 1, h]`); the fourth input unused.
    LayerNorm { eps: f64 },
    /// `linear(x, weight, bias)`, `x · weightᵀ + bias`: `x` `[n, in]`, `weight` `[out, in]` (the
    /// `nn.Linear` / tied-embedding layout), `bias` `[1, out]`; the fourth input unused. torch's
    /// backward gives the weight's gradient in the weight's own layout (Burn's matmul backward
    /// gives a transposed view of it for a transposed operand, which every later use copies).
    Linear,
}

#[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait TchFused: Backend {
    /// `op` on `a`, `b`, `c` and `d`, differentiable in the first three on an autodiff device.
    fn torch_op(
        op: TorchOp,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// [`TchFused::torch_op`] recorded by torch's autograd: the output, the output still
    /// attached to torch's graph and the graph's leaves (`a`, `b`, `c` as torch sees them), for
    /// [`TchFused::torch_replay`].
    #[allow(clippy::type_complexity)]
    fn torch_record(
        op: TorchOp,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
    /// The gradients of a recorded graph's leaves for its output's gradient `grad`.
    fn torch_replay(
        output: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `log_softmax(logits, -1)` (`[n, classes]`) picked at `labels` (`[n]`): the picks,
    /// `[n, 1]`, and the log-probabilities (what the backward reads, as torch's).
    fn log_softmax_pick(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// The logits' gradient from the log-probabilities, the picks' gradient and the labels:
    /// torch's `_log_softmax_backward_data` of the gradient scattered to the labels.
    fn log_softmax_pick_backward(
        log_probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self>;
}

#[cfg(feature = "tch")]
mod libtorch {
    use super::*;
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    /// `op` in torch.
    fn apply(
        op: TorchOp,
        a: &tch::Tensor,
        b: &tch::Tensor,
        c: &tch::Tensor,
        d: &tch::Tensor,
    ) -> tch::Tensor {
        match op {
            TorchOp::Sdpa {
                masked,
                scale,
                dropout,
            } => tch::Tensor::scaled_dot_product_attention(
                a,
                b,
                c,
                masked.then_some(d),
                dropout,
                false,
                scale,
                false,
            ),
            TorchOp::LayerNorm { eps } => {
                let last = *a.size().last().expect("LayerNorm of a scalar");
                let (w, b) = (b.reshape([last]), c.reshape([last]));
                a.layer_norm([last], Some(&w), Some(&b), eps, true)
            }
            TorchOp::Linear => a.linear(b, Some(&c.reshape([-1]))),
        }
    }

    /// A leaf of torch's graph for `t`: its memory, requiring a gradient, and its storage
    /// count (Burn leaves `t` alone while the graph lives).
    fn leaf(t: &TchTensor) -> TchTensor {
        let leaf = t.tensor.detach().set_requires_grad(true);
        TchTensor::from_existing(leaf, t.storage.clone())
    }

    /// `t` itself where nothing else holds its memory, else a copy.
    fn owned(t: TchTensor) -> TchTensor {
        if t.can_mut() {
            t
        } else {
            TchTensor::new(t.tensor.copy())
        }
    }

    impl TchFused for LibTorch {
        fn torch_op(
            op: TorchOp,
            a: TchTensor,
            b: TchTensor,
            c: TchTensor,
            d: TchTensor,
        ) -> TchTensor {
            TchTensor::new(apply(op, &a.tensor, &b.tensor, &c.tensor, &d.tensor))
        }

        fn torch_record(
            op: TorchOp,
            a: TchTensor,
            b: TchTensor,
            c: TchTensor,
            d: TchTensor,
        ) -> (TchTensor, TchTensor, TchTensor, TchTensor, TchTensor) {
            let (a, b, c) = (leaf(&a), leaf(&b), leaf(&c));
            // Recorded whatever the thread's grad mode (a caller's `no_grad` would leave it
            // nothing to replay).
            let y = tch::with_grad(|| apply(op, &a.tensor, &b.tensor, &c.tensor, &d.tensor));
            // Burn's output and the graph's share a storage count too (torch's CPU flash
            // kernel keeps its output for the backward).
            let out = TchTensor::new(y.detach());
            let attached = TchTensor::from_existing(y, out.storage.clone());
            (out, attached, a, b, c)
        }

        fn torch_replay(
            output: TchTensor,
            a: TchTensor,
            b: TchTensor,
            c: TchTensor,
            grad: TchTensor,
        ) -> (TchTensor, TchTensor, TchTensor) {
            let leaves = [a.tensor, b.tensor, c.tensor];
            let grads = grad_of(&output.tensor, &grad.tensor, &leaves);
            // A leaf the output does not depend on gets no tensor from torch: zeros.
            let mut grads = grads
                .into_iter()
                .zip(&leaves)
                .map(|(g, leaf)| TchTensor::new(g.unwrap_or_else(|| leaf.zeros_like())));
            let mut next = || grads.next().expect("torch returns a gradient per leaf");
            (next(), next(), next())
        }

        fn log_softmax_pick(logits: TchTensor, labels: TchTensor) -> (TchTensor, TchTensor) {
            let log_probs = logits.tensor.log_softmax(-1, None);
            let picked = log_probs.gather(-1, &labels.tensor.unsqueeze(-1), false);
            (TchTensor::new(picked), TchTensor::new(log_probs))
        }

        fn log_softmax_pick_backward(
            log_probs: TchTensor,
            grad: TchTensor,
            labels: TchTensor,
        ) -> TchTensor {
            let lp = &log_probs.tensor;
            let mut spread = lp.zeros_like();
            let _ = spread.scatter_(-1, &labels.tensor.unsqueeze(-1), &grad.tensor);
            TchTensor::new(tch::Tensor::internal_log_softmax_backward_data(
                &spread,
                lp,
                -1,
                lp.kind(),
            ))
        }
    }

    /// `t`'s libtorch tensor.
    fn raw(t: Tensor<1>) -> TchTensor {
        t.try_into_primitive::<LibTorch>()
            .expect("a tensor of the libtorch backend")
    }

    /// `t`'s libtorch tensor, contiguous, in a buffer nothing else holds (copied otherwise).
    pub(super) fn unique(t: Tensor<1>) -> TchTensor {
        let t = raw(t);
        if t.tensor.is_contiguous() {
            owned(t)
        } else {
            TchTensor::new(t.tensor.contiguous())
        }
    }

    // `csrc/torch_multi_tensor.cpp`; handles are tch's (`torch::Tensor*`), an error a malloc'd
    // message.
    unsafe extern "C" {
        fn bert_torch_grad(
            output: *const torch_sys::C_tensor,
            grad: *const torch_sys::C_tensor,
            inputs: *const *mut torch_sys::C_tensor,
            n: usize,
            grads: *mut *mut torch_sys::C_tensor,
        ) -> *mut std::ffi::c_char;
        fn bert_torch_global_norm(
            tensors: *const *mut torch_sys::C_tensor,
            n: usize,
            out: *mut *mut torch_sys::C_tensor,
        ) -> *mut std::ffi::c_char;
        #[allow(clippy::too_many_arguments)]
        fn bert_torch_fused_adamw(
            params: *const *mut torch_sys::C_tensor,
            grads: *const *mut torch_sys::C_tensor,
            exp_avgs: *const *mut torch_sys::C_tensor,
            exp_avg_sqs: *const *mut torch_sys::C_tensor,
            n: usize,
            step: f64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
            grad_scale: *const torch_sys::C_tensor,
        ) -> *mut std::ffi::c_char;
    }

    /// `torch.autograd.grad(output, leaves, grad)`: each leaf's gradient, `None` where the
    /// output does not depend on it.
    fn grad_of(
        output: &tch::Tensor,
        grad: &tch::Tensor,
        leaves: &[tch::Tensor],
    ) -> Vec<Option<tch::Tensor>> {
        let handles = handles(leaves);
        let mut out = vec![std::ptr::null_mut(); leaves.len()];
        // SAFETY: live handles for the call; `out` has a slot per leaf, each set to a new
        // `torch::Tensor*` or null.
        check("autograd::grad", unsafe {
            bert_torch_grad(
                output.as_ptr(),
                grad.as_ptr(),
                handles.as_ptr(),
                handles.len(),
                out.as_mut_ptr(),
            )
        });
        out.into_iter()
            // SAFETY: a tensor the call allocated, now tch's to free.
            .map(|p| (!p.is_null()).then(|| unsafe { tch::Tensor::from_ptr(p) }))
            .collect()
    }

    /// Panics with torch's message when a `csrc` call failed.
    fn check(what: &str, err: *mut std::ffi::c_char) {
        if err.is_null() {
            return;
        }
        // SAFETY: a NUL-terminated string the C++ side strdup'd for us.
        let msg = unsafe { std::ffi::CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { libc::free(err.cast()) };
        panic!("torch's {what}: {msg}");
    }

    fn handles(list: &[tch::Tensor]) -> Vec<*mut torch_sys::C_tensor> {
        list.iter().map(|t| t.as_ptr().cast_mut()).collect()
    }

    pub(super) fn global_norm(tensors: Vec<Tensor<1>>) -> Tensor<1> {
        let tensors: Vec<tch::Tensor> = tensors.into_iter().map(|t| raw(t).tensor).collect();
        let mut out = std::ptr::null_mut();
        let list = handles(&tensors);
        // SAFETY: `list` holds live handles for the call; `out` is set on success.
        check("_foreach_norm", unsafe {
            bert_torch_global_norm(list.as_ptr(), list.len(), &mut out)
        });
        assert!(!out.is_null(), "torch's _foreach_norm returned no tensor");
        // SAFETY: a new `torch::Tensor*` the call allocated, now tch's to free.
        let norm = unsafe { tch::Tensor::from_ptr(out) };
        Tensor::from_primitive::<LibTorch>(TchTensor::new(norm))
    }

    pub(super) fn fused_adamw(
        [p, g, m, v]: [Vec<tch::Tensor>; 4],
        args: FusedAdamW,
        grad_scale: Option<Tensor<1>>,
    ) {
        let scale = grad_scale.map(|s| raw(s).tensor);
        let scale_ptr = scale.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let [hp, hg, hm, hv] = [&p, &g, &m, &v].map(|l| handles(l));
        // SAFETY: the four lists hold `p.len()` live handles each (`p`, `g`, `m`, `v` live to
        // the end of this function), `scale_ptr` is null or live.
        check("_fused_adamw_", unsafe {
            bert_torch_fused_adamw(
                hp.as_ptr(),
                hg.as_ptr(),
                hm.as_ptr(),
                hv.as_ptr(),
                hp.len(),
                args.step as f64,
                args.lr,
                args.beta1,
                args.beta2,
                args.weight_decay,
                args.eps,
                scale_ptr,
            )
        });
    }
}

impl<B: TchFused, C: CheckpointStrategy> TchFused for Autodiff<B, C> {
    fn torch_op(
        op: TorchOp,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let ((a, a_node), (b, b_node), (c, c_node)) =
            (a.into_parts(), b.into_parts(), c.into_parts());
        let d = Self::inner(d);
        match TorchBackward
            .prepare::<C>([a_node, b_node, c_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, output, a, b, c) = B::torch_record(op, a, b, c, d);
                prep.finish((output, a, b, c), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::torch_op(op, a, b, c, d)),
        }
    }

    fn log_softmax_pick(
        logits: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (x, node) = logits.into_parts();
        let (picked, log_probs) = B::log_softmax_pick(x, labels.clone());
        let log_probs_out = Self::from_inner(log_probs.clone());
        // The logits' gradient from the log-probabilities and the labels.
        let backward = UnaryBackward::<B, (FloatTensor<B>, IntTensor<B>)> {
            grad: |(log_probs, labels), g| B::log_softmax_pick_backward(log_probs, g, labels),
        };
        let picked = match backward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((log_probs, labels), picked),
            OpsKind::UnTracked(prep) => prep.finish(picked),
        };
        (picked, log_probs_out)
    }

    // Not recorded: the pieces the ops above record with.
    fn torch_record(
        op: TorchOp,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let t = Self::inner;
        let (y, output, a, b, c) = B::torch_record(op, t(a), t(b), t(c), t(d));
        let w = Self::from_inner;
        (w(y), w(output), w(a), w(b), w(c))
    }

    fn torch_replay(
        output: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let t = Self::inner;
        let (a, b, c) = B::torch_replay(t(output), t(a), t(b), t(c), t(grad));
        (
            Self::from_inner(a),
            Self::from_inner(b),
            Self::from_inner(c),
        )
    }

    fn log_softmax_pick_backward(
        log_probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        labels: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let (lp, g) = (Self::inner(log_probs), Self::inner(grad));
        Self::from_inner(B::log_softmax_pick_backward(lp, g, labels))
    }
}

/// The backward of a recorded [`TorchOp`]: torch's engine over the graph it kept.
#[derive(Debug)]
struct TorchBackward;

impl<B: TchFused> Backward<B, 3> for TorchBackward {
    /// The output attached to torch's graph, then its leaves.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (output, a, b, c) = ops.state;
        let (da, db, dc) = B::torch_replay(output, a, b, c, grad);
        let parents = ops.parents.map(|p| p.map(|n| n.id));
        crate::cpu_kernels::register::<B, 3>(parents, grads, [da, db, dc]);
    }
}

/// Whether this module's ops run on `device`: libtorch, CPU or CUDA, with or without autodiff.
pub fn applies(device: &Device) -> bool {
    #[cfg(feature = "tch")]
    return matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::LibTorch(_)
    );
    #[cfg(not(feature = "tch"))]
    {
        let _ = device;
        false
    }
}

fn torch_op<const D: usize>(
    op: TorchOp,
    a: Tensor<D>,
    b: Tensor<D>,
    c: Tensor<D>,
    d: Tensor<D>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TchFused>::torch_op(
        op,
        a.into_dispatch(),
        b.into_dispatch(),
        c.into_dispatch(),
        d.into_dispatch(),
    ))
}

/// HF's SDPA attention of split heads (`[b, heads, seq, head_dim]`) on libtorch (see
/// [`applies`]): `softmax(q·kᵀ / √head_dim + mask)·v` with the additive `mask` broadcastable
/// to `[b, heads, q_len, k_len]` and, on an autodiff device, the attention `dropout` of the
/// probabilities, drawn by torch's generator (which `Device::seed` seeds); the heads merged,
/// `[b, q_len, heads·head_dim]`. Under [`precision::autocast`] the operands are cast to the
/// half type, as `torch.autocast` casts SDPA's, the mask clamped to that type's minimum (f32's
/// would overflow it to -inf), and the context comes back in f32 as the composed form's.
pub fn attention(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    mask: Option<Tensor<4>>,
    dropout: f64,
) -> Tensor<3> {
    let [b, heads, q_len, head_dim] = query.dims();
    let (was, device) = (query.dtype(), query.device());
    // Under autocast the half type; the mask clamped to its minimum (a no-op in the tensors'
    // own type, whose masks are built with it).
    let dtype = precision::current().half().map_or(was, DType::from);
    let (query, key, value) = (
        of_type(query, dtype),
        of_type(key, dtype),
        of_type(value, dtype),
    );
    let mask = mask.map(|m| of_type(m.clamp_min(precision::finfo_min(dtype)), dtype));
    // No mask: any tensor in its place (torch is not given it), without a new allocation.
    let masked = mask.is_some();
    let mask = mask.unwrap_or_else(|| query.clone());
    let op = TorchOp::Sdpa {
        masked,
        scale: 1.0 / (head_dim as f64).sqrt(),
        dropout: if device.is_autodiff() { dropout } else { 0.0 },
    };
    let context = torch_op(op, query, key, value, mask);
    of_type(context, was)
        .swap_dims(1, 2)
        .reshape([b, q_len, heads * head_dim])
}

/// LayerNorm over the last dimension on libtorch (see [`applies`]): torch's `layer_norm`, its
/// backward torch's `native_layer_norm_backward`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    let (w, b) = (weight.unsqueeze::<D>(), bias.unsqueeze::<D>());
    // The fourth input is unused: any tensor.
    torch_op(TorchOp::LayerNorm { eps }, x.clone(), w, b, x)
}

/// `x · weightᵀ + bias` on libtorch (see [`applies`]): `x` `[n, in]`, `weight` `[out, in]`,
/// `bias` `[out]` → `[n, out]`, torch's `linear` (one `addmm`) and its backward (the weight's
/// gradient `gᵀ·x`, contiguous like the weight). Under [`precision::autocast`] in the half
/// type, as `torch.autocast` runs `linear`, the output back in `x`'s type.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    let was = x.dtype();
    let dtype = precision::current().half().map_or(was, DType::from);
    let (x, weight, bias) = (
        of_type(x, dtype),
        of_type(weight, dtype),
        of_type(bias.unsqueeze::<2>(), dtype),
    );
    // The fourth input is unused: any tensor.
    of_type(torch_op(TorchOp::Linear, x.clone(), weight, bias, x), was)
}

/// `log_softmax(logits)` at `labels` (`[n, classes]`, `[n]` in `0..classes`) on libtorch (see
/// [`applies`]): `[n]`, differentiable in the logits with torch's log-softmax backward.
pub fn log_softmax_pick(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let (picked, _) =
        <Dispatch as TchFused>::log_softmax_pick(logits.into_dispatch(), labels.into_dispatch());
    Tensor::<2>::from_dispatch(picked).reshape([n])
}

/// The settings of one `torch._fused_adamw_` call: one parameter group at Adam step `step`
/// (`torch.optim.AdamW(fused=True)`'s arguments, `amsgrad` and `maximize` off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
    /// Adam's `t`, from 1.
    pub step: i32,
}

/// The parameters of one group gathered for one step of `torch.optim.AdamW(fused=True)` on
/// libtorch (see [`applies`]): torch's multi-tensor `_fused_adamw_`, a few kernels for the whole
/// group where the single-tensor form launches eleven per parameter (CUDA) and the clipping
/// factor is applied inside it (`grad_scale`). [`push`](Self::push) hands back the parameter and
/// its moments, which [`step`](Self::step) then updates *in place*: read them only after it.
#[derive(Default)]
pub struct FusedAdamWGroup {
    /// Parameters, gradients, first and second moments.
    #[cfg(feature = "tch")]
    tensors: [Vec<tch::Tensor>; 4],
}

impl FusedAdamWGroup {
    /// Adds a parameter with its gradient and moments (flat, one shape, on the inner device; the
    /// other three cast to the parameter's type); returns the parameter and the moments that
    /// [`step`](Self::step) will update (each one's own buffer: a buffer something else holds
    /// is copied first), and the gradient is overwritten too (divided by `grad_scale`).
    pub fn push(
        &mut self,
        param: Tensor<1>,
        grad: Tensor<1>,
        exp_avg: Tensor<1>,
        exp_avg_sq: Tensor<1>,
    ) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
        #[cfg(feature = "tch")]
        {
            // `_fused_adamw_` takes one type for all four (moments loaded from a checkpoint
            // are f32 whatever the parameter's).
            let dtype = param.dtype();
            let [g, m, v] = [grad, exp_avg, exp_avg_sq].map(|t| of_type(t, dtype));
            let [p, g, m, v] = [param, g, m, v].map(libtorch::unique);
            for (list, t) in self.tensors.iter_mut().zip([&p, &g, &m, &v]) {
                list.push(t.tensor.shallow_clone());
            }
            let wrap = Tensor::from_primitive::<burn::backend::LibTorch>;
            (wrap(p), wrap(m), wrap(v))
        }
        #[cfg(not(feature = "tch"))]
        unreachable!("no libtorch in this build: {param:?} {grad:?} {exp_avg:?} {exp_avg_sq:?}")
    }

    /// The group's step: `torch._fused_adamw_` with every gradient divided by `grad_scale` (a
    /// `[1]` tensor on the device; `None`: 1), as `torch.optim.AdamW(fused=True)` after
    /// `clip_grad_norm_` when `grad_scale` is `1 / clip_coef`.
    pub fn step(self, args: FusedAdamW, grad_scale: Option<Tensor<1>>) {
        #[cfg(feature = "tch")]
        libtorch::fused_adamw(self.tensors, args, grad_scale);
        #[cfg(not(feature = "tch"))]
        let _ = (args, grad_scale);
    }
}

/// The L2 norm of all `tensors` together on libtorch (see [`applies`]), `[1]` on their device:
/// `torch._foreach_norm` and the norm of those, as `clip_grad_norm_` takes it (one launch or
/// two on CUDA for the lot; nothing read back).
pub fn global_norm(tensors: Vec<Tensor<1>>) -> Tensor<1> {
    #[cfg(feature = "tch")]
    return libtorch::global_norm(tensors);
    #[cfg(not(feature = "tch"))]
    unreachable!("no libtorch in this build: {tensors:?}")
}

/// `x` in `dtype` (no op when it is already).
fn of_type<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    use super::*;
    use crate::attention::reference_cases;
    use crate::precision::{Autocast, autocast};
    use burn::tensor::Bool;
    use burn::tensor::module::{attention as burn_attention, attention_fallback};
    use burn::tensor::ops::AttentionModuleOptions;

    /// `[b, s, h]` → `[b, heads, s, h / heads]`
    fn split(x: Tensor<3>, heads: usize) -> Tensor<4> {
        let [b, s, h] = x.dims();
        x.reshape([b, s, heads, h / heads]).swap_dims(1, 2)
    }

    /// Torch's SDPA against HF's eager attention composed of Burn's ops on CPU libtorch, for
    /// every reference case (mask shapes, cross-attention, fully masked rows): in f32 to
    /// rounding; under bf16 and f16 autocast within the half type's precision, the context in
    /// f32 and never NaN (an f32 mask cast to the half type unclamped is -inf there, and a
    /// fully masked row NaN).
    #[test]
    fn sdpa_attention_matches_composed_attention() {
        let device = Device::libtorch();
        assert!(applies(&device) && applies(&device.clone().autodiff()));
        for (mode, tolerance) in [
            (Autocast::Off, 2e-6),
            (Autocast::Bf16, 3e-2),
            (Autocast::F16, 4e-3),
        ] {
            for (i, case) in reference_cases(&device).into_iter().enumerate() {
                let heads = case.heads;
                let per_query = case.mask.as_ref().is_some_and(|m| m.dims()[2] > 1);
                let got = autocast(mode, || {
                    attention(
                        split(case.q, heads),
                        split(case.k, heads),
                        split(case.v, heads),
                        case.mask,
                        0.1,
                    )
                });
                let [b, sq, h] = case.want.dims();
                assert_eq!(got.dims(), [b, sq, h]);
                assert_eq!(got.dtype(), DType::F32);
                assert!(
                    !got.clone().is_nan().any().into_scalar::<bool>(),
                    "{mode:?} case {i}"
                );
                // A fully masked row (query 3 of the per-query masks) has no meaningful
                // answer: f32 scores plus f32's minimum are all one value (uniform weights),
                // while torch adds f16's minimum in f32 and so weighs the keys by their scores,
                // as HF's SDPA under f16 autocast does. Only f16 tells the two apart.
                let (got, want) = if mode == Autocast::F16 && per_query {
                    let row = [0..b, 3..4, 0..h];
                    (
                        got.slice_fill(row.clone(), 0.0),
                        case.want.slice_fill(row, 0.0),
                    )
                } else {
                    (got, case.want)
                };
                let diff: f32 = (got - want).abs().max().into_scalar();
                assert!(diff < tolerance, "{mode:?} case {i}: max |Δ| {diff}");
            }
        }
    }

    /// Why [`attention`] calls torch itself: burn-tch 0.22.1's `module::attention` passes
    /// Burn's bool mask (`true` = masked) to torch, which reads `true` as "attend". Here it
    /// masks the keys Burn's own fallback keeps. When this fails, burn-tch reads the mask as
    /// Burn means it, and its attention could serve instead.
    #[test]
    fn burn_tch_attention_reads_the_bool_mask_inverted() {
        let device = Device::libtorch();
        let case = &reference_cases(&device)[0];
        let (q, k, v) = (
            split(case.q.clone(), 2),
            split(case.k.clone(), 2),
            split(case.v.clone(), 2),
        );
        let [b, _, s, _] = q.dims();
        // The last two keys of each sequence masked.
        let masked: Vec<bool> = (0..b * s).map(|i| i % s >= s - 2).collect();
        let mask = Tensor::<4, Bool>::from_data(
            burn::tensor::TensorData::new(masked, [b, 1, 1, s]),
            &device,
        )
        .expand([b, 2, s, s]);
        let options = AttentionModuleOptions::default();
        let fallback = attention_fallback(
            q.clone(),
            k.clone(),
            v.clone(),
            Some(mask.clone()),
            None,
            options,
        );
        let inverted = burn_attention(
            q.clone(),
            k.clone(),
            v.clone(),
            Some(mask.clone().bool_not()),
            None,
            options,
        );
        let plain = burn_attention(q, k, v, Some(mask), None, options);
        let close = |a: Tensor<4>, b: Tensor<4>| a.sub(b).abs().max().into_scalar::<f32>() < 1e-5;
        assert!(
            close(fallback.clone(), inverted),
            "burn-tch no longer inverts the mask"
        );
        assert!(!close(fallback, plain));
    }

    /// HF's eager attention of `[b, s, h]` projections in Burn's ops (differentiated by Burn's
    /// autodiff), heads merged, no dropout.
    fn composed(
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        mask: Option<Tensor<4>>,
        heads: usize,
    ) -> Tensor<3> {
        let [b, sq, h] = q.dims();
        let hd = h / heads;
        let mut scores =
            split(q, heads).matmul(split(k, heads).swap_dims(2, 3)) / (hd as f64).sqrt();
        if let Some(m) = mask {
            scores = scores + m;
        }
        burn::tensor::activation::softmax(scores, 3)
            .matmul(split(v, heads))
            .swap_dims(1, 2)
            .reshape([b, sq, h])
    }

    /// Recorded by torch's autograd on an autodiff libtorch device, torch's SDPA and its
    /// backward against the composed attention under Burn's autodiff, for every reference
    /// case without dropout: the context and the q, k and v gradients.
    #[test]
    fn recorded_attention_matches_composed_attention_and_its_gradients() {
        let d = Device::libtorch().autodiff();
        for (i, case) in reference_cases(&d).into_iter().enumerate() {
            let heads = case.heads;
            let mut weights = (case.want.clone() * 7.0).sin();
            // A fully masked row (query 3 of the per-query masks) is constant in its scores,
            // yet the composed form passes a gradient through them where torch passes none:
            // the comparison gives it no weight (its context is compared all the same).
            if case.mask.as_ref().is_some_and(|m| m.dims()[2] > 1) {
                let [b, _, h] = weights.dims();
                weights = weights.slice_fill([0..b, 3..4, 0..h], 0.0);
            }
            let run = |recorded: bool| {
                let (q, k, v) = (
                    case.q.clone().require_grad(),
                    case.k.clone().require_grad(),
                    case.v.clone().require_grad(),
                );
                let mask = case.mask.clone();
                let out = if recorded {
                    attention(
                        split(q.clone(), heads),
                        split(k.clone(), heads),
                        split(v.clone(), heads),
                        mask,
                        0.0,
                    )
                } else {
                    composed(q.clone(), k.clone(), v.clone(), mask, heads)
                };
                let grads = (out.clone() * weights.clone()).sum().backward();
                let g = |x: &Tensor<3>| x.grad(&grads).expect("a gradient");
                (out.inner(), [g(&q), g(&k), g(&v)])
            };
            let ((got, got_grads), (want, want_grads)) = (run(true), run(false));
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 2e-6, "case {i}: context max |Δ| {diff}");
            for (name, (a, b)) in ["q", "k", "v"]
                .iter()
                .zip(got_grads.into_iter().zip(want_grads))
            {
                let diff: f32 = (a - b).abs().max().into_scalar();
                assert!(diff < 1e-5, "case {i}: d{name} max |Δ| {diff}");
            }
        }
    }

    /// The attention dropout torch applies in a recorded SDPA: with `v` the identity the
    /// context is the dropped probabilities themselves, so each must be 0 or the probability
    /// scaled by `1 / keep`, about `keep` of them kept, a new mask per call and the same after
    /// `Device::seed`; and the q, k, v gradients must be those of that very mask (the
    /// softmax's and dropout's backward written out here with Burn's ops).
    #[test]
    fn recorded_attention_dropout_scales_kept_probabilities_and_their_gradients() {
        use burn::tensor::TensorData;
        let d = Device::libtorch().autodiff();
        let (b, heads, s, p) = (2, 2, 48, 0.3);
        let keep = 1.0 - p;
        let h = heads * s;
        let t = |seed: usize| {
            let v: Vec<f32> = (0..b * s * h)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 2003.0 - 0.5) * 3.0)
                .collect();
            Tensor::<3>::from_data(TensorData::new(v, [b, s, h]), &d)
        };
        let (q0, k0) = (t(1), t(2));
        // Per head the identity: v[b, j, head·s + j'] = [j = j'].
        let eye: Vec<f32> = (0..b * s * h)
            .map(|i| f32::from(i / h % s == i % h % s))
            .collect();
        let v0 = Tensor::<3>::from_data(TensorData::new(eye, [b, s, h]), &d);
        // The last five keys of the second sequence are padding.
        let m: Vec<f32> = (0..b * s)
            .map(|i| {
                if i / s == 1 && i % s >= s - 5 {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(m, [b, 1, 1, s]), &d);
        let r = (t(3) * 5.0).sin();
        let run = |seed: u64| {
            d.seed(seed);
            let (q, k, v) = (
                q0.clone().require_grad(),
                k0.clone().require_grad(),
                v0.clone().require_grad(),
            );
            let out = attention(
                split(q.clone(), heads),
                split(k.clone(), heads),
                split(v.clone(), heads),
                Some(mask.clone()),
                p,
            );
            let grads = (out.clone() * r.clone()).sum().backward();
            let g = |x: &Tensor<3>| x.grad(&grads).expect("a gradient");
            (split(out.inner(), heads), [g(&q), g(&k), g(&v)])
        };
        let (dropped, grads) = run(7);
        assert_eq!(
            run(7).0.into_data(),
            dropped.clone().into_data(),
            "re-seeded: the same mask"
        );
        assert_ne!(
            run(8).0.into_data(),
            dropped.clone().into_data(),
            "another seed: another mask"
        );

        // The probabilities without dropout, of the inner device's own ops.
        let inner = |x: &Tensor<3>| split(x.clone().inner(), heads);
        let (q, k) = (inner(&q0), inner(&k0));
        let scale = 1.0 / (s as f64).sqrt();
        let probs = burn::tensor::activation::softmax(
            q.clone().matmul(k.clone().swap_dims(2, 3)) * scale + mask.clone().inner(),
            3,
        );
        let kept = dropped.clone().not_equal_elem(0.0);
        let scaled = probs.clone() / keep;
        let off: f32 = (dropped.clone() - scaled.clone().mask_fill(kept.clone().bool_not(), 0.0))
            .abs()
            .max()
            .into_scalar();
        assert!(
            off < 1e-5,
            "a kept probability off its scaled value by {off}"
        );
        let live = probs.clone().greater_elem(1e-20);
        let n_live = live.clone().int().sum().into_scalar::<i64>() as f64;
        let n_kept = kept.clone().bool_and(live).int().sum().into_scalar::<i64>() as f64;
        assert!(
            (n_kept / n_live - keep).abs() < 0.05,
            "kept {n_kept} of {n_live}"
        );

        // The gradients of `sum(P̃·V ⊙ r)` with V = I and the recovered mask M = kept / keep.
        let mask_scale = kept.float() / keep;
        let r4 = split(r.inner(), heads);
        let dv = dropped.clone().swap_dims(2, 3).matmul(r4.clone());
        let dp = r4 * mask_scale;
        let ds = probs.clone() * (dp.clone() - (dp * probs).sum_dim(3));
        let dq = ds.clone().matmul(k) * scale;
        let dk = ds.swap_dims(2, 3).matmul(q) * scale;
        let merge = |x: Tensor<4>| x.swap_dims(1, 2).reshape([b, s, h]);
        for (name, (got, want)) in ["q", "k", "v"]
            .iter()
            .zip(grads.into_iter().zip([dq, dk, dv]))
        {
            let diff: f32 = (got - merge(want)).abs().max().into_scalar();
            assert!(diff < 1e-5, "d{name} max |Δ| {diff}");
        }
    }

    /// LayerNorm and the log-softmax pick recorded on an autodiff libtorch device against
    /// Burn's composed forms under Burn's autodiff: values and every gradient (the pick with
    /// a vocabulary-sized row of large logits and a two-class one), and `loss::cross_entropy`
    /// with an ignored row.
    #[test]
    fn layer_norm_and_log_softmax_pick_match_burns_and_their_gradients() {
        use burn::tensor::TensorData;
        let d = Device::libtorch().autodiff();
        let values = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * scale)
                .collect()
        };
        let (b, s, h) = (3, 5, 48);
        let x0 = Tensor::<3>::from_data(TensorData::new(values(b * s * h, 6.0), [b, s, h]), &d);
        let w0 = Tensor::<1>::from_data(TensorData::new(values(h, 2.0), [h]), &d).add_scalar(1.0);
        let b0 = Tensor::<1>::from_data(TensorData::new(values(h, 1.0), [h]), &d);
        let r = (x0.clone() * 3.0).cos();
        let run = |torch: bool| {
            let (x, w, bias) = (
                x0.clone().require_grad(),
                w0.clone().require_grad(),
                b0.clone().require_grad(),
            );
            let y = if torch {
                layer_norm(x.clone(), w.clone(), bias.clone(), 1e-12)
            } else {
                burn::tensor::module::layer_norm(x.clone(), w.clone(), Some(bias.clone()), 1e-12)
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                w.grad(&grads).unwrap(),
                bias.grad(&grads).unwrap(),
            )
        };
        let (got, want) = (run(true), run(false));
        let close = |a: Tensor<3>, b: Tensor<3>, tol: f32, what: &str| {
            let diff: f32 = (a - b).abs().max().into_scalar();
            assert!(diff < tol, "{what}: max |Δ| {diff}");
        };
        close(got.0, want.0, 2e-5, "LayerNorm");
        close(got.1, want.1, 2e-5, "LayerNorm dx");
        close(
            got.2.unsqueeze(),
            want.2.unsqueeze(),
            1e-4,
            "LayerNorm dweight",
        );
        close(
            got.3.unsqueeze(),
            want.3.unsqueeze(),
            1e-4,
            "LayerNorm dbias",
        );

        for (n, classes) in [(37, 1000), (9, 2)] {
            let x0 = Tensor::<2>::from_data(
                TensorData::new(values(n * classes, 40.0), [n, classes]),
                &d,
            );
            let labels: Vec<i64> = (0..n).map(|i| ((i * 31) % classes) as i64).collect();
            let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &d);
            let weights = Tensor::<1>::from_data(TensorData::new(values(n, 2.0), [n]), &d);
            let run = |torch: bool| {
                let x = x0.clone().require_grad();
                let picked = if torch {
                    log_softmax_pick(x.clone(), labels.clone())
                } else {
                    burn::tensor::activation::log_softmax(x.clone(), 1)
                        .gather(1, labels.clone().reshape([n, 1]))
                        .reshape([n])
                };
                let grads = (picked.clone() * weights.clone()).sum().backward();
                (picked.inner(), x.grad(&grads).unwrap())
            };
            let ((got, got_dx), (want, want_dx)) = (run(true), run(false));
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 2e-5, "{classes} classes: max |Δ| {diff}");
            let diff: f32 = (got_dx - want_dx).abs().max().into_scalar();
            assert!(diff < 1e-6, "{classes} classes: dx max |Δ| {diff}");
        }

        // The loss reads the pick on libtorch: an ignored row counts for nothing.
        let logits =
            Tensor::<2>::from_data(TensorData::new(values(4 * 6, 4.0), [4, 6]), &d).require_grad();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, -100, 5, 0], [4]), &d);
        let loss = crate::loss::cross_entropy(logits.clone(), labels, -100);
        let lp = burn::tensor::activation::log_softmax(logits.clone().inner(), 1);
        let want = -(lp.clone().slice([0..1, 2..3]).sum()
            + lp.clone().slice([2..3, 5..6]).sum()
            + lp.slice([3..4, 0..1]).sum())
            / 3.0;
        let diff: f32 = (loss.clone().inner() - want).abs().into_scalar();
        assert!(diff < 1e-6, "cross-entropy off by {diff}");
        let dx = logits.grad(&loss.backward()).unwrap();
        let row: f32 = dx.slice([1..2, 0..6]).abs().sum().into_scalar();
        assert_eq!(row, 0.0, "the ignored row's gradient");
    }

    /// torch's fused AdamW over a group of two parameters (sizes not multiples of a vector or a
    /// block) against torch's single-tensor arithmetic written out in Burn's ops, three steps
    /// with the gradients halved through `grad_scale`, in f32 and f64; a parameter something
    /// else holds is left as it was (its buffer copied, not updated in place).
    #[test]
    fn fused_adamw_matches_torchs_arithmetic_and_keeps_shared_buffers() {
        use burn::tensor::TensorData;
        let d = Device::libtorch();
        for dtype in [DType::F32, DType::F64] {
            let t = |seed: usize, n: usize, scale: f32| {
                let v: Vec<f32> = (0..n)
                    .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 2003.0 - 0.5) * scale)
                    .collect();
                Tensor::<1>::from_data(TensorData::new(v, [n]), &d).cast(dtype)
            };
            let sizes = [4099, 37];
            let mut state: Vec<[Tensor<1>; 3]> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| [t(1 + i, n, 2.0), t(2 + i, n, 0.0), t(3 + i, n, 0.0)])
                .collect();
            let mut want = state.clone();
            let first = state[0][0].clone();
            let first_data = first.clone().into_data();
            let (beta1, beta2, eps, lr, weight_decay) = (0.9f64, 0.999f64, 1e-8, 1e-3, 0.01);
            for step in 1..=3 {
                let grads: Vec<Tensor<1>> =
                    sizes.iter().map(|&n| t(10 + step + n, n, 1.0)).collect();
                let mut group = FusedAdamWGroup::default();
                let handed: Vec<_> = state
                    .into_iter()
                    .zip(grads.clone())
                    .map(|([p, m, v], g)| {
                        let (p, m, v) = group.push(p, g, m, v);
                        [p, m, v]
                    })
                    .collect();
                let args = FusedAdamW {
                    lr,
                    beta1,
                    beta2,
                    weight_decay,
                    eps,
                    step: step as i32,
                };
                group.step(args, Some(Tensor::<1>::full([1], 2.0, &d)));
                state = handed;
                let (step_size, bc2_sqrt) = (
                    lr / (1.0 - beta1.powi(step as i32)),
                    (1.0 - beta2.powi(step as i32)).sqrt(),
                );
                for ([pw, mw, vw], g) in want.iter_mut().zip(grads) {
                    let g = g * 0.5;
                    *mw = mw.clone() + (g.clone() - mw.clone()) * (1.0 - beta1);
                    *vw = vw.clone() * beta2 + g.clone() * (1.0 - beta2) * g;
                    let denom = vw.clone().sqrt() / bc2_sqrt + eps;
                    *pw = pw.clone() * (1.0 - lr * weight_decay) - mw.clone() * step_size / denom;
                }
            }
            for (got, want) in state.into_iter().zip(want) {
                for (name, got, want) in ["param", "exp_avg", "exp_avg_sq"]
                    .into_iter()
                    .zip(got)
                    .zip(want)
                    .map(|((n, g), w)| (n, g, w))
                {
                    assert_eq!(got.dtype(), dtype);
                    let diff: f64 = (got - want.clone())
                        .abs()
                        .max()
                        .cast(DType::F64)
                        .into_scalar();
                    let size: f64 = want.abs().max().cast(DType::F64).into_scalar();
                    let tol = if dtype == DType::F32 { 1e-6 } else { 1e-12 };
                    assert!(
                        diff <= tol * size.max(1e-3),
                        "{dtype:?} {name}: max |Δ| {diff} (of {size})"
                    );
                }
            }
            assert_eq!(
                first.into_data(),
                first_data,
                "{dtype:?}: a parameter someone else holds changed in place"
            );
        }
    }

    /// Moments of another type than the parameter (a checkpoint's are f32) are cast to it: an
    /// f64 parameter steps with f32 zero moments as with f64 ones.
    #[test]
    fn fused_adamw_casts_moments_to_the_parameters_type() {
        let d = Device::libtorch();
        let p = Tensor::<1>::from_floats([0.5, -1.0, 2.0], &d).cast(DType::F64);
        let g = Tensor::<1>::from_floats([0.1, 0.2, -0.3], &d).cast(DType::F64);
        let args = FusedAdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: 1e-8,
            step: 1,
        };
        let step = |m: Tensor<1>, v: Tensor<1>| {
            let mut group = FusedAdamWGroup::default();
            let (p, m, _) = group.push(p.clone(), g.clone(), m, v);
            group.step(args, None);
            assert_eq!(m.dtype(), DType::F64);
            p.into_data()
        };
        let zeros = |dtype| Tensor::<1>::zeros([3], &d).cast(dtype);
        let mixed = step(zeros(DType::F32), zeros(DType::F32));
        assert_eq!(mixed, step(zeros(DType::F64), zeros(DType::F64)));
        // Step 1 moves each by lr against its gradient's sign.
        let want = burn::tensor::TensorData::from([0.4f64, -1.1, 2.1]);
        mixed.assert_approx_eq::<f64>(&want, burn::tensor::Tolerance::absolute(1e-6));
    }

    /// The global norm of tensors of several sizes (one empty) is the norm of them
    /// concatenated, on their device as `[1]`.
    #[test]
    fn global_norm_is_the_norm_of_all_values() {
        use burn::tensor::TensorData;
        let d = Device::libtorch();
        let parts: Vec<Tensor<1>> = [5usize, 0, 1031, 3]
            .iter()
            .map(|&n| {
                let v: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.25).collect();
                Tensor::from_data(TensorData::new(v, [n]), &d)
            })
            .collect();
        let want: f64 = Tensor::cat(parts.clone(), 0)
            .square()
            .sum()
            .sqrt()
            .cast(DType::F64)
            .into_scalar();
        let got = global_norm(parts);
        assert_eq!(got.dims(), [1]);
        let got: f64 = got.cast(DType::F64).into_scalar();
        assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
    }

    /// Under bf16 and f16 autocast on an autodiff libtorch device the recorded SDPA runs in the
    /// half type (its gradient arrives in that type from Burn's cast) and the gradients reach
    /// the f32 projections: f32, never NaN, and within the half type's precision of the f32
    /// composed attention's.
    #[test]
    fn recorded_attention_under_autocast_gives_f32_gradients_within_half_precision() {
        let d = Device::libtorch().autodiff();
        for (mode, tolerance) in [(Autocast::Bf16, 6e-2), (Autocast::F16, 1e-2)] {
            for (i, case) in reference_cases(&d).into_iter().enumerate().take(2) {
                let heads = case.heads;
                let weights = (case.want.clone() * 7.0).sin();
                let run = |half: bool| {
                    let (q, k, v) = (
                        case.q.clone().require_grad(),
                        case.k.clone().require_grad(),
                        case.v.clone().require_grad(),
                    );
                    let mask = case.mask.clone();
                    let out = if half {
                        let (sq, sk, sv) = (
                            split(q.clone(), heads),
                            split(k.clone(), heads),
                            split(v.clone(), heads),
                        );
                        autocast(mode, || attention(sq, sk, sv, mask, 0.0))
                    } else {
                        composed(q.clone(), k.clone(), v.clone(), mask, heads)
                    };
                    let grads = (out.clone() * weights.clone()).sum().backward();
                    let g = |x: &Tensor<3>| x.grad(&grads).expect("a gradient");
                    (out.inner(), [g(&q), g(&k), g(&v)])
                };
                let ((got, got_grads), (want, want_grads)) = (run(true), run(false));
                assert_eq!(got.dtype(), DType::F32);
                let diff: f32 = (got - want).abs().max().into_scalar();
                assert!(
                    diff < tolerance,
                    "{mode:?} case {i}: context max |Δ| {diff}"
                );
                for (name, (a, b)) in ["q", "k", "v"]
                    .iter()
                    .zip(got_grads.into_iter().zip(want_grads))
                {
                    assert_eq!(a.dtype(), DType::F32, "{mode:?} d{name}");
                    assert!(
                        !a.clone().is_nan().any().into_scalar::<bool>(),
                        "{mode:?} d{name} NaN"
                    );
                    let size: f32 = b.clone().abs().max().into_scalar();
                    let diff: f32 = (a - b).abs().max().into_scalar();
                    assert!(
                        diff <= tolerance * size.max(1.0),
                        "{mode:?} case {i}: d{name} max |Δ| {diff} (of {size})"
                    );
                }
            }
        }
    }

    /// What a recorded op keeps for torch's backward is not updated in place by Burn after it:
    /// the LayerNorm's input (a leaf) and the SDPA's output (torch's CPU flash kernel reads it
    /// back), each consumed by a Burn op that would run in place on a tensor nothing else holds
    /// (`x · 3`, `out · 2`). The gradients match the composed forms' run the same way.
    #[test]
    fn recorded_ops_keep_what_torch_saved_from_burns_in_place_ops() {
        use burn::tensor::TensorData;
        let d = Device::libtorch().autodiff();
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 2003.0 - 0.5) * 3.0)
                .collect()
        };
        let (b, s, h) = (2, 9, 16);
        let data = |seed: usize, dims: [usize; 3]| {
            TensorData::new(values(dims.iter().product(), seed), dims)
        };
        let r = Tensor::<3>::from_data(data(9, [b, s, h]), &d);
        // LayerNorm: the weight's and bias's gradients read the saved input.
        let layer_norm_grads = |torch: bool| {
            let x = Tensor::<3>::from_data(data(1, [b, s, h]), &d).require_grad();
            let w = Tensor::<1>::from_data(TensorData::new(values(h, 2), [h]), &d).require_grad();
            let bias = Tensor::<1>::zeros([h], &d).require_grad();
            let y = if torch {
                layer_norm(x.clone(), w.clone(), bias.clone(), 1e-12)
            } else {
                burn::tensor::module::layer_norm(x.clone(), w.clone(), Some(bias.clone()), 1e-12)
            };
            let tripled = x * 3.0;
            let grads = ((y * r.clone()).sum() + tripled.sum()).backward();
            (w.grad(&grads).unwrap(), bias.grad(&grads).unwrap())
        };
        let ((dw, db), (want_dw, want_db)) = (layer_norm_grads(true), layer_norm_grads(false));
        let diff: f32 = (dw - want_dw).abs().max().into_scalar();
        assert!(diff < 1e-4, "LayerNorm dweight max |Δ| {diff}");
        let diff: f32 = (db - want_db).abs().max().into_scalar();
        assert!(diff < 1e-4, "LayerNorm dbias max |Δ| {diff}");

        // SDPA without dropout (torch's CPU flash kernel keeps its output).
        let heads = 2;
        let mask: Vec<f32> = (0..b * s)
            .map(|i| if i % s >= s - 2 { f32::MIN } else { 0.0 })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, 1, 1, s]), &d);
        let weights = split(r.clone(), heads);
        let attention_grads = |torch: bool| {
            let t = |seed| Tensor::<3>::from_data(data(seed, [b, s, h]), &d).require_grad();
            let (q, k, v) = (t(1), t(2), t(3));
            let out = if torch {
                let op = TorchOp::Sdpa {
                    masked: true,
                    scale: 1.0 / ((h / heads) as f64).sqrt(),
                    dropout: 0.0,
                };
                let (sq, sk, sv) = (
                    split(q.clone(), heads),
                    split(k.clone(), heads),
                    split(v.clone(), heads),
                );
                torch_op(op, sq, sk, sv, mask.clone())
            } else {
                split(
                    composed(q.clone(), k.clone(), v.clone(), Some(mask.clone()), heads),
                    heads,
                )
            };
            let doubled = out * 2.0;
            let grads = (doubled * weights.clone()).sum().backward();
            [
                q.grad(&grads).unwrap(),
                k.grad(&grads).unwrap(),
                v.grad(&grads).unwrap(),
            ]
        };
        for (name, (got, want)) in ["q", "k", "v"].iter().zip(
            attention_grads(true)
                .into_iter()
                .zip(attention_grads(false)),
        ) {
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-5, "SDPA d{name} max |Δ| {diff}");
        }
    }
}
