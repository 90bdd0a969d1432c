//! Training BERT the way it is trained: AdamW with decoupled weight decay and no decay for
//! biases and LayerNorm weights ([`optimizer`]), HF's warmup schedules as Burn
//! `LrScheduler`s ([`schedule`]), global gradient-norm clipping and accumulation
//! ([`gradients`]).

pub mod adamw;
pub mod checkpoint;
pub mod data;
pub mod grad_scaler;
pub mod gradients;
pub mod head_loss;
pub mod optimizer;
pub mod plot;
pub mod schedule;
pub mod streamed;
pub mod tasks;
pub mod trainer;

pub use adamw::AdamW;
pub use data::{BatchSource, InMemoryBatches, ItemBatches};
pub use grad_scaler::GradScaler;
pub use gradients::{accumulate_scaled, clip_grad_norm, global_grad_norm};
pub use head_loss::HeadLoss;
pub use optimizer::{AdamWArgs, ParamGroupSummary, adamw_with_no_decay};
pub use schedule::{HfSchedule, SchedulerType, get_scheduler, warmup_steps};
pub use streamed::{ItemStream, StreamedBatches};
pub use trainer::{
    Metrics, Resume, TrainOutput, TrainTask, TrainingArguments, eval_metrics, train,
};

/// Errors of the training engine, each saying what failed and naming the bad value.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A training argument out of range or inconsistent (caught before training starts, or
    /// when it first applies, e.g. an unknown `metric_for_best_model`).
    #[error("invalid training argument: {0}")]
    Argument(String),
    /// Writing, verifying or loading a checkpoint.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The training data: a batch source that cannot give the batch asked for.
    #[error("training data: {0}")]
    Data(String),
    /// The loss stopped being finite (read at a logging step).
    #[error("training diverged: the loss is {loss} at step {step}")]
    NonFiniteLoss { step: usize, loss: f64 },
    /// A task's evaluation failed (its metrics or post-processing).
    #[error("evaluation: {0}")]
    Evaluation(String),
    /// Drawing a chart of the log.
    #[error("plot: {0}")]
    Plot(String),
    #[error(transparent)]
    Bert(#[from] bert::BertError),
    /// Reading, tokenizing or saving task data (the tokenizer beside a saved model).
    #[error(transparent)]
    Dataset(#[from] bert_datasets::DataError),
}
