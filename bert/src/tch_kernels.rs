//! What libtorch has fused that Burn's tch backend does not reach, through Burn's
//! `#[backend_extension]` on `LibTorch` (`tch` and `tch-cuda`).
//!
//! Attention for inference ([`attention`], on a device that records no gradients): HF's BERT
//! runs `torch.nn.functional.scaled_dot_product_attention` by default (transformers 4's
//! `BertSdpaSelfAttention`, 5's `sdpa_attention_forward`), handing it the additive float mask.
//! Composed through Burn it is five libtorch ops with the `[b, heads, q, k]` scores made twice;
//! torch's SDPA picks a fused kernel (flash or memory-efficient attention on CUDA, a blocked
//! flash kernel on the CPU) that never makes them. Burn 0.22's own `module::attention` reaches
//! the same torch function on tch, but an additive bias sends it to Burn's composed fallback,
//! and the bool mask it passes on means "masked" in Burn and "attend" in torch (burn-tch
//! 0.22.1 `ops/module.rs`; the test `burn_tch_attention_reads_the_bool_mask_inverted` shows it),
//! so this module calls torch itself. Training keeps the composed form (its backward is Burn's).
// Burn 0.22 deprecates tch in favour of the CubeCL backends; it is still one of this crate's.
#![cfg_attr(feature = "tch", allow(deprecated))]
#![cfg_attr(not(feature = "tch"), allow(dead_code, unused_variables))]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Device, Tensor};

use crate::precision;

#[backend_extension(LibTorch: cfg(feature = "tch"))]
pub trait TchFused: Backend {
    /// `softmax(q·kᵀ·scale + mask)·v` by torch's `scaled_dot_product_attention`, for `q`
    /// `[b, heads, q_len, d]`, `k`, `v` `[b, heads, k_len, d]` and an additive `mask`
    /// broadcastable to `[b, heads, q_len, k_len]` in `q`'s type, or none when `masked` is
    /// false (Burn's extensions take no optional tensor; torch's flash kernels take no mask).
    fn sdpa(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        masked: bool,
        scale: f64,
    ) -> FloatTensor<Self>;
}

#[cfg(feature = "tch")]
impl TchFused for burn::backend::LibTorch {
    fn sdpa(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        masked: bool,
        scale: f64,
    ) -> FloatTensor<Self> {
        use burn::backend::libtorch::TchTensor;
        TchTensor::new(tch::Tensor::scaled_dot_product_attention(
            &q.tensor,
            &k.tensor,
            &v.tensor,
            masked.then_some(mask.tensor),
            0.0,
            false,
            scale,
            false,
        ))
    }
}

/// Whether [`attention`] runs on `device`: libtorch (CPU or CUDA) recording no gradients.
pub fn applies(device: &Device) -> bool {
    #[cfg(feature = "tch")]
    if !device.is_autodiff() {
        return matches!(
            device.as_dispatch(),
            burn::backend::DispatchDevice::LibTorch(_)
        );
    }
    let _ = device;
    false
}

/// HF's SDPA attention of split heads (`[b, heads, seq, head_dim]`) on a libtorch device that
/// records no gradients (see [`applies`]): `softmax(q·kᵀ / √head_dim + mask)·v` with the
/// additive `mask` broadcastable to `[b, heads, q_len, k_len]`; the heads merged,
/// `[b, q_len, heads·head_dim]`. Under [`precision::autocast`] the operands are cast to the
/// half type, as `torch.autocast` casts SDPA's, the mask clamped to that type's minimum (f32's
/// would overflow it to -inf), and the context comes back in f32 as the composed form's.
pub fn attention(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    mask: Option<Tensor<4>>,
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
    // Burn's extensions take no optional tensor: no mask is a placeholder `sdpa` does not pass on.
    let masked = mask.is_some();
    let mask = mask.unwrap_or_else(|| Tensor::zeros([1, 1, 1, 1], &device));
    let context = Tensor::<4>::from_dispatch(<Dispatch as TchFused>::sdpa(
        query.into_dispatch(),
        key.into_dispatch(),
        value.into_dispatch(),
        mask.into_dispatch(),
        masked,
        1.0 / (head_dim as f64).sqrt(),
    ));
    of_type(context, was)
        .swap_dims(1, 2)
        .reshape([b, q_len, heads * head_dim])
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
        assert!(applies(&device) && !applies(&device.clone().autodiff()));
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
}
