//! Multi-tensor AdamW with global-norm clipping: the update of every parameter as one pass
//! over a flat buffer per parameter group, as PyTorch's `foreach`/`fused` AdamW does.
//!
//! Burn's `ModuleOptimizer` updates each parameter tensor on its own: ~15 tensor operations per
//! parameter (3,000 for BERT-base), plus ~3 per tensor for the global norm and one more to
//! scale, each a kernel launch on a GPU and an allocation on a CPU. Here the gradients of a
//! group are concatenated once, the norm, the clipping, both moments and the update run on that
//! one vector (about 15 operations per group), and the parameters are sliced back out of it.
//! The arithmetic is Burn's `AdamW` (the same operations in the same order), which matches
//! torch's `AdamW` (see `tests/hf_adamw.rs`).
//!
//! Groups as in [`crate::optimizer`]: weight decay on everything but biases and LayerNorm
//! weights. The state (step, first and second moments per group, and the parameter paths they
//! belong to) is saved as safetensors and loaded on the training device.

use std::collections::HashMap;
use std::path::Path;

use bert::tensors_file::{HostTensor, NamedTensors, read_tensors, write_tensors};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use crate::TrainError;
use crate::optimizer::{AdamWArgs, no_decay_group};

/// The parameters of one group and its moments, flat in the module's visiting order.
#[derive(Debug, Clone, Default)]
struct Group {
    weight_decay: f32,
    /// Module paths of the group's parameters, fixed at the first step (checked on load).
    paths: Vec<String>,
    exp_avg: Option<Tensor<1>>,
    exp_avg_sq: Option<Tensor<1>>,
}

/// AdamW (decoupled weight decay, bias correction) over all parameters of a module in two
/// groups, with torch's global-norm clipping folded into the same pass.
#[derive(Debug, Clone)]
pub struct MultiTensorAdamW {
    args: AdamWArgs,
    /// 0: weight decay; 1: no decay (biases, LayerNorm weights).
    groups: [Group; 2],
    /// Steps taken (Adam's `t`).
    time: i32,
}

/// Where each parameter sits in its group's flat buffer.
struct Slot {
    group: usize,
    offset: usize,
    len: usize,
}

impl MultiTensorAdamW {
    pub fn new(args: &AdamWArgs) -> Self {
        let group = |weight_decay| Group {
            weight_decay,
            ..Group::default()
        };
        Self {
            args: *args,
            groups: [group(args.weight_decay), group(0.0)],
            time: 0,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.time as usize
    }

    /// Clips the gradients to `max_grad_norm` (`f64::INFINITY`: measure only) and applies one
    /// AdamW step at learning rate `lr`; returns the module and the gradient norm before
    /// clipping, on the device (nothing is read back). A parameter without a gradient this
    /// step counts as a zero gradient (its moments decay and weight decay applies; torch would
    /// skip it).
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
        max_grad_norm: f64,
    ) -> Result<(M, Tensor<1>), TrainError> {
        let mut gather = Gather {
            path: Vec::new(),
            no_decay: no_decay_group(),
            grads: &mut grads,
            params: [Vec::new(), Vec::new()],
            grad: [Vec::new(), Vec::new()],
            paths: [Vec::new(), Vec::new()],
            slots: HashMap::new(),
            sizes: [0, 0],
        };
        module.visit(&mut gather);
        let Gather {
            params,
            grad,
            paths,
            slots,
            ..
        } = gather;
        for ((g, paths), name) in self.groups.iter_mut().zip(paths).zip(GROUP_NAMES) {
            if g.paths.is_empty() && g.exp_avg.is_none() {
                g.paths = paths;
            } else if g.paths != paths {
                return Err(TrainError::Checkpoint(format!(
                    "the optimizer state of group `{name}` is for {} parameters ({}…), the model has {} ({}…)",
                    g.paths.len(),
                    g.paths.first().map_or("", String::as_str),
                    paths.len(),
                    paths.first().map_or("", String::as_str)
                )));
            }
        }
        let flat = |v: Vec<Tensor<1>>| (!v.is_empty()).then(|| Tensor::cat(v, 0));
        let grad: Vec<Option<Tensor<1>>> = grad.into_iter().map(flat).collect();
        let params: Vec<Option<Tensor<1>>> = params.into_iter().map(flat).collect();

        // torch.nn.utils.clip_grad_norm_: one norm over everything, scale by
        // min(1, max_norm / (norm + 1e-6)) on the device.
        let squares: Vec<Tensor<1>> = grad
            .iter()
            .flatten()
            .map(|g| g.clone().square().sum())
            .collect();
        let norm = match squares.len() {
            0 => {
                let device = module.devices().pop().unwrap_or_default();
                return Ok((module, Tensor::zeros([1], &device)));
            }
            _ => squares
                .into_iter()
                .reduce(|a, b| a + b)
                .expect("not empty")
                .sqrt(),
        };
        let coef = max_grad_norm.is_finite().then(|| {
            let max = Tensor::<1>::full([1], max_grad_norm, &norm.device());
            (max / norm.clone().add_scalar(1e-6)).clamp_max(1.0)
        });

        self.time += 1;
        let (b1, b2, eps) = (
            self.args.adam_beta1,
            self.args.adam_beta2,
            self.args.adam_epsilon,
        );
        let mut updated: [Option<Tensor<1>>; 2] = [None, None];
        for (i, (g, p)) in grad.into_iter().zip(params).enumerate() {
            let (Some(mut g), Some(p)) = (g, p) else {
                continue;
            };
            if let Some(c) = &coef {
                g = g * c.clone();
            }
            let group = &mut self.groups[i];
            // Burn's AdaptiveMomentumW and AdamW, in their order of operations.
            let m = match group.exp_avg.take() {
                Some(m) => m.mul_scalar(b1).add(g.clone().mul_scalar(1.0 - b1)),
                None => g.clone().mul_scalar(1.0 - b1),
            };
            let v = match group.exp_avg_sq.take() {
                Some(v) => v.mul_scalar(b2).add(g.square().mul_scalar(1.0 - b2)),
                None => g.square().mul_scalar(1.0 - b2),
            };
            let m_hat = m.clone().div_scalar(1f32 - b1.powi(self.time));
            let v_hat = v.clone().div_scalar(1f32 - b2.powi(self.time));
            let delta = m_hat.div(v_hat.sqrt().add_scalar(eps));
            let decay = lr * group.weight_decay as f64;
            let decayed = if decay == 0.0 {
                p
            } else {
                p.mul_scalar(1.0 - decay)
            };
            updated[i] = Some(decayed - delta.mul_scalar(lr));
            group.exp_avg = Some(m);
            group.exp_avg_sq = Some(v);
        }
        let module = module.map(&mut Scatter {
            slots: &slots,
            updated: &updated,
        });
        Ok((module, norm))
    }

    /// Writes the state into `dir`: [`STATE_FILE`] (the step and each group's parameter paths)
    /// and [`MOMENTS_FILE`] (`{group}.exp_avg`, `{group}.exp_avg_sq`, f32).
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let err = |f: &str, e: &dyn std::fmt::Display| {
            TrainError::Checkpoint(format!("cannot write {}: {e}", dir.join(f).display()))
        };
        let mut moments = NamedTensors::new();
        for (name, g) in GROUP_NAMES.iter().zip(&self.groups) {
            for (what, t) in [("exp_avg", &g.exp_avg), ("exp_avg_sq", &g.exp_avg_sq)] {
                if let Some(t) = t {
                    moments.insert(format!("{name}.{what}"), HostTensor::from_float(t.clone()));
                }
            }
        }
        write_tensors(dir.join(MOMENTS_FILE), &moments, &[]).map_err(|e| err(MOMENTS_FILE, &e))?;
        let state = serde_json::json!({
            "step": self.time,
            "groups": GROUP_NAMES.iter().zip(&self.groups)
                .map(|(n, g)| (n.to_string(), serde_json::json!(g.paths)))
                .collect::<serde_json::Map<_, _>>(),
        });
        std::fs::write(dir.join(STATE_FILE), state.to_string()).map_err(|e| err(STATE_FILE, &e))
    }

    /// Loads the state [`save`](Self::save) wrote, onto `device`; the hyperparameters stay
    /// this optimizer's.
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
        let moments = read_tensors(dir.join(MOMENTS_FILE)).map_err(|e| bad(MOMENTS_FILE, &e))?;
        for (name, g) in GROUP_NAMES.iter().zip(self.groups.iter_mut()) {
            g.paths = serde_json::from_value(state["groups"][name].clone())
                .map_err(|e| bad(STATE_FILE, &format!("group `{name}`: {e}")))?;
            let tensor = |what: &str| -> Result<Option<Tensor<1>>, TrainError> {
                moments
                    .get(&format!("{name}.{what}"))
                    .map(|t| t.float::<1>(what, device).map(Tensor::inner))
                    .transpose()
                    .map_err(|e| bad(MOMENTS_FILE, &e))
            };
            g.exp_avg = tensor("exp_avg")?;
            g.exp_avg_sq = tensor("exp_avg_sq")?;
        }
        Ok(self)
    }
}

/// The optimizer's step and parameter paths in a checkpoint.
pub const STATE_FILE: &str = "optimizer.json";
/// The optimizer's moments in a checkpoint.
pub const MOMENTS_FILE: &str = "optimizer.safetensors";

const GROUP_NAMES: [&str; 2] = ["decay", "no_decay"];

/// Collects the flat parameters and gradients of each group, in visiting order.
struct Gather<'a> {
    path: Vec<String>,
    no_decay: ParamGroup,
    grads: &'a mut GradientsParams,
    params: [Vec<Tensor<1>>; 2],
    grad: [Vec<Tensor<1>>; 2],
    paths: [Vec<String>; 2],
    slots: HashMap<ParamId, Slot>,
    sizes: [usize; 2],
}

impl ModuleVisitor for Gather<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        let path = self.path.join(".");
        let group = usize::from(self.no_decay.matches(&param.id, Some(&path)));
        let value = param.val().inner();
        let len = value.shape().num_elements();
        let grad = match self.grads.remove::<D>(param.id) {
            Some(g) => g.reshape([len]),
            None => Tensor::zeros([len], &value.device()),
        };
        self.grad[group].push(grad);
        self.params[group].push(value.reshape([len]));
        self.paths[group].push(path);
        self.slots.insert(
            param.id,
            Slot {
                group,
                offset: self.sizes[group],
                len,
            },
        );
        self.sizes[group] += len;
    }
}

/// Puts the updated values back into the parameters, keeping their ids and autodiff settings.
struct Scatter<'a> {
    slots: &'a HashMap<ParamId, Slot>,
    updated: &'a [Option<Tensor<1>>; 2],
}

impl ModuleMapper for Scatter<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some((slot, flat)) = self
            .slots
            .get(&id)
            .and_then(|s| Some((s, self.updated[s.group].as_ref()?)))
        else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let mut value = Tensor::from_inner(
            flat.clone()
                .slice(slot.offset..slot.offset + slot.len)
                .reshape(shape),
        );
        if let Some(strategy) = checkpointing {
            value = value.with_gradient_checkpointing_strategy(strategy);
        }
        Param::from_mapped_value(id, value.require_grad(), mapper)
    }
}
