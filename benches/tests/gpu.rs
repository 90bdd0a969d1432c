//! Every integration test file of `bert` and `bert-train` in one test binary, for GPU machines
//! and CI's release legs. A binary built with `cuda` links CubeCL's LLVM (~130 MB), and one
//! binary instead of nine is what fits the files carried to a GPU machine (`gpu/pack.sh`); on
//! the CubeCL backends one process also compiles each kernel once, not once per file (2 cores:
//! wgpu on lavapipe 124 s instead of 311 for the nine binaries; cpu 255 s, where CI's last run
//! of the nine took 413). The tests are the crates' own files, included as modules; they run
//! on the backend named by `$BERT_TEST_BACKEND`, one at a time (`--test-threads 1`): Burn's
//! device RNG is process-wide, and the exact-resume test compares losses bit for bit.

// Each file declares its crate's `tests/common` as in its own test binary.
#![allow(clippy::duplicate_mod)]

#[path = "../../bert/tests/parity.rs"]
mod parity;

#[path = "../../bert/tests/checkpointing.rs"]
mod checkpointing;

#[path = "../../train/tests/hf_adamw.rs"]
mod hf_adamw;

#[path = "../../train/tests/trainer.rs"]
mod trainer;

#[path = "../../train/tests/pretraining_learns.rs"]
mod pretraining_learns;

#[path = "../../train/tests/mixed_precision.rs"]
mod mixed_precision;

#[path = "../../bert/tests/errors.rs"]
mod errors;

#[path = "../../bert/tests/ops.rs"]
mod ops;

#[path = "../../train/tests/fill_mask.rs"]
mod fill_mask;
