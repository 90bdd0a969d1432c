//! The losses of the heads, with PyTorch's semantics (`CrossEntropyLoss(ignore_index=-100)`,
//! `MSELoss`, `BCEWithLogitsLoss`, all with mean reduction).

use burn::tensor::{Int, Tensor, activation::log_softmax};

use crate::error::{BertError, Result};

/// HF's label value for "no loss at this position".
pub const IGNORE_INDEX: i64 = -100;

/// Mean cross-entropy over the rows whose label is not `ignore_index`.
/// `logits`: `[n, classes]`, `labels`: `[n]`. All rows ignored gives NaN, as in PyTorch.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>, ignore_index: i64) -> Tensor<1> {
    let [n, _] = logits.dims();
    let ignored = labels.clone().equal_elem(ignore_index);
    let keep = ignored.clone().bool_not().float();
    let safe = labels.mask_fill(ignored, 0).reshape([n, 1]);
    // Flex and ndarray (f32), and the CubeCL backends (f32): log-softmax and the pick fused, a
    // hand-written backward; libtorch: torch's log-softmax and its backward.
    let picked = if crate::cpu_kernels::applies(&logits) {
        crate::cpu_kernels::log_softmax_pick(logits, safe.reshape([n]))
    } else if crate::cube_kernels::applies_rows(&logits) {
        crate::cube_kernels::log_softmax_pick(logits, safe.reshape([n]))
    } else if crate::tch_kernels::applies(&logits.device()) {
        crate::tch_kernels::log_softmax_pick(logits, safe.reshape([n]))
    } else {
        log_softmax(logits, 1).gather(1, safe).reshape([n])
    };
    -(picked * keep.clone()).sum() / keep.sum()
}

/// HF's per-token loss (`BertForMaskedLM`, `BertForTokenClassification`, `BertLMHeadModel`):
/// mean cross-entropy of `[b, s, v]` logits against `[b, s]` labels in `0..v`, -100 where no
/// loss. The labels are checked as given, then `adjust`ed (the causal shift, the attention
/// mask's ignored positions) before the loss.
pub fn token_cross_entropy(
    logits: &Tensor<3>,
    labels: Tensor<2, Int>,
    known: Option<crate::model::Bounds>,
    adjust: impl FnOnce(Tensor<2, Int>) -> Tensor<2, Int>,
) -> Result<Tensor<1>> {
    let [b, s, v] = logits.dims();
    check_shape("labels", &labels.dims(), &[b, s])?;
    check_labels("labels", &labels, known, v, Some(IGNORE_INDEX))?;
    let labels = adjust(labels);
    Ok(cross_entropy(
        logits.clone().reshape([b * s, v]),
        labels.reshape([b * s]),
        IGNORE_INDEX,
    ))
}

/// Mean cross-entropy of `[b, classes]` logits against `[b]` labels named `name` (in
/// `0..classes`, -100 where no loss), as HF's NSP and single-label heads compute it.
pub fn checked_cross_entropy(
    name: &str,
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    known: Option<crate::model::Bounds>,
) -> Result<Tensor<1>> {
    let [b, classes] = logits.dims();
    check_shape(name, &labels.dims(), &[b])?;
    check_labels(name, &labels, known, classes, Some(IGNORE_INDEX))?;
    Ok(cross_entropy(logits, labels, IGNORE_INDEX))
}

/// An error naming `name` unless its shape is `expected`.
pub(crate) fn check_shape(name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
    if found != expected {
        return Err(BertError::Input(format!(
            "{name} has shape {found:?}, expected {expected:?}"
        )));
    }
    Ok(())
}

/// Mean squared error.
pub fn mse<const D: usize>(input: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    (input - target).square().mean()
}

/// Mean binary cross-entropy on logits, in the numerically stable form PyTorch uses:
/// `max(x, 0) - x·y + log(1 + exp(-|x|))`.
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let loss =
        logits.clone().clamp_min(0.0) - logits.clone() * target + logits.abs().neg().exp().log1p();
    loss.mean()
}

/// Errors unless every label is in `0..classes` or equal to `ignore_index`. `known`: the
/// labels' range taken on the host ([`crate::HostBounds`]), checked without a device read.
pub fn check_labels<const D: usize>(
    name: &str,
    labels: &Tensor<D, Int>,
    known: Option<crate::model::Bounds>,
    classes: usize,
    ignore_index: Option<i64>,
) -> Result<()> {
    let (min, max) = known.unwrap_or_else(|| {
        let mut l = labels.clone();
        if let Some(ignore) = ignore_index {
            l = l.clone().mask_fill(l.equal_elem(ignore), 0);
        }
        crate::model::min_max(&l)
    });
    if min < 0 || max >= classes as i64 {
        let v = if min < 0 { min } else { max };
        let ignore = ignore_index.map_or(String::new(), |i| format!(" or {i} (ignored)"));
        return Err(BertError::Input(format!(
            "{name} contains {v}; expected a class in 0..{classes}{ignore}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    // torch.nn.functional.cross_entropy(torch.tensor([[1.,2.,3.],[1.,0.,-1.],[0.5,0.5,0.]]),
    //     torch.tensor([2,-100,0])) mean of 0.40760596 and 0.95802009
    #[test]
    fn cross_entropy_ignores_minus_100() {
        let d = crate::backend::test_device();
        let logits =
            Tensor::<2>::from_data([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], &d);
        let labels = Tensor::<1, Int>::from_data(TensorData::from([2i64, -100, 0]), &d);
        let loss: f32 = cross_entropy(logits, labels, IGNORE_INDEX).into_scalar();
        assert!(
            (loss - (0.407_606 + 0.958_020_1) / 2.0).abs() < 1e-6,
            "{loss}"
        );
    }

    // torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([[2., -1.], [0., 30.]]),
    //     torch.tensor([[1., 0.], [1., 0.]])) == 7.9329...
    #[test]
    fn bce_matches_torch() {
        let d = crate::backend::test_device();
        let x = Tensor::<2>::from_data([[2.0, -1.0], [0.0, 30.0]], &d);
        let y = Tensor::<2>::from_data([[1.0, 0.0], [1.0, 0.0]], &d);
        let loss: f32 = bce_with_logits(x, y).into_scalar();
        let expect = (0.126_928 + 0.313_261_7 + std::f32::consts::LN_2 + 30.0) / 4.0;
        assert!((loss - expect).abs() < 1e-5, "{loss} vs {expect}");
    }

    #[test]
    fn out_of_range_labels_are_named() {
        let d = crate::backend::test_device();
        let labels = Tensor::<1, Int>::from_data(TensorData::from([0i64, 5, -100]), &d);
        let e = check_labels("labels", &labels, None, 3, Some(IGNORE_INDEX)).unwrap_err();
        assert!(e.to_string().contains("labels contains 5"), "{e}");
        assert!(check_labels("labels", &labels, None, 6, Some(IGNORE_INDEX)).is_ok());
        // The same from bounds taken on the host, and no device read for them.
        let host = crate::model::bounds([0, 5, -100], Some(IGNORE_INDEX));
        assert_eq!(host, (0, 5));
        let reads = crate::reads::count();
        let e = check_labels("labels", &labels, Some(host), 3, Some(IGNORE_INDEX)).unwrap_err();
        assert!(e.to_string().contains("labels contains 5"), "{e}");
        assert!(check_labels("labels", &labels, Some(host), 6, Some(IGNORE_INDEX)).is_ok());
        assert_eq!(crate::reads::count(), reads, "host bounds need no read");
    }
}
