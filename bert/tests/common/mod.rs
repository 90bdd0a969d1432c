//! Helpers shared by the integration tests: the backend under test, the committed HF
//! references, the real fixtures, and tolerance checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bert::tensors_file::{HostTensor, NamedTensors, read_tensors};
use burn::tensor::Device;

/// The backend under test: `$BERT_TEST_BACKEND` (default `flex`).
pub fn device() -> Device {
    bert::backend::test_device()
}

/// `bert/tests/reference`: where the checkout this binary was built from has it, else under
/// the working directory (a test binary carried to a GPU machine and run from the repository
/// root, `gpu/run.sh`).
pub fn reference_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bert/tests/reference");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("bert/tests/reference")
    }
}

/// `bert/tests/reference/<case>`: an HF model directory with HF's inputs and outputs.
pub fn case_dir(case: &str) -> PathBuf {
    reference_dir().join(case)
}

pub fn case_json(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(case_dir(case).join("case.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn inputs(case: &str) -> NamedTensors {
    read_tensors(case_dir(case).join("inputs.safetensors")).unwrap()
}

pub fn outputs(case: &str) -> NamedTensors {
    read_tensors(case_dir(case).join("outputs.safetensors")).unwrap()
}

/// The real fixtures (`shared/fixtures/fetch.sh`), fetched if needed.
pub fn fixtures() -> PathBuf {
    bert::fixtures::dir().unwrap_or_else(|e| panic!("{e}"))
}

/// Largest absolute difference; panics on shape mismatch.
pub fn max_abs_diff(name: &str, got: &HostTensor, want: &HostTensor) -> f32 {
    assert_eq!(got.shape, want.shape, "{name}: shape");
    got.to_f32()
        .iter()
        .zip(want.to_f32())
        .map(|(a, b)| {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                (a - b).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// Every tensor of `want` whose name passes `filter` is in `got` and within `tol` (absolute).
pub fn assert_close(
    case: &str,
    got: &NamedTensors,
    want: &NamedTensors,
    tol: f32,
    filter: impl Fn(&str) -> bool,
) {
    let mut checked = 0;
    for (name, w) in want.iter().filter(|(n, _)| filter(n)) {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("{case}: output `{name}` missing; got {:?}", got.keys()));
        let diff = max_abs_diff(name, g, w);
        assert!(
            diff <= tol,
            "{case}.{name}: max abs diff {diff:e} > {tol:e}"
        );
        checked += 1;
    }
    assert!(checked > 0, "{case}: nothing compared");
}
