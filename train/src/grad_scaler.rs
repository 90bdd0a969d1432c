//! Loss scaling for `--fp16`, with PyTorch's `torch.amp.GradScaler` semantics: the loss is
//! multiplied by `scale` before the backward pass so that small f16 gradients do not flush to
//! zero; the gradients are divided by it before clipping; a step whose gradients hold an inf
//! or NaN is skipped (no optimizer step, no scheduler step) and the scale halves; after
//! `growth_interval` clean steps in a row it doubles.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The scaler's state (saved in each checkpoint as [`SCALER_FILE`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    pub scale: f64,
    /// Clean steps since the last change of scale.
    pub growth_tracker: usize,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: usize,
    /// Steps skipped so far: the learning-rate schedule is that many steps behind the trainer.
    #[serde(default)]
    pub skipped_steps: usize,
}

/// The scaler's file in a checkpoint.
pub const SCALER_FILE: &str = "scaler.json";

impl Default for GradScaler {
    /// PyTorch's: scale 2^16, ×2 every 2,000 clean steps, ×0.5 on overflow.
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_tracker: 0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            skipped_steps: 0,
        }
    }
}

impl GradScaler {
    /// After a step whose unscaled gradient norm is `grad_norm`: whether to apply the step
    /// (false when the norm is not finite), and the scale for the next one.
    pub fn update(&mut self, grad_norm: f64) -> bool {
        if !grad_norm.is_finite() {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
            self.skipped_steps += 1;
            return false;
        }
        self.growth_tracker += 1;
        if self.growth_tracker == self.growth_interval {
            self.scale *= self.growth_factor;
            self.growth_tracker = 0;
        }
        true
    }

    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let path = dir.join(SCALER_FILE);
        std::fs::write(&path, serde_json::to_string(self).expect("serializes"))
            .map_err(|e| TrainError::Checkpoint(format!("cannot write {}: {e}", path.display())))
    }

    pub fn load(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(SCALER_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            TrainError::Checkpoint(format!(
                "{}: {e} (was the checkpoint written without --fp16?)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::GradScaler;

    #[test]
    fn skips_backs_off_and_grows_as_torch() {
        let mut s = GradScaler {
            growth_interval: 3,
            ..GradScaler::default()
        };
        assert_eq!(s.scale, 65536.0);
        assert!(!s.update(f64::INFINITY), "an overflow skips the step");
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 0));
        assert!(!s.update(f64::NAN));
        assert_eq!(s.scale, 16384.0);
        assert!(s.update(1.0) && s.update(2.0));
        assert_eq!((s.scale, s.growth_tracker), (16384.0, 2));
        assert!(
            s.update(0.5),
            "the third clean step in a row grows the scale"
        );
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 0));
        assert!(!s.update(f64::INFINITY));
        assert_eq!((s.scale, s.growth_tracker), (16384.0, 0));
    }
}
