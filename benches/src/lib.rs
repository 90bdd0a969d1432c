//! Throughput of BERT training and inference on any backend, in the same shapes as
//! `pytorch_bench.py` measures HF transformers, so each row carries a ratio to PyTorch taken
//! on the same machine in the same run.
//!
//! Workload: `BertForSequenceClassification` (2 labels) on random token ids, batch × seq.
//! - `train`: forward + cross-entropy + backward + global-norm clipping + AdamW step (two
//!   parameter groups), synced to the host each step.
//! - `infer`: forward only, without autodiff (`Module::valid`), logits read back.
//!
//! Each is run `warmup` times (the first run's time is reported as time to first step:
//! kernel compilation and autotuning on GPU backends), then `iters` times; the median is
//! reported with the minimum. FLOPs per token (for MFU): `6·N` for training and `2·N` for
//! inference, N = non-embedding parameters (result files before 2026-12 also counted the
//! attention products, `12·L·H·S`; each row carries its own `flops_per_token`).

pub mod compare;
pub mod memory;
pub mod soak;
pub mod workload;

pub use workload::{Measurement, Workload, bench_config, measure};

/// The Burn version these benchmarks are built with (pinned in the workspace).
pub const BURN_VERSION: &str = "0.22.1";
