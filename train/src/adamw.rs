//! torch's `AdamW` with `clip_grad_norm_` in one optimizer step, whose state is ours: kept per
//! parameter path, saved as safetensors and loaded on the training device.
//!
//! The arithmetic is `torch.optim.AdamW` (single-tensor form): decoupled weight decay
//! `p *= 1 - lr·wd`, moments `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`, and
//! `p -= lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)`, after scaling every gradient by
//! `min(1, max_norm / (‖g‖ + 1e-6))` on the device. Groups as in [`crate::optimizer`]: weight
//! decay on everything but biases and LayerNorm weights. On flex and ndarray each parameter's
//! update is one fused parallel pass ([`bert::cpu_kernels::adamw_step`]: the optimizer phase
//! of a BERT-base step went from 659 to 253 ms on a 2-core Xeon); on libtorch (CPU and CUDA) the
//! parameters are gathered by group and stepped by torch's multi-tensor `_fused_adamw_`, the
//! clipping factor its `grad_scale` ([`bert::tch_kernels::FusedAdamWGroup`]: a few kernels for
//! all parameters, as `torch.optim.AdamW(fused=True)`); elsewhere it is composed from tensor
//! ops (`composed_step`).
//!
//! Why not Burn's `ModuleOptimizer`: it loads a saved state on Burn's *default* device (CUDA in
//! any build with the `cuda` feature, whatever the training device) and its record is Burn's
//! own format. Why not one flat buffer per group (the `foreach`/multi-tensor layout): it was
//! built and measured — concatenating the gradients and the parameters and slicing them back
//! costs three extra passes over every parameter, and made the optimizer phase 2.7× slower on
//! flex (tiny: 46 vs 17 ms; small: 189 vs 72 ms); on CubeCL backends Burn's `cat` is one
//! `slice_assign` kernel per input, so it saves no launches either. A real multi-tensor kernel
//! (one CubeCL launch over a list of buffers) is what would.

use std::collections::HashMap;
use std::path::Path;

use bert::cpu_kernels::{self, AdamWStep};
use bert::tensors_file::{HostTensor, NamedTensors, read_tensors, write_tensors};
use bert::{cube_kernels, tch_kernels};
use burn::module::{Module, ModuleMapper, Param, ParamGroup};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor};

use crate::TrainError;
use crate::optimizer::{AdamWArgs, no_decay_group};

/// The optimizer's step and settings in a checkpoint.
pub const STATE_FILE: &str = "optimizer.json";
/// The optimizer's moments in a checkpoint: `{path}.exp_avg`, `{path}.exp_avg_sq`.
pub const MOMENTS_FILE: &str = "optimizer.safetensors";

/// First and second moments of one parameter, flattened (`[numel]`), on the inner device.
#[derive(Debug, Clone)]
struct Moments {
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
}

/// AdamW in two parameter groups with global-norm clipping; see the module docs.
#[derive(Debug, Clone)]
pub struct AdamW {
    args: AdamWArgs,
    /// Steps taken (Adam's `t`).
    time: i32,
    /// By module path.
    state: HashMap<String, Moments>,
    /// The fused kernels where the device has them (see the module docs); off: `composed_step`.
    kernels: bool,
}

impl AdamW {
    pub fn new(args: &AdamWArgs) -> Self {
        Self {
            args: *args,
            time: 0,
            state: HashMap::new(),
            kernels: true,
        }
    }

    /// This optimizer with every parameter stepped by `composed_step` (tensor ops, one at a
    /// time) on every device: the fused kernels' reference, in tests and benchmarks.
    pub fn composed(mut self) -> Self {
        self.kernels = false;
        self
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.time as usize
    }

    /// Clips the gradients to `max_grad_norm` (`f64::INFINITY`: measure only) and applies one
    /// AdamW step at learning rate `lr`; returns the module and the gradient norm before
    /// clipping, on the device (nothing is read back). Parameters without a gradient are left
    /// as they are, as torch does.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
        max_grad_norm: f64,
    ) -> Result<(M, Tensor<1>), TrainError> {
        let norm = crate::gradients::grad_norm(&module, &mut grads, self.kernels);
        self.step_with_norm(lr, module, grads, max_grad_norm, norm)
    }

    /// [`Self::step`] with the global gradient norm already computed (`--fp16` reads it first
    /// to decide whether to step at all).
    pub fn step_with_norm<M: Module>(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
        max_grad_norm: f64,
        norm: Tensor<1>,
    ) -> Result<(M, Tensor<1>), TrainError> {
        self.time += 1;
        // On libtorch the parameters are gathered by group for torch's fused AdamW, which
        // divides the gradients by `1 / clip_coef` itself; elsewhere each is stepped as it is
        // mapped, its gradient multiplied by `clip_coef`.
        let fused = self.kernels && module.devices().first().is_some_and(tch_kernels::applies);
        let clip = max_grad_norm.is_finite().then(|| {
            let max = Tensor::<1>::full([1], max_grad_norm, &norm.device());
            // torch's `clip_coef_clamped`, or the divisor it is the inverse of.
            if fused {
                (norm.clone().add_scalar(1e-6) / max).clamp_min(1.0)
            } else {
                (max / norm.clone().add_scalar(1e-6)).clamp_max(1.0)
            }
        });
        let mut update = Update {
            optim: self,
            lr,
            coef: clip.clone().filter(|_| !fused),
            grads: &mut grads,
            path: Vec::new(),
            no_decay: no_decay_group(),
            missing: None,
            fused: fused.then(Vec::new),
        };
        let module = module.map(&mut update);
        let (missing, groups) = (update.missing, update.fused);
        // The gathered groups' steps update the parameters just handed out, in place.
        for ((weight_decay, _), group) in groups.into_iter().flatten() {
            let args = tch_kernels::FusedAdamW {
                lr,
                beta1: self.args.adam_beta1 as f64,
                beta2: self.args.adam_beta2 as f64,
                weight_decay,
                eps: self.args.adam_epsilon as f64,
                step: self.time,
            };
            group.step(args, clip.clone());
        }
        if let Some(path) = missing {
            return Err(TrainError::Checkpoint(format!(
                "the optimizer state (step {}) has no moments for parameter `{path}`: it was saved for another model",
                self.time - 1
            )));
        }
        Ok((module, norm))
    }

    /// Writes the state into `dir`: [`STATE_FILE`] (the step) and [`MOMENTS_FILE`].
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let err = |f: &str, e: &dyn std::fmt::Display| {
            TrainError::Checkpoint(format!("cannot write {}: {e}", dir.join(f).display()))
        };
        let mut moments = NamedTensors::new();
        for (path, m) in &self.state {
            moments.insert(
                format!("{path}.exp_avg"),
                HostTensor::from_float(m.exp_avg.clone()),
            );
            moments.insert(
                format!("{path}.exp_avg_sq"),
                HostTensor::from_float(m.exp_avg_sq.clone()),
            );
        }
        write_tensors(dir.join(MOMENTS_FILE), &moments, &[]).map_err(|e| err(MOMENTS_FILE, &e))?;
        let state = serde_json::json!({ "step": self.time, "parameters": self.state.len() });
        std::fs::write(dir.join(STATE_FILE), state.to_string()).map_err(|e| err(STATE_FILE, &e))
    }

    /// Loads the state [`save`](Self::save) wrote onto `device`; the hyperparameters stay this
    /// optimizer's.
    pub fn load(mut self, dir: &Path, device: &Device) -> Result<Self, TrainError> {
        let bad = |f: &str, e: &dyn std::fmt::Display| {
            TrainError::Checkpoint(format!("{}: {e}", dir.join(f).display()))
        };
        let text =
            std::fs::read_to_string(dir.join(STATE_FILE)).map_err(|e| bad(STATE_FILE, &e))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(STATE_FILE, &e))?;
        self.time = state["step"]
            .as_i64()
            .ok_or_else(|| bad(STATE_FILE, &"no `step`"))? as i32;
        let mut moments =
            read_tensors(dir.join(MOMENTS_FILE)).map_err(|e| bad(MOMENTS_FILE, &e))?;
        let paths: Vec<String> = moments
            .keys()
            .filter_map(|k| k.strip_suffix(".exp_avg").map(str::to_string))
            .collect();
        let mut tensor = |name: String| -> Result<Tensor<1>, TrainError> {
            let t = moments
                .remove(&name)
                .ok_or_else(|| bad(MOMENTS_FILE, &format!("no tensor `{name}`")))?;
            let n = t.shape.iter().product::<usize>();
            let t = HostTensor {
                shape: vec![n],
                data: t.data,
            };
            Ok(t.float::<1>(&name, device)
                .map_err(|e| bad(MOMENTS_FILE, &e))?
                .inner())
        };
        for path in paths {
            let exp_avg = tensor(format!("{path}.exp_avg"))?;
            let exp_avg_sq = tensor(format!("{path}.exp_avg_sq"))?;
            self.state.insert(
                path,
                Moments {
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(self)
    }
}

/// One AdamW step over the module's parameters.
struct Update<'a> {
    optim: &'a mut AdamW,
    lr: f64,
    /// The clipping factor, `[1]` on the device.
    coef: Option<Tensor<1>>,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    no_decay: ParamGroup,
    /// A parameter the loaded state has no moments for.
    missing: Option<String>,
    /// On libtorch: the parameters gathered for torch's fused AdamW, by group (weight decay and
    /// type); `AdamW::step_with_norm` steps them after the mapping.
    fused: Option<Vec<((f64, DType), tch_kernels::FusedAdamWGroup)>>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(g) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let path = self.path.join(".");
        let args = &self.optim.args;
        let weight_decay = if self.no_decay.matches(&id, Some(&path)) {
            0.0
        } else {
            args.weight_decay as f64
        };
        let t = self.optim.time;
        let (b1, b2) = (args.adam_beta1 as f64, args.adam_beta2 as f64);
        // The per-parameter step's scalars (the fused groups take the hyperparameters).
        let step = || AdamWStep {
            beta1: b1,
            beta2: b2,
            eps: args.adam_epsilon as f64,
            decay: self.lr * weight_decay,
            step_size: self.lr / (1.0 - b1.powi(t)),
            bias_correction2_sqrt: (1.0 - b2.powi(t)).sqrt(),
        };
        let shape = tensor.shape();
        let flat = |t: Tensor<D>| t.reshape([shape.num_elements()]);
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let (p, g) = (flat(tensor.inner()), flat(g));
        let (m, v) = match self.optim.state.remove(&path) {
            Some(s) => (s.exp_avg, s.exp_avg_sq),
            None => {
                if t > 1 && self.missing.is_none() {
                    self.missing = Some(path.clone());
                }
                (p.zeros_like(), p.zeros_like())
            }
        };
        let (p, m, v) = if let Some(groups) = &mut self.fused {
            let key = (weight_decay, p.dtype());
            let at = match groups.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    groups.push((key, Default::default()));
                    groups.len() - 1
                }
            };
            groups[at].1.push(p, g, m, v)
        } else if !self.optim.kernels {
            composed_step(p, g, m, v, self.coef.clone(), step())
        } else if cpu_kernels::applies(&p) {
            cpu_kernels::adamw_step(p, g, m, v, self.coef.clone(), step())
        } else if cube_kernels::applies(&p) && g.dtype() == p.dtype() && m.dtype() == p.dtype() {
            cube_kernels::adamw_step(p, g, m, v, self.coef.clone(), step())
        } else {
            composed_step(p, g, m, v, self.coef.clone(), step())
        };
        self.optim.state.insert(
            path,
            Moments {
                exp_avg: m,
                exp_avg_sq: v,
            },
        );
        let mut value = Tensor::from_inner(p.reshape(shape));
        if let Some(strategy) = checkpointing {
            value = value.with_gradient_checkpointing_strategy(strategy);
        }
        Param::from_mapped_value(id, value.require_grad(), mapper)
    }
}

/// [`cpu_kernels::adamw_step`] composed from tensor ops, for every other device: torch's
/// single-tensor AdamW, one op at a time.
fn composed_step(
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    clip: Option<Tensor<1>>,
    step: AdamWStep,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let g = match clip {
        Some(c) => g * c,
        None => g,
    };
    let m = m.mul_scalar(step.beta1) + g.clone().mul_scalar(1.0 - step.beta1);
    let v = v.mul_scalar(step.beta2) + g.square().mul_scalar(1.0 - step.beta2);
    let denom = v
        .clone()
        .sqrt()
        .div_scalar(step.bias_correction2_sqrt)
        .add_scalar(step.eps);
    let p = match step.decay {
        0.0 => p,
        decay => p.mul_scalar(1.0 - decay),
    };
    let p = p - (m.clone() / denom).mul_scalar(step.step_size);
    (p, m, v)
}
