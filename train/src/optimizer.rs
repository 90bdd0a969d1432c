//! AdamW as BERT is fine-tuned: torch's decoupled weight decay and bias correction (Burn's
//! `AdamW` computes the same update), HF's defaults, and two parameter groups by path: every
//! bias and every LayerNorm weight get no weight decay (the BERT recipe's
//! `no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']`), the rest the configured decay.

use burn::module::{Module, ParamGroup};
use burn::optim::{AdamWConfig, ModuleOptimizer};

/// HF `TrainingArguments` defaults for AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWArgs {
    /// 5e-5
    pub learning_rate: f64,
    /// 0.9
    pub adam_beta1: f32,
    /// 0.999
    pub adam_beta2: f32,
    /// 1e-8
    pub adam_epsilon: f32,
    /// 0.0
    pub weight_decay: f32,
}

impl Default for AdamWArgs {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Module paths that get no weight decay: biases and LayerNorm weights.
pub const NO_DECAY_PATTERNS: [&str; 2] = [r"(^|\.)bias$", r"(^|\.)LayerNorm\.weight$"];

/// The no-decay group, matched on Burn module paths.
pub fn no_decay_group() -> ParamGroup {
    ParamGroup::from_any_regexes(NO_DECAY_PATTERNS.to_vec()).expect("valid patterns")
}

fn adamw(args: &AdamWArgs, weight_decay: f32) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(args.adam_beta1)
        .with_beta_2(args.adam_beta2)
        .with_epsilon(args.adam_epsilon)
        .with_weight_decay(weight_decay)
}

/// AdamW over the whole module with `weight_decay`, and a second group (Burn's
/// `ModuleOptimizer::with_group`) with no decay for biases and LayerNorm weights.
pub fn adamw_with_no_decay(args: &AdamWArgs) -> ModuleOptimizer {
    ModuleOptimizer::from(adamw(args, args.weight_decay).build()).with_group(
        no_decay_group(),
        adamw(args, 0.0).build(),
        None,
    )
}

/// How many tensors and scalars each group holds (printed in the run summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamGroupSummary {
    pub decay_tensors: usize,
    pub decay_params: usize,
    pub no_decay_tensors: usize,
    pub no_decay_params: usize,
    /// Paths in the no-decay group.
    pub no_decay_paths: Vec<String>,
}

impl ParamGroupSummary {
    pub fn of<M: Module>(module: &M) -> Self {
        let group = no_decay_group();
        let mut s = Self::default();
        for p in bert::hub::float_params(module) {
            let path = p.path.join(".");
            if group.matches(&p.id, Some(&path)) {
                s.no_decay_tensors += 1;
                s.no_decay_params += p.num_elements;
                s.no_decay_paths.push(path);
            } else {
                s.decay_tensors += 1;
                s.decay_params += p.num_elements;
            }
        }
        s
    }
}

impl std::fmt::Display for ParamGroupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AdamW groups: weight decay on {} tensors ({} params); no decay on {} tensors ({} params: biases, LayerNorm weights)",
            self.decay_tensors, self.decay_params, self.no_decay_tensors, self.no_decay_params
        )
    }
}
