//! HF's learning-rate schedules (`transformers.get_scheduler`) as Burn `LrScheduler`s.
//!
//! Each is HF's `LambdaLR`: the LR of optimizer step `k` (counting from 0) is
//! `base_lr · λ(k)`, so the first warmup step has LR 0. `step()` returns the LR for the next
//! optimizer step and advances; the step count is the scheduler's whole state.

use std::f64::consts::PI;
use std::str::FromStr;

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::LearningRate;

use crate::TrainError;

/// HF `SchedulerType` names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SchedulerType {
    Constant,
    ConstantWithWarmup,
    Linear,
    /// Half a cosine by default (`num_cycles = 0.5`).
    Cosine {
        num_cycles: f64,
    },
    /// Hard restarts (`num_cycles = 1` by default).
    CosineWithRestarts {
        num_cycles: f64,
    },
    /// Decay to `lr_end` (1e-7) with `power` (1.0).
    Polynomial {
        lr_end: f64,
        power: f64,
    },
}

impl SchedulerType {
    pub const NAMES: [&'static str; 6] = [
        "constant",
        "constant_with_warmup",
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::ConstantWithWarmup => "constant_with_warmup",
            Self::Linear => "linear",
            Self::Cosine { .. } => "cosine",
            Self::CosineWithRestarts { .. } => "cosine_with_restarts",
            Self::Polynomial { .. } => "polynomial",
        }
    }
}

impl FromStr for SchedulerType {
    type Err = TrainError;

    /// An HF name with HF's default arguments.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        Ok(match s {
            "constant" => Self::Constant,
            "constant_with_warmup" => Self::ConstantWithWarmup,
            "linear" => Self::Linear,
            "cosine" => Self::Cosine { num_cycles: 0.5 },
            "cosine_with_restarts" => Self::CosineWithRestarts { num_cycles: 1.0 },
            "polynomial" => Self::Polynomial {
                lr_end: 1e-7,
                power: 1.0,
            },
            other => {
                return Err(TrainError::Argument(format!(
                    "unknown lr scheduler `{other}`; expected one of: {}",
                    Self::NAMES.join(", ")
                )));
            }
        })
    }
}

/// One of HF's schedules, stepping like `LambdaLR`.
#[derive(Debug, Clone, PartialEq)]
pub struct HfSchedule {
    pub kind: SchedulerType,
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// The optimizer step whose LR the next `step()` returns.
    pub current_step: usize,
}

/// HF `get_scheduler(name, optimizer(lr = base_lr), num_warmup_steps, num_training_steps)`.
pub fn get_scheduler(
    kind: SchedulerType,
    base_lr: f64,
    warmup_steps: usize,
    total_steps: usize,
) -> Result<HfSchedule, TrainError> {
    let bad = |m: String| Err(TrainError::Argument(m));
    if !(base_lr.is_finite() && base_lr >= 0.0) {
        return bad(format!(
            "learning rate must be a non-negative number, got {base_lr}"
        ));
    }
    if total_steps == 0 && !matches!(kind, SchedulerType::Constant) {
        return bad(format!("{} needs num_training_steps > 0", kind.name()));
    }
    if warmup_steps > total_steps
        && !matches!(
            kind,
            SchedulerType::Constant | SchedulerType::ConstantWithWarmup
        )
    {
        return bad(format!(
            "warmup steps ({warmup_steps}) exceed the total training steps ({total_steps})"
        ));
    }
    if let SchedulerType::Polynomial { lr_end, power } = kind {
        if lr_end > base_lr {
            return bad(format!(
                "lr_end ({lr_end}) must be smaller than the initial lr ({base_lr})"
            ));
        }
        if !(power.is_finite() && power > 0.0) {
            return bad(format!("polynomial power must be > 0, got {power}"));
        }
    }
    if let SchedulerType::Cosine { num_cycles } | SchedulerType::CosineWithRestarts { num_cycles } =
        kind
        && !(num_cycles.is_finite() && num_cycles > 0.0)
    {
        return bad(format!("num_cycles must be > 0, got {num_cycles}"));
    }
    Ok(HfSchedule {
        kind,
        base_lr,
        warmup_steps,
        total_steps,
        current_step: 0,
    })
}

/// HF `TrainingArguments.get_warmup_steps`: a value ≥ 1 is a step count, below 1 a ratio of
/// the total (`ceil(total · ratio)`).
pub fn warmup_steps(warmup: f64, total_steps: usize) -> Result<usize, TrainError> {
    if !(warmup.is_finite() && warmup >= 0.0) {
        return Err(TrainError::Argument(format!(
            "warmup must be ≥ 0, got {warmup}"
        )));
    }
    Ok(if warmup >= 1.0 {
        warmup as usize
    } else {
        (total_steps as f64 * warmup).ceil() as usize
    })
}

impl HfSchedule {
    /// HF's `lr_lambda(step)`: the LR multiplier of optimizer step `step`.
    pub fn lambda(&self, step: usize) -> f64 {
        let (warmup, total) = (self.warmup_steps as f64, self.total_steps as f64);
        let s = step as f64;
        let warming = step < self.warmup_steps && !matches!(self.kind, SchedulerType::Constant);
        if warming {
            return s / warmup.max(1.0);
        }
        let progress = (s - warmup) / (total - warmup).max(1.0);
        match self.kind {
            SchedulerType::Constant | SchedulerType::ConstantWithWarmup => 1.0,
            SchedulerType::Linear => ((total - s) / (total - warmup).max(1.0)).max(0.0),
            SchedulerType::Cosine { num_cycles } => {
                (0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos())).max(0.0)
            }
            SchedulerType::CosineWithRestarts { num_cycles } => {
                if progress >= 1.0 {
                    0.0
                } else {
                    (0.5 * (1.0 + (PI * ((num_cycles * progress) % 1.0)).cos())).max(0.0)
                }
            }
            SchedulerType::Polynomial { lr_end, power } => {
                let lr_init = self.base_lr;
                if step > self.total_steps {
                    lr_end / lr_init
                } else {
                    let remaining = 1.0 - (s - warmup) / (total - warmup);
                    ((lr_init - lr_end) * remaining.powf(power) + lr_end) / lr_init
                }
            }
        }
    }

    /// The LR of optimizer step `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        self.base_lr * self.lambda(step)
    }
}

impl LrScheduler for HfSchedule {
    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.current_step);
        self.current_step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("current_step", self.current_step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("current_step") {
            self.current_step = step as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bert::fixtures::assert_err;

    /// Every schedule over 100 steps equals `transformers.get_scheduler`'s LRs (1e-12), from
    /// `tests/reference/schedules.json` (made by `make_train_reference.py`).
    #[test]
    fn six_schedules_equal_hf() {
        let text = include_str!("../tests/reference/schedules.json");
        let reference: serde_json::Value = serde_json::from_str(text).unwrap();
        let base_lr = reference["base_lr"].as_f64().unwrap();
        let warmup = reference["warmup"].as_u64().unwrap() as usize;
        let total = reference["total"].as_u64().unwrap() as usize;
        let mut checked = 0;
        for (name, case) in reference["schedules"].as_object().unwrap() {
            let kw = &case["kwargs"];
            let kind = match name.parse::<SchedulerType>().unwrap() {
                SchedulerType::Cosine { .. } => SchedulerType::Cosine {
                    num_cycles: kw["num_cycles"].as_f64().unwrap(),
                },
                SchedulerType::CosineWithRestarts { .. } => SchedulerType::CosineWithRestarts {
                    num_cycles: kw["num_cycles"].as_f64().unwrap(),
                },
                SchedulerType::Polynomial { .. } => SchedulerType::Polynomial {
                    lr_end: kw["lr_end"].as_f64().unwrap(),
                    power: kw["power"].as_f64().unwrap(),
                },
                k => k,
            };
            let mut schedule = get_scheduler(kind, base_lr, warmup, total).unwrap();
            for (step, want) in case["lrs"].as_array().unwrap().iter().enumerate() {
                let got = schedule.step();
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-12,
                    "{name} step {step}: {got} vs {want}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 6);
    }

    #[test]
    fn record_round_trip_resumes_the_step() {
        let mut a = get_scheduler(SchedulerType::Linear, 1.0, 3, 10).unwrap();
        for _ in 0..4 {
            a.step();
        }
        let mut b = get_scheduler(SchedulerType::Linear, 1.0, 3, 10).unwrap();
        b.load_record(a.to_record());
        assert_eq!(a.step(), b.step());
        assert_eq!(b.current_step, 5);
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_err(
            get_scheduler(SchedulerType::Linear, 1e-3, 20, 10),
            &["warmup steps (20) exceed the total training steps (10)"],
        );
        assert_err(
            get_scheduler(SchedulerType::Cosine { num_cycles: 0.5 }, 1e-3, 0, 0),
            &["needs num_training_steps > 0"],
        );
        assert_err(
            "cosine_annealing".parse::<SchedulerType>(),
            &["unknown lr scheduler `cosine_annealing`", "polynomial"],
        );
        assert_err(
            get_scheduler(
                SchedulerType::Polynomial {
                    lr_end: 1.0,
                    power: 1.0,
                },
                1e-3,
                0,
                10,
            ),
            &["lr_end"],
        );
    }

    #[test]
    fn warmup_ratio_rounds_up_like_hf() {
        assert_eq!(warmup_steps(0.1, 95).unwrap(), 10);
        assert_eq!(warmup_steps(25.0, 95).unwrap(), 25);
        assert_eq!(warmup_steps(0.0, 95).unwrap(), 0);
        assert!(warmup_steps(-0.5, 95).is_err());
    }
}
