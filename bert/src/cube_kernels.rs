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
//! Under `fusion` the kernel is an opaque custom operation of Burn's fusion stream: recorded
//! once, executed in order with the fused element-wise chains around it.
#![cfg_attr(not(cube), allow(dead_code, unused_variables))]

use burn::tensor::{DType, Tensor};

pub use crate::cpu_kernels::AdamWStep;

#[cfg(cube)]
mod kernels {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, backend_extension};
    use burn_cubecl::CubeBackend;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;
    use burn_cubecl::cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::tensor::CubeTensor;

    use super::AdamWStep;

    #[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
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

        /// Writes the `cubes` partial sums of `Σ grad²` (f32) into `partials[offset..offset +
        /// cubes]` and returns `partials` (the same buffer when nothing else holds it).
        #[fusion(meta = |partials, _grad, _offset, _cubes| partials.clone())]
        fn sum_squares_into(
            partials: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            offset: usize,
            cubes: usize,
        ) -> FloatTensor<Self>;
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
    #[cube(launch_unchecked)]
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

    /// Threads per cube of the sum of squares: a power of two that every runtime's cube takes.
    const NORM_CUBE_DIM: usize = 128;

    /// `cubes` cubes of `cube_dim` ([`NORM_CUBE_DIM`]) threads stride over `grad`, each thread
    /// summing its elements' squares in f32; each cube adds its threads' sums in shared memory
    /// (a tree) and writes one partial sum at `partials[offset + cube]`.
    #[cube(launch_unchecked)]
    fn sum_squares_kernel<F: Float>(
        grad: &Tensor<F>,
        partials: &mut Tensor<f32>,
        len: usize,
        offset: usize,
        #[comptime] cube_dim: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let unit = UNIT_POS_X as usize;
        let threads = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
        let mut acc = f32::new(0.0);
        let mut i = (CUBE_POS_X * CUBE_DIM_X) as usize + unit;
        while i < len {
            let g = f32::cast_from(grad[i]);
            acc += g * g;
            i += threads;
        }
        let mut sums = Shared::new_slice(cube_dim);
        sums[unit] = acc;
        sync_cube();
        // A runtime value: a comptime one (`cube_dim / 2`) cannot change in the loop.
        let mut half = CUBE_DIM_X as usize / 2;
        while half > 0 {
            if unit < half {
                let other = sums[unit + half];
                sums[unit] += other;
            }
            sync_cube();
            half /= 2;
        }
        if unit == 0 {
            partials[offset + CUBE_POS_X as usize] = sums[0];
        }
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
            let len = p.meta.shape().num_elements();
            let client = p.client.clone();
            // The widest vector the runtime loads well that divides the element count.
            let vector_size = client
                .io_optimized_vector_sizes(p.dtype.size())
                .filter(|&n| len % n == 0)
                .max()
                .unwrap_or(1);
            let vectors = len / vector_size;
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
            let cube_dim = CubeDim::new(&client, vectors);
            let cube_count: CubeCount = calculate_cube_count_elemwise(&client, vectors, cube_dim);
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
                    && offset + cubes <= partials.meta.shape().num_elements(),
                "sum_squares_into: {cubes} partial sums at {offset} do not fit {:?} {:?}",
                partials.dtype,
                partials.meta.shape()
            );
            let client = grad.client.clone();
            let dtype = burn::backend::cubecl::dtype_to_storage_type(grad.dtype);
            // SAFETY: the threads read `grad` below `len`, its element count (contiguous), and
            // cube `c` of `cubes` writes `partials[offset + c]`, inside it (checked above).
            unsafe {
                sum_squares_kernel::launch_unchecked(
                    &client,
                    CubeCount::Static(cubes as u32, 1, 1),
                    CubeDim::new_1d(NORM_CUBE_DIM as u32),
                    grad.into_tensor_arg(),
                    partials.clone().into_tensor_arg(),
                    len,
                    offset,
                    NORM_CUBE_DIM,
                    dtype,
                );
            }
            partials
        }
    }
}

/// How many cubes (partial sums) [`SumSquares::add`] gives a gradient of `len` elements: one per
/// 4,096 elements, at least 1 and at most 256.
pub fn norm_cubes(len: usize) -> usize {
    len.div_ceil(4096).clamp(1, 256)
}

/// The global gradient norm `√Σ g²` over many gradients in one kernel launch each: every
/// gradient's partial sums go into one f32 buffer, summed once at the end ([`Self::norm`]),
/// where the composed form records a square, a sum and an addition per gradient.
pub struct SumSquares {
    partials: Tensor<1>,
    offset: usize,
}

impl SumSquares {
    /// Room for the partial sums of gradients of these element counts (in any order), on
    /// `device` (a CubeCL one: see [`applies`]).
    pub fn new(lens: impl IntoIterator<Item = usize>, device: &burn::tensor::Device) -> Self {
        let total: usize = lens.into_iter().map(norm_cubes).sum();
        Self {
            partials: Tensor::empty([total.max(1)], (device, DType::F32)),
            offset: 0,
        }
    }

    /// Adds `grad`'s squares (a float tensor on the device of [`Self::new`]).
    pub fn add<const D: usize>(&mut self, grad: Tensor<D>) {
        let cubes = norm_cubes(grad.shape().num_elements());
        #[cfg(cube)]
        {
            use burn::backend::Dispatch;
            let partials = self.partials.clone().into_dispatch();
            self.partials =
                Tensor::from_dispatch(<Dispatch as kernels::CubeFused>::sum_squares_into(
                    partials,
                    grad.into_dispatch(),
                    self.offset,
                    cubes,
                ));
        }
        self.offset += cubes;
        #[cfg(not(cube))]
        unreachable!("cube_kernels::SumSquares without a CubeCL backend compiled in: see `applies`")
    }

    /// `√Σ g²` over the gradients added, `[1]` in `dtype`, on the device (nothing is read).
    pub fn norm(self, dtype: DType) -> Tensor<1> {
        let written = self.offset;
        assert!(
            written <= self.partials.dims()[0],
            "SumSquares: more gradients added than room was made for"
        );
        let sum = match written {
            0 => Tensor::zeros([1], (&self.partials.device(), DType::F32)),
            n => self.partials.slice(0..n).sum(),
        };
        sum.sqrt().cast(dtype)
    }
}

/// Whether [`adamw_step`] runs on `x`: a float parameter of f32, f16 or bf16 on a CubeCL
/// device (`cuda`, `wgpu`, `vulkan`, `cpu`), without autodiff (the optimizer's tensors are the
/// inner device's).
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(cube)]
    {
        matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// The CubeCL AdamW step against torch's arithmetic done in f64 on the host, two steps with
    /// clipping and weight decay, on the backend under test (`BERT_TEST_BACKEND`; CI runs it on
    /// `wgpu` and `cpu`): element counts that take the widest vector and none, a gradient read
    /// through transposed strides, and a parameter buffer something else holds left as it was.
    #[test]
    fn cube_adamw_matches_torchs_arithmetic_and_leaves_shared_buffers_alone() {
        let d = crate::backend::test_device().inner();
        if !applies(&Tensor::<1>::zeros([1], &d)) {
            eprintln!("not a CubeCL device: {d:?}");
            return;
        }
        let (lr, wd, clip) = (1e-3, 0.01, 0.5f32);
        let step = |t: i32| AdamWStep {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decay: lr * wd,
            step_size: lr / (1.0 - 0.9f64.powi(t)),
            bias_correction2_sqrt: (1.0 - 0.999f64.powi(t)).sqrt(),
        };
        // [rows, cols]: 64 × 160 takes 4-wide vectors, 17 × 59 single elements.
        for (rows, cols) in [(64, 160), (17, 59)] {
            let n = rows * cols;
            let init: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
                .collect();
            // The gradients in row-major [rows, cols] order.
            let grads: Vec<Vec<f32>> = (0..2)
                .map(|k| {
                    (0..n)
                        .map(|i| ((i * 13 + k * 7) % 29) as f32 / 9.0 - 1.5)
                        .collect()
                })
                .collect();
            // The reference, in f64.
            let (mut p, mut m, mut v) = (
                init.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                vec![0f64; n],
                vec![0f64; n],
            );
            for (t, g) in (1..=2).zip(&grads) {
                let s = step(t);
                for i in 0..n {
                    let g = g[i] as f64 * clip as f64;
                    p[i] *= 1.0 - s.decay;
                    m[i] = 0.9 * m[i] + 0.1 * g;
                    v[i] = 0.999 * v[i] + 0.001 * g * g;
                    p[i] -= s.step_size * m[i] / (v[i].sqrt() / s.bias_correction2_sqrt + 1e-8);
                }
            }
            let t =
                |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, cols]), &d);
            // Each gradient stored [cols, rows] and read transposed: non-contiguous strides.
            let transposed = |g: &[f32]| {
                let mut tr = vec![0f32; n];
                for r in 0..rows {
                    for c in 0..cols {
                        tr[c * rows + r] = g[r * cols + c];
                    }
                }
                Tensor::<2>::from_data(TensorData::new(tr, [cols, rows]), &d).transpose()
            };
            let zeros = vec![0.0; n];
            let (first, mut m1, mut v1) = (t(&init), t(&zeros), t(&zeros));
            let mut p1 = first.clone(); // shared: the first step must copy it
            for (k, g) in grads.iter().enumerate() {
                let clip = Tensor::<1>::from_floats([clip], &d);
                let g = if k == 0 { transposed(g) } else { t(g) };
                (p1, m1, v1) = adamw_step(p1, g, m1, v1, Some(clip), step(k as i32 + 1));
            }
            let host = |x: Tensor<2>| x.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            assert_eq!(
                host(first),
                init,
                "a shared parameter buffer was overwritten"
            );
            for (name, got, want, floor) in [
                ("param", host(p1), &p, 1e-3),
                ("exp_avg", host(m1), &m, 1e-3),
                ("exp_avg_sq", host(v1), &v, 1e-9),
            ] {
                let worst = (got.iter().zip(want))
                    .map(|(a, b)| (*a as f64 - b).abs() / b.abs().max(floor))
                    .fold(0f64, f64::max);
                assert!(worst < 1e-5, "{rows}×{cols} {name}: {worst}");
            }
        }
    }

    /// [`SumSquares`] against the norm in f64 on the host, over gradients that take one cube,
    /// several and the most (the last: 256 cubes over 1.3 M elements, 5 each per thread) and one
    /// read through transposed strides.
    #[test]
    fn cube_sum_squares_matches_the_norm_in_f64() {
        let d = crate::backend::test_device().inner();
        if !applies(&Tensor::<1>::zeros([1], &d)) {
            eprintln!("not a CubeCL device: {d:?}");
            return;
        }
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
        assert!(
            ((got - want) / want).abs() < 1e-6,
            "norm {got} vs {want} in f64"
        );
    }
}
