//! Checkpoints written atomically and verified before they are loaded.
//!
//! `output_dir/checkpoint-{step}/` holds `model.bpk` (Burn record), `optimizer.json` and
//! `optimizer.safetensors` ([`crate::AdamW`]), `scheduler.bpk` and
//! `trainer_state.json`, which lists every file with its size. A checkpoint
//! is written into `.tmp-checkpoint-{step}`, each file synced, then renamed into place: a crash
//! leaves either the whole checkpoint or a temporary folder that is never read. Loading checks
//! the listed sizes first, so a truncated or partial checkpoint is refused with a clear error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

pub const STATE_FILE: &str = "trainer_state.json";
pub const MODEL_FILE: &str = "model.bpk";
pub const SCHEDULER_FILE: &str = "scheduler.bpk";

/// HF's `trainer_state.json`, plus the file manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub global_step: usize,
    pub epoch: f64,
    pub max_steps: usize,
    pub best_metric: Option<f64>,
    pub best_model_checkpoint: Option<String>,
    /// Evaluations since the best one (early stopping).
    pub patience_used: usize,
    pub log_history: Vec<serde_json::Value>,
    /// File name → size in bytes, checked before loading.
    pub files: BTreeMap<String, u64>,
}

fn io(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Checkpoint(format!("{}: {e}", path.display()))
}

/// `checkpoint-{step}` folders of `output_dir`, oldest first.
pub fn list_checkpoints(output_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = fs::read_dir(output_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Writes a checkpoint: `write_files` fills the temporary folder, then the manifest is added
/// and the folder renamed to `checkpoint-{step}`. Keeps the newest `keep` checkpoints, never
/// the one just written nor `protect`. A failure (a full disk, an unwritable folder) removes the
/// temporary folder and says that the checkpoints already there are untouched.
pub fn save(
    output_dir: &Path,
    state: &TrainerState,
    keep: Option<usize>,
    protect: Option<&Path>,
    write_files: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let step = state.global_step;
    let tmp = output_dir.join(format!(".tmp-checkpoint-{step}"));
    let dest = output_dir.join(format!("checkpoint-{step}"));
    let written = write(output_dir, state, &tmp, &dest, write_files);
    if let Err(e) = written {
        let why = match e {
            TrainError::Checkpoint(m) => m,
            other => other.to_string(),
        };
        let _ = fs::remove_dir_all(&tmp);
        let kept: Vec<String> = list_checkpoints(output_dir)
            .into_iter()
            .filter(|(s, _)| *s != step)
            .map(|(s, _)| format!("checkpoint-{s}"))
            .collect();
        let kept = if kept.is_empty() {
            "there is no earlier checkpoint".to_string()
        } else {
            format!("the earlier checkpoints are intact: {}", kept.join(", "))
        };
        return Err(TrainError::Checkpoint(format!(
            "checkpoint-{step} was not saved ({why}); {kept}"
        )));
    }
    if let Some(keep) = keep {
        let all = list_checkpoints(output_dir);
        let excess = all.len().saturating_sub(keep.max(1));
        for (_, old) in all.into_iter().take(excess) {
            if Some(old.as_path()) != protect && old != dest {
                fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
            }
        }
    }
    Ok(dest)
}

fn write(
    output_dir: &Path,
    state: &TrainerState,
    tmp: &Path,
    dest: &Path,
    write_files: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).map_err(|e| io(tmp, e))?;
    }
    fs::create_dir_all(tmp).map_err(|e| io(tmp, e))?;
    write_files(tmp)?;
    let mut state = state.clone();
    state.files.clear();
    for entry in fs::read_dir(tmp).map_err(|e| io(tmp, e))? {
        let entry = entry.map_err(|e| io(tmp, e))?;
        let path = entry.path();
        fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&path, e))?;
        let size = entry.metadata().map_err(|e| io(&path, e))?.len();
        state
            .files
            .insert(entry.file_name().to_string_lossy().into(), size);
    }
    let state_path = tmp.join(STATE_FILE);
    let json = serde_json::to_string_pretty(&state).expect("state serializes");
    fs::write(&state_path, json).map_err(|e| io(&state_path, e))?;
    fs::File::open(&state_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&state_path, e))?;
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(|e| io(dest, e))?;
    }
    fs::rename(tmp, dest).map_err(|e| io(dest, e))?;
    if let Ok(d) = fs::File::open(output_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and verifies a checkpoint's state: every listed file exists with its listed size.
pub fn verify(dir: &Path) -> Result<TrainerState, TrainError> {
    let state_path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&state_path).map_err(|e| {
        TrainError::Checkpoint(format!(
            "{} is not a complete checkpoint: cannot read {STATE_FILE}: {e}",
            dir.display()
        ))
    })?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| {
        TrainError::Checkpoint(format!("{}: corrupted {STATE_FILE}: {e}", dir.display()))
    })?;
    for required in [
        MODEL_FILE,
        crate::adamw::STATE_FILE,
        crate::adamw::MOMENTS_FILE,
        SCHEDULER_FILE,
    ] {
        if !state.files.contains_key(required) {
            return Err(TrainError::Checkpoint(format!(
                "{}: {STATE_FILE} lists no {required}",
                dir.display()
            )));
        }
    }
    for (name, size) in &state.files {
        let path = dir.join(name);
        let found = fs::metadata(&path).map(|m| m.len()).map_err(|e| {
            TrainError::Checkpoint(format!(
                "{}: partial checkpoint: {name}: {e}",
                dir.display()
            ))
        })?;
        if found != *size {
            return Err(TrainError::Checkpoint(format!(
                "{}: partial or corrupted checkpoint: {name} has {found} bytes, expected {size}",
                dir.display()
            )));
        }
    }
    Ok(state)
}
