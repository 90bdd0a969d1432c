//! The model parity tests and the training tests in one test binary, for GPU machines: a
//! binary built with `cuda` links CubeCL's LLVM (~130 MB), and one binary instead of four is
//! what fits the files carried there (`gpu/pack.sh`). The tests are the crates' own files,
//! included as modules; they run on the backend named by `$BERT_TEST_BACKEND`, from the
//! repository root (where the reference files are found), one at a time (`--test-threads 1`):
//! Burn's device RNG is process-wide, and the exact-resume test compares losses bit for bit.

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
