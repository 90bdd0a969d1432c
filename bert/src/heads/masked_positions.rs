//! `MaskedPositions`: the labelled rows of an MLM batch, gathered on the host, so that the
//! vocabulary-sized prediction head runs on those rows only.
//!
//! The original BERT feeds `masked_lm_positions` / `masked_lm_ids` (`run_pretraining.py`,
//! `max_predictions_per_seq`) for the same reason: at the usual 15% masking, ~85% of the
//! `[batch · seq, vocab]` logits HF computes carry no label. The loss is the same mean
//! cross-entropy over the labelled positions (padding rows carry -100).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{BertError, Result};
use crate::loss::{IGNORE_INDEX, check_labels, cross_entropy};
use crate::model::{Bounds, bounds};

#[derive(Debug, Clone)]
pub struct MaskedPositions {
    /// Flat row indices `batch_index · seq + position` into the `[batch · seq]` hidden states, `[n]`.
    pub positions: Tensor<1, Int>,
    /// The label of each row, `[n]`; -100 for the padding rows.
    pub labels: Tensor<1, Int>,
    /// The labels' range (the ignore index left out), taken on the host.
    pub label_bounds: Bounds,
    /// How many rows carry a label (the rest are padding).
    pub num_labelled: usize,
}

impl MaskedPositions {
    /// From HF-style labels: `[batch, seq]` row-major, -100 where there is no loss. The row
    /// count is padded up to a multiple of `pad_to_multiple_of` (≥ 1) with ignored rows, so that
    /// GPU backends see few distinct shapes.
    pub fn from_labels(
        labels: &[i64],
        seq: usize,
        pad_to_multiple_of: usize,
        device: &Device,
    ) -> Result<Self> {
        if seq == 0 || !labels.len().is_multiple_of(seq) {
            return Err(BertError::Input(format!(
                "masked positions: {} labels do not make rows of seq length {seq}",
                labels.len()
            )));
        }
        if pad_to_multiple_of == 0 {
            return Err(BertError::Input(
                "masked positions: pad_to_multiple_of must be at least 1".into(),
            ));
        }
        let (mut positions, mut picked): (Vec<i64>, Vec<i64>) = labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l != IGNORE_INDEX)
            .map(|(i, &l)| (i as i64, l))
            .unzip();
        let num_labelled = positions.len();
        let n = num_labelled.div_ceil(pad_to_multiple_of).max(1) * pad_to_multiple_of;
        positions.resize(n, 0);
        picked.resize(n, IGNORE_INDEX);
        let label_bounds = bounds(picked.iter().copied(), Some(IGNORE_INDEX));
        Ok(Self {
            positions: Tensor::from_data(TensorData::new(positions, [n]), device),
            labels: Tensor::from_data(TensorData::new(picked, [n]), device),
            label_bounds,
            num_labelled,
        })
    }

    /// The mean cross-entropy of `logits` (`[n, vocab]`, one row per position) against the
    /// labels, after checking them against the vocabulary on the host.
    pub fn loss(&self, logits: Tensor<2>) -> Result<Tensor<1>> {
        let vocab = logits.dims()[1];
        check_labels(
            "labels",
            &self.labels,
            Some(self.label_bounds),
            vocab,
            Some(IGNORE_INDEX),
        )?;
        Ok(cross_entropy(logits, self.labels.clone(), IGNORE_INDEX))
    }

    /// Rows of `hidden` (`[batch, seq, h]`) at the positions → `[n, h]`.
    pub fn gather(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, s, h] = hidden.dims();
        hidden.reshape([b * s, h]).select(0, self.positions.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_the_labelled_rows_padded_with_ignored_rows() {
        let d = crate::backend::test_device();
        let labels = [-100, 7, -100, -100, 3, -100, 9, -100];
        let m = MaskedPositions::from_labels(&labels, 4, 4, &d).unwrap();
        assert_eq!(m.num_labelled, 3);
        assert_eq!(m.label_bounds, (3, 9));
        let ints = |t: &Tensor<1, Int>| t.to_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(ints(&m.positions), [1, 4, 6, 0]);
        assert_eq!(ints(&m.labels), [7, 3, 9, -100]);
        assert!(MaskedPositions::from_labels(&labels, 3, 1, &d).is_err());
        assert!(MaskedPositions::from_labels(&labels, 4, 0, &d).is_err());
    }
}
