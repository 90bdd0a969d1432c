//! Dropout (`nn.Dropout`) with the mask drawn where it is cheapest.
//!
//! The module is Burn's [`burn::nn::Dropout`] (its `training` flag, `valid()`, records); only the
//! mask changes. On the CPU backends whose tensors live in host memory (flex, ndarray) Burn's
//! `random` draws one element at a time from one ChaCha stream behind a lock: at BERT-base,
//! seq 128, batch 8 that is ~38 M draws per training step, about a second on two cores. There
//! the mask is drawn on the host by a counter-based generator (SplitMix64 of seed, call and
//! element index), in parallel, and handed to the backend without a copy. On the CubeCL backends
//! (cuda, wgpu, vulkan, cpu) one kernel hashes each element's index with a key of the same host
//! stream and applies the mask (`crate::cube_kernels::dropout`; the backward applies it again
//! to the gradient, so no mask tensor is kept): composed, the device draws a Bernoulli tensor and
//! records two products. tch draws it with its own generator (`Tensor::random_like`), as Burn
//! does ([`draws_on_host`] says which).
//!
//! The host stream is per thread: [`seed`] sets it (the trainer seeds it with the device, at the
//! start and at every `save_steps` boundary, so that resumed runs draw the same masks).

use std::cell::Cell;

use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor, TensorData};

thread_local! {
    /// (seed, calls since seeding) of this thread's host mask stream.
    static STREAM: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Seeds this thread's host dropout stream (the device's own generator is seeded by
/// `Device::seed`; seed both).
pub fn seed(seed: u64) {
    STREAM.with(|s| s.set((seed, 0)));
}

/// This thread's host mask stream as it stands (seed, calls since seeding): what
/// [`set_stream`] puts back, so that a recomputed forward pass (gradient checkpointing,
/// `crate::checkpoint`) draws the masks it drew the first time.
pub(crate) fn stream() -> (u64, u64) {
    STREAM.with(Cell::get)
}

/// Puts back a state [`stream`] returned.
pub(crate) fn set_stream(state: (u64, u64)) {
    STREAM.with(|s| s.set(state));
}

/// The next key of this thread's host stream (one call of it): each host mask's, and what a
/// checkpointed layer seeds a device's own generator with (`crate::checkpoint`).
pub fn next_seed() -> u64 {
    STREAM.with(|s| {
        let (seed, calls) = s.get();
        s.set((seed, calls + 1));
        splitmix64(seed ^ splitmix64(calls))
    })
}

/// `dropout.forward(x)`: zero each element with probability `prob` and scale the rest by
/// `1 / (1 - prob)` while training on an autodiff device; `x` unchanged otherwise.
pub fn forward<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !active(dropout, &device) {
        return x;
    }
    let keep = 1.0 - dropout.prob;
    if crate::backend::host_memory(&device) {
        let draw = next_draw(keep);
        let shape = x.dims();
        let mask = host_mask(shape.iter().product(), draw);
        return x * Tensor::<D>::from_data(TensorData::new(mask, shape), &device);
    }
    if crate::cube_kernels::applies_dropout(&device) {
        return crate::cube_kernels::dropout(x, next_draw(keep));
    }
    let random = x.random_like(Distribution::Bernoulli(keep));
    x * random * (1.0 / keep)
}

/// What [`forward`] would do with `dropout` on a CubeCL `device`, for a kernel that applies the
/// mask itself (`cube_kernels::add_layer_norm`, `cube_kernels::attention_softmax`):
/// `Some(None)` when it is the identity (not training, no gradients, rate 0), `Some(Some(draw))`
/// with the next key of the host stream when the CubeCL dropout kernel would run, `None` when
/// [`forward`] must run itself.
pub(crate) fn cube_draw(
    dropout: &Dropout,
    device: &burn::tensor::Device,
) -> Option<Option<HostDraw>> {
    if !active(dropout, device) {
        return Some(None);
    }
    crate::cube_kernels::applies_dropout(device).then(|| Some(next_draw(1.0 - dropout.prob)))
}

/// Whether dropout on `device` takes its masks' keys from this thread's host stream: on flex and
/// ndarray (the masks made on the host) and on the CubeCL backends (each element's index hashed
/// with the key on the device, `cube_kernels::dropout`). Elsewhere (tch) the device's own
/// generator draws them, seeded by `Device::seed`.
pub fn draws_on_host(device: &burn::tensor::Device) -> bool {
    crate::backend::host_memory(device) || crate::cube_kernels::applies_dropout(device)
}

/// One host dropout mask, drawn lazily: element `i` of the mask (row-major over the tensor it
/// applies to) is [`HostDraw::value`]`(i)`. [`forward`] draws it whole; the fused training
/// attention (`cpu_kernels::attention_train`) draws each element where it uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDraw {
    /// This call's key in the thread's stream.
    pub key: u64,
    /// An element is kept when its 32-bit uniform is below this (`keep · 2³²`).
    pub threshold: u32,
    /// What a kept element is multiplied by, `1 / keep`, as f32 bits.
    pub scale_bits: u32,
}

impl HostDraw {
    /// Element `i`: `1 / keep` if kept, else 0. Two 32-bit uniforms per SplitMix64 output,
    /// elements `2j` and `2j + 1` from counter `j`.
    #[inline(always)]
    pub fn value(self, i: u64) -> f32 {
        let r = splitmix64(self.key.wrapping_add(i / 2));
        let u = if i.is_multiple_of(2) {
            r as u32
        } else {
            (r >> 32) as u32
        };
        if u < self.threshold {
            f32::from_bits(self.scale_bits)
        } else {
            0.0
        }
    }

    /// Elements `first..first + out.len()` into `out`: [`HostDraw::value`] of each, one
    /// SplitMix64 output per pair.
    #[inline(always)]
    pub fn fill(self, first: u64, out: &mut [f32]) {
        let (scale, threshold) = (f32::from_bits(self.scale_bits), self.threshold);
        let pick = |u: u32| if u < threshold { scale } else { 0.0 };
        let end = first + out.len() as u64;
        let mut out = out;
        if first % 2 == 1 && !out.is_empty() {
            out[0] = self.value(first);
            out = &mut out[1..];
        }
        let counter = first.div_ceil(2);
        let mut pairs = out.chunks_exact_mut(2);
        for (j, pair) in (&mut pairs).enumerate() {
            let r = splitmix64(self.key.wrapping_add(counter + j as u64));
            pair[0] = pick(r as u32);
            pair[1] = pick((r >> 32) as u32);
        }
        if let [last] = pairs.into_remainder() {
            *last = self.value(end - 1);
        }
    }
}

/// The next mask of this thread's host stream for `dropout` on `device`, where [`forward`]
/// draws it on the host (training, on an autodiff flex or ndarray device, `prob > 0`); `None`
/// (and no draw) where `dropout` does nothing or the device draws its own.
pub fn host_draw(dropout: &Dropout, device: &burn::tensor::Device) -> Option<HostDraw> {
    if !active(dropout, device) || !crate::backend::host_memory(device) {
        return None;
    }
    Some(next_draw(1.0 - dropout.prob))
}

/// Whether `dropout` does anything on `device`: training, recording gradients, `prob > 0`.
fn active(dropout: &Dropout, device: &burn::tensor::Device) -> bool {
    dropout.training.is_enabled() && device.is_autodiff() && dropout.prob != 0.0
}

/// The next mask of this thread's host stream, keeping each element with probability `keep`.
fn next_draw(keep: f64) -> HostDraw {
    HostDraw {
        key: next_seed(),
        threshold: (keep * 4_294_967_296.0).min(u32::MAX as f64) as u32,
        scale_bits: ((1.0 / keep) as f32).to_bits(),
    }
}

pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n` values of `draw`'s mask ([`HostDraw::value`]), chunks in parallel.
fn host_mask(n: usize, draw: HostDraw) -> Vec<f32> {
    use rayon::prelude::*;
    let mut mask = vec![0f32; n];
    const CHUNK: usize = 1 << 16;
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, out)| draw.fill((c * CHUNK) as u64, out));
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host mask keeps `keep` of the elements (binomial: 2·10⁶ draws, 10 σ ≈ 0.0035), with
    /// the right scale, a new mask per call, and the same masks after re-seeding.
    #[test]
    fn host_masks_have_the_right_rate_and_replay_after_seeding() {
        let draw = HostDraw {
            key: 42,
            threshold: (0.9 * 4_294_967_296.0) as u32,
            scale_bits: (1.0f32 / 0.9).to_bits(),
        };
        let m = host_mask(2_000_000, draw);
        // Drawn whole, in pieces at any offset or one element at a time: the same mask.
        for (first, len) in [(0, 7), (1, 6), (3, 1), (5, 0), (65_535, 4), (1_999_990, 10)] {
            let mut piece = vec![-1f32; len];
            draw.fill(first as u64, &mut piece);
            assert_eq!(piece, m[first..first + len], "fill at {first}, {len}");
        }
        assert!((0..1000).all(|i| draw.value(i as u64) == m[i]));
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.9).abs() < 0.0035, "kept {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        // Neighbouring elements are independent: P(both kept) = keep².
        let both = m.chunks(2).filter(|p| p[0] != 0.0 && p[1] != 0.0).count() as f64
            / (m.len() / 2) as f64;
        assert!((both - 0.81).abs() < 0.005, "both {both}");

        let d = crate::backend::test_device().autodiff();
        let drop = burn::nn::DropoutConfig::new(0.5).init();
        let x = Tensor::<2>::ones([64, 64], &d);
        seed(3);
        let a = forward(&drop, x.clone()).into_data();
        let b = forward(&drop, x.clone()).into_data();
        seed(3);
        let a2 = forward(&drop, x.clone()).into_data();
        assert_ne!(a, b, "a new mask per call");
        if draws_on_host(&d) {
            assert_eq!(a, a2, "re-seeding replays the host stream");
        }
        let kept = a
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .filter(|&&v| v != 0.0)
            .count();
        assert!(
            (1700..2400).contains(&kept),
            "kept {kept} of 4096 at p = 0.5"
        );
        // Inference (no autodiff device) leaves the input as it is.
        let plain = Tensor::<2>::ones([4, 4], &crate::backend::test_device());
        assert_eq!(forward(&drop, plain.clone()).into_data(), plain.into_data());
    }
}
