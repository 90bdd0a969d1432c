//! Dropout (`nn.Dropout`) with the mask drawn where it is cheapest.
//!
//! The module is Burn's [`burn::nn::Dropout`] (its `training` flag, `valid()`, records); only the
//! mask changes. On the CPU backends whose tensors live in host memory (flex, ndarray) Burn's
//! `random` draws one element at a time from one ChaCha stream behind a lock: at BERT-base,
//! seq 128, batch 8 that is ~38 M draws per training step, about a second on two cores. There
//! the mask is drawn on the host by a counter-based generator (SplitMix64 of seed, call and
//! element index), in parallel, and handed to the backend without a copy. Every other backend
//! draws it on the device with its own generator (`Tensor::random_like`), as Burn does.
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

/// `dropout.forward(x)`: zero each element with probability `prob` and scale the rest by
/// `1 / (1 - prob)` while training on an autodiff device; `x` unchanged otherwise.
pub fn forward<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !dropout.training.is_enabled() || !device.is_autodiff() || dropout.prob == 0.0 {
        return x;
    }
    let keep = 1.0 - dropout.prob;
    if crate::backend::host_memory(&device) {
        let shape = x.dims();
        let n: usize = shape.iter().product();
        let key = STREAM.with(|s| {
            let (seed, calls) = s.get();
            s.set((seed, calls + 1));
            splitmix64(seed ^ splitmix64(calls))
        });
        let mask = host_mask(n, keep, key);
        return x * Tensor::<D>::from_data(TensorData::new(mask, shape), &device);
    }
    let random = x.random_like(Distribution::Bernoulli(keep));
    x * random * (1.0 / keep)
}

pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` mask values, `1 / keep` with probability `keep` and 0 otherwise: two 32-bit uniforms per
/// SplitMix64 output, element pairs `2j, 2j + 1` from counter `j`; chunks in parallel.
fn host_mask(n: usize, keep: f64, key: u64) -> Vec<f32> {
    use rayon::prelude::*;
    // keep an element when its 32-bit uniform u < keep · 2^32.
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0f32; n];
    const CHUNK: usize = 1 << 16; // even, so pairs never straddle chunks
    mask.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let base = (c * CHUNK / 2) as u64;
        for (j, pair) in out.chunks_mut(2).enumerate() {
            let r = splitmix64(key.wrapping_add(base + j as u64));
            let draws = [r as u32, (r >> 32) as u32];
            for (o, u) in pair.iter_mut().zip(draws) {
                *o = if u < threshold { scale } else { 0.0 };
            }
        }
    });
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host mask keeps `keep` of the elements (binomial: 2·10⁶ draws, 10 σ ≈ 0.0035), with
    /// the right scale, a new mask per call, and the same masks after re-seeding.
    #[test]
    fn host_masks_have_the_right_rate_and_replay_after_seeding() {
        let m = host_mask(2_000_000, 0.9, 42);
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
        if crate::backend::host_memory(&d) {
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
