//! Global gradient-norm clipping (`torch.nn.utils.clip_grad_norm_`: one norm over every
//! parameter, not Burn's per-tensor `GradientClipping::Norm`) and gradient accumulation.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Visits the gradient of every parameter of `module`.
struct GradVisitor<'a, F> {
    grads: &'a mut GradientsParams,
    f: F,
}

trait GradFn {
    fn apply<const D: usize>(&mut self, grad: Tensor<D>) -> Option<Tensor<D>>;
}

impl<F: GradFn> ModuleVisitor for GradVisitor<'_, F> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let keep = self.f.apply(g.clone()).unwrap_or(g);
            self.grads.register(param.id, keep);
        }
    }
}

fn for_each_grad<M: Module, F: GradFn>(module: &M, grads: &mut GradientsParams, f: F) -> F {
    let mut v = GradVisitor { grads, f };
    module.visit(&mut v);
    v.f
}

/// What the CubeCL norm needs to know of the gradients before any launch: the first one's
/// dtype (the norm's), whether [`bert::cube_kernels`] sums every one, and their element counts
/// (the partial-sum buffer's size).
#[derive(Default)]
struct Survey {
    dtype: Option<burn::tensor::DType>,
    all_cube: bool,
    lens: Vec<usize>,
}

impl GradFn for Survey {
    fn apply<const D: usize>(&mut self, grad: Tensor<D>) -> Option<Tensor<D>> {
        let cube = bert::cube_kernels::applies(&grad);
        self.all_cube = cube && (self.dtype.is_none() || self.all_cube);
        self.dtype.get_or_insert(grad.dtype());
        self.lens.push(grad.shape().num_elements());
        None
    }
}

/// The L2 norm over all gradients of `module` together, on the device (no read).
pub fn global_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams) -> Tensor<1> {
    grad_norm(module, grads, true)
}

/// [`global_grad_norm`]; without `kernels` composed from tensor ops on every device (the
/// kernels' reference: `AdamW::composed`).
pub(crate) fn grad_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    kernels: bool,
) -> Tensor<1> {
    let device = module.devices().pop().unwrap_or_default();
    // On libtorch torch's multi-tensor norm over every gradient at once.
    if kernels && bert::tch_kernels::applies(&device) {
        struct Gather(Vec<Tensor<1>>);
        impl GradFn for Gather {
            fn apply<const D: usize>(&mut self, grad: Tensor<D>) -> Option<Tensor<D>> {
                let n = grad.shape().num_elements();
                self.0.push(grad.reshape([n]));
                None
            }
        }
        let all = for_each_grad(module, grads, Gather(Vec::new())).0;
        return match all.is_empty() {
            true => Tensor::zeros([1], &device),
            false => bert::tch_kernels::global_norm(all),
        };
    }
    // On the CubeCL backends one kernel launch per gradient into one buffer of partial sums.
    let survey = match kernels {
        true => for_each_grad(module, grads, Survey::default()),
        false => Survey::default(),
    };
    if let (Some(dtype), true) = (survey.dtype, survey.all_cube) {
        struct Add(bert::cube_kernels::SumSquares);
        impl GradFn for Add {
            fn apply<const D: usize>(&mut self, grad: Tensor<D>) -> Option<Tensor<D>> {
                self.0.add(grad);
                None
            }
        }
        let sums = bert::cube_kernels::SumSquares::new(survey.lens, &device.clone().inner());
        return for_each_grad(module, grads, Add(sums)).0.norm(dtype);
    }
    struct SumSquares(Option<Tensor<1>>, bool);
    impl GradFn for SumSquares {
        fn apply<const D: usize>(&mut self, grad: Tensor<D>) -> Option<Tensor<D>> {
            // On flex and ndarray one parallel pass (single-threaded square, then sum, otherwise).
            let s = if self.1 && bert::cpu_kernels::applies(&grad) {
                bert::cpu_kernels::sum_squares(grad)
            } else {
                grad.square().sum()
            };
            self.0 = Some(match self.0.take() {
                Some(acc) => acc + s,
                None => s,
            });
            None
        }
    }
    match for_each_grad(module, grads, SumSquares(None, kernels)).0 {
        Some(sum) => sum.sqrt(),
        None => Tensor::zeros([1], &device),
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: scales every gradient by
/// `min(1, max_norm / (norm + 1e-6))`, computed and applied on the device as torch does (no
/// read, so no host sync: every gradient is multiplied, by 1 when the norm is under the limit),
/// and returns the norm before clipping (HF logs it as `grad_norm`). A non-finite `max_norm`
/// only measures.
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Tensor<1> {
    let norm = global_grad_norm(module, grads);
    if max_norm.is_finite() {
        let max = Tensor::<1>::full([1], max_norm, &norm.device());
        let coef = (max / norm.clone().add_scalar(1e-6)).clamp_max(1.0);
        struct Scale(Tensor<1>);
        impl GradFn for Scale {
            fn apply<const D: usize>(&mut self, grad: Tensor<D>) -> Option<Tensor<D>> {
                let coef: Tensor<D> = self.0.clone().reshape([1; D]);
                Some(grad * coef)
            }
        }
        for_each_grad(module, grads, Scale(coef));
    }
    norm
}

/// Adds `grads · scale` into `acc` (a new accumulator when `None`). HF divides each
/// micro-batch loss by the accumulation steps; scaling the gradients is the same.
pub fn accumulate_scaled<M: Module>(
    module: &M,
    acc: Option<GradientsParams>,
    mut grads: GradientsParams,
    scale: f64,
) -> GradientsParams {
    struct Add<'a> {
        grads: &'a mut GradientsParams,
        acc: GradientsParams,
        scale: f64,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let g = if self.scale == 1.0 {
                    g
                } else {
                    g.mul_scalar(self.scale)
                };
                let total = match self.acc.remove::<D>(param.id) {
                    Some(prev) => prev + g,
                    None => g,
                };
                self.acc.register(param.id, total);
            }
        }
    }
    let mut add = Add {
        grads: &mut grads,
        acc: acc.unwrap_or_default(),
        scale,
    };
    module.visit(&mut add);
    add.acc
}
