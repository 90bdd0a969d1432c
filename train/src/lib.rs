//! Training BERT the way it is trained: AdamW with decoupled weight decay and no decay for
//! biases and LayerNorm weights ([`optimizer`]), HF's warmup schedules as Burn
//! `LrScheduler`s ([`schedule`]), global gradient-norm clipping and accumulation
//! ([`gradients`]).

pub mod adamw;
pub mod checkpoint;
pub mod data;
pub mod gradients;
pub mod optimizer;
pub mod plot;
pub mod schedule;
pub mod trainer;

pub use adamw::AdamW;
pub use data::{BatchSource, InMemoryBatches, ItemBatches};
pub use gradients::{accumulate_scaled, clip_grad_norm, global_grad_norm};
pub use optimizer::{AdamWArgs, ParamGroupSummary, adamw_with_no_decay};
pub use schedule::{HfSchedule, SchedulerType, get_scheduler, warmup_steps};
pub use trainer::{Metrics, Resume, TrainOutput, TrainTask, TrainingArguments, train};

/// Errors of the training engine, each naming the bad value.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training argument: {0}")]
    Argument(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    Bert(#[from] bert::BertError),
}
