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
//! Under `fusion` each kernel is an opaque custom operation of Burn's fusion stream: recorded
//! once, executed in order with the fused element-wise chains around it.
#![cfg_attr(not(cube), allow(dead_code, unused_variables))]

use burn::tensor::{DType, Tensor};

pub use crate::cpu_kernels::AdamWStep;

/// Threads per cube of the gradient norm's sum of squares.
const NORM_CUBE_DIM: usize = 128;

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

    use super::{AdamWStep, NORM_CUBE_DIM};

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

        /// Writes `cubes` × [`NORM_CUBE_DIM`] partial sums of `Σ grad²` (f32) into `partials`
        /// from `offset` on, and returns `partials` (the same buffer when nothing else holds it).
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

    /// `cubes` cubes of [`NORM_CUBE_DIM`] threads stride over `grad`, each thread summing its
    /// elements' squares in f32 and writing its sum at `partials[offset + thread]` (0 for a
    /// thread with no element). No shared memory and no barrier: on the CubeCL CPU runtime each
    /// `sync_cube` of a cube's threads costs a round of thread switches on every core, and a
    /// tree of them per cube made the norm of a tiny model take minutes on 2 cores.
    #[cube(launch_unchecked)]
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
    }
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
}
