//! What the trainer reads: micro-batches by (epoch, index), reproducibly shuffled by seed and
//! epoch, so that a resumed run sees exactly the batches the interrupted one would have.

use std::cell::RefCell;
use std::rc::Rc;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::TrainError;

/// A source of training micro-batches.
pub trait BatchSource<B> {
    /// Micro-batches in one epoch.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`-th micro-batch of `epoch`.
    fn get(&self, epoch: usize, index: usize) -> Result<B, TrainError>;
}

/// The order of the epoch asked last, kept so that the micro-batches of one epoch compute it
/// once, not once each (the trainer asks for them in epoch order).
#[derive(Debug, Clone, Default)]
struct EpochOrder(RefCell<Option<(usize, Rc<Vec<usize>>)>>);

impl EpochOrder {
    fn get(&self, epoch: usize, compute: impl FnOnce() -> Vec<usize>) -> Rc<Vec<usize>> {
        let mut cached = self.0.borrow_mut();
        match &*cached {
            Some((e, order)) if *e == epoch => order.clone(),
            _ => {
                let order = Rc::new(compute());
                *cached = Some((epoch, order.clone()));
                order
            }
        }
    }
}

/// Batches held in memory, optionally shuffled each epoch by `(seed, epoch)`. The epoch's order
/// is computed once and kept: set the fields before the first [`BatchSource::get`].
#[derive(Debug, Clone)]
pub struct InMemoryBatches<B> {
    pub batches: Vec<B>,
    pub shuffle: bool,
    pub seed: u64,
    order: EpochOrder,
}

impl<B> InMemoryBatches<B> {
    pub fn new(batches: Vec<B>, shuffle: bool, seed: u64) -> Self {
        Self {
            batches,
            shuffle,
            seed,
            order: EpochOrder::default(),
        }
    }
}

/// The order of `n` items in `epoch`: identity, or a permutation fixed by `(seed, epoch)`.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
    }
    order
}

impl<B: Clone> BatchSource<B> for InMemoryBatches<B> {
    fn len(&self) -> usize {
        self.batches.len()
    }

    fn get(&self, epoch: usize, index: usize) -> Result<B, TrainError> {
        let order = self.order.get(epoch, || {
            epoch_order(self.batches.len(), self.shuffle, self.seed, epoch)
        });
        let i = *order.get(index).ok_or_else(|| {
            TrainError::Data(format!("batch index {index} out of {}", self.batches.len()))
        })?;
        Ok(self.batches[i].clone())
    }
}

/// HF's `get_length_grouped_indices` (the `LengthGroupedSampler` of
/// `train_sampling_strategy="group_by_length"`, `--group_by_length` before transformers 5):
/// the epoch's order is split into mega-batches of `mult * batch_size` items
/// (`mult = min(n / (4 * batch_size), 50)`, at least 1), each sorted by length, longest first,
/// and the longest item overall is swapped to the very front (so that an out-of-memory shows
/// on the first step). Batches then hold items of similar length: far less padding. HF's
/// Trainer passes the batch size of one optimizer step (micro-batch × accumulation steps).
pub fn length_grouped_order(
    lengths: &[usize],
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let mut order = epoch_order(lengths.len(), shuffle, seed, epoch);
    if order.is_empty() {
        return order;
    }
    let batch_size = batch_size.max(1);
    let mult = (lengths.len() / (batch_size * 4)).clamp(1, 50);
    let mega = mult * batch_size;
    for chunk in order.chunks_mut(mega) {
        // A stable sort, as Python's `sorted`.
        chunk.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
    }
    let mut longest = 0;
    for start in (0..order.len()).step_by(mega) {
        if lengths[order[start]] > lengths[order[longest]] {
            longest = start;
        }
    }
    order.swap(0, longest);
    order
}

/// Examples re-shuffled every epoch by `(seed, epoch)` and collated into micro-batches of
/// `batch_size` (the last one may be smaller), so that every epoch mixes batches anew. The
/// collate function gets the micro-batch number (`epoch * len + index`) as a seed for
/// anything random done at batching time, such as dynamic MLM masking. With
/// [`ItemBatches::group_by_length`], items of similar length share batches as with HF's
/// `--group_by_length` ([`length_grouped_order`]). The epoch's order is computed once per
/// epoch and kept: set the fields before the first [`BatchSource::get`].
pub struct ItemBatches<I, B> {
    pub items: Vec<I>,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Item lengths and the grouping batch size when batches are grouped by length.
    pub lengths: Option<(Vec<usize>, usize)>,
    #[allow(clippy::type_complexity)]
    collate: Box<dyn Fn(Vec<I>, u64) -> B>,
    cached_order: EpochOrder,
}

impl<I, B> ItemBatches<I, B> {
    pub fn new(
        items: Vec<I>,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        collate: impl Fn(Vec<I>, u64) -> B + 'static,
    ) -> Self {
        Self {
            items,
            batch_size: batch_size.max(1),
            shuffle,
            seed,
            lengths: None,
            collate: Box::new(collate),
            cached_order: EpochOrder::default(),
        }
    }

    /// [`Self::new`] collated by a Burn `Batcher` (the `bert_datasets::collate` collators) on
    /// `device`.
    pub fn from_batcher(
        items: Vec<I>,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        batcher: impl Batcher<I, B> + 'static,
        device: &Device,
    ) -> Self
    where
        I: 'static,
        B: 'static,
    {
        let device = device.clone();
        Self::new(items, batch_size, shuffle, seed, move |items, _| {
            batcher.batch(items, &device)
        })
    }

    /// Group items of similar length into batches (HF's length-grouped sampling, see
    /// [`length_grouped_order`]); `length` gives an item's length in tokens, `group_size` the
    /// items of one optimizer step (`batch_size × gradient_accumulation_steps`, as HF's Trainer).
    pub fn group_by_length(mut self, length: impl Fn(&I) -> usize, group_size: usize) -> Self {
        self.lengths = Some((self.items.iter().map(length).collect(), group_size));
        self.cached_order = EpochOrder::default();
        self
    }

    /// The order of the items in `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        match &self.lengths {
            Some((lengths, group_size)) => {
                length_grouped_order(lengths, *group_size, self.shuffle, self.seed, epoch)
            }
            None => epoch_order(self.items.len(), self.shuffle, self.seed, epoch),
        }
    }
}

impl<I: Clone, B> BatchSource<B> for ItemBatches<I, B> {
    fn len(&self) -> usize {
        self.items.len().div_ceil(self.batch_size)
    }

    fn get(&self, epoch: usize, index: usize) -> Result<B, TrainError> {
        let n = self.items.len();
        if index >= self.len() {
            return Err(TrainError::Data(format!(
                "batch index {index} out of {}",
                self.len()
            )));
        }
        let order = self.cached_order.get(epoch, || self.order(epoch));
        let end = ((index + 1) * self.batch_size).min(n);
        let items = order[index * self.batch_size..end]
            .iter()
            .map(|&i| self.items[i].clone())
            .collect();
        Ok((self.collate)(items, (epoch * self.len() + index) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_grouped_order_matches_hf_rules() {
        // 40 items, batch 2: mult = min(40 / 8, 50) = 5, mega-batches of 10.
        let lengths: Vec<usize> = (0..40).map(|i| (i * 7919) % 97).collect();
        let order = length_grouped_order(&lengths, 2, true, 3, 1);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..40).collect::<Vec<_>>(), "a permutation");
        assert_eq!(
            lengths[order[0]],
            *lengths.iter().max().unwrap(),
            "longest first"
        );
        // Inside each mega-batch (past its first item, which the swap may have changed)
        // lengths never increase.
        for (m, chunk) in order.chunks(10).enumerate() {
            for w in chunk[1..].windows(2) {
                assert!(lengths[w[0]] >= lengths[w[1]], "mega-batch {m}: {chunk:?}");
            }
        }
        assert!(length_grouped_order(&[], 2, true, 3, 1).is_empty());
        // Same (seed, epoch), same order; another epoch, another order.
        assert_eq!(order, length_grouped_order(&lengths, 2, true, 3, 1));
        assert_ne!(order, length_grouped_order(&lengths, 2, true, 3, 2));
    }

    #[test]
    fn batches_follow_the_epoch_order_across_epochs() {
        let items: Vec<usize> = (0..10).collect();
        let b =
            ItemBatches::new(items, 3, true, 7, |v, _| v).group_by_length(|&i| (i * 37) % 11, 3);
        for epoch in [0, 1, 0, 2] {
            let got: Vec<usize> = (0..b.len())
                .flat_map(|i| b.get(epoch, i).unwrap())
                .collect();
            assert_eq!(got, b.order(epoch), "epoch {epoch}");
        }
        let m = InMemoryBatches::new((0..5).collect::<Vec<usize>>(), true, 3);
        for epoch in [4, 1, 4] {
            let got: Vec<usize> = (0..5).map(|i| m.get(epoch, i).unwrap()).collect();
            assert_eq!(got, epoch_order(5, true, 3, epoch), "epoch {epoch}");
        }
    }

    #[test]
    fn grouping_by_length_cuts_padding() {
        let lengths: Vec<usize> = (0..400).map(|i| 5 + (i * 31) % 60).collect();
        let padded = |order: &[usize]| -> usize {
            order
                .chunks(8)
                .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap())
                .sum()
        };
        let random = padded(&epoch_order(400, true, 0, 0));
        let grouped = padded(&length_grouped_order(&lengths, 8, true, 0, 0));
        let real: usize = lengths.iter().sum();
        assert!(grouped < random, "{grouped} vs {random}");
        assert!(
            (grouped as f64) < 1.2 * real as f64,
            "{grouped} vs {real} real tokens"
        );
    }
}
