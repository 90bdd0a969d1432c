//! What the trainer reads: micro-batches by (epoch, index), reproducibly shuffled by seed and
//! epoch, so that a resumed run sees exactly the batches the interrupted one would have.

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

/// Batches held in memory, optionally shuffled each epoch by `(seed, epoch)`.
#[derive(Debug, Clone)]
pub struct InMemoryBatches<B> {
    pub batches: Vec<B>,
    pub shuffle: bool,
    pub seed: u64,
}

impl<B> InMemoryBatches<B> {
    pub fn new(batches: Vec<B>, shuffle: bool, seed: u64) -> Self {
        Self {
            batches,
            shuffle,
            seed,
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
        let order = epoch_order(self.batches.len(), self.shuffle, self.seed, epoch);
        let i = *order.get(index).ok_or_else(|| {
            TrainError::Argument(format!("batch index {index} out of {}", self.batches.len()))
        })?;
        Ok(self.batches[i].clone())
    }
}

/// Examples re-shuffled every epoch by `(seed, epoch)` and collated into micro-batches of
/// `batch_size` (the last one may be smaller), so that every epoch mixes batches anew. The
/// collate function gets the micro-batch number (`epoch * len + index`) as a seed for
/// anything random done at batching time, such as dynamic MLM masking.
pub struct ItemBatches<I, B> {
    pub items: Vec<I>,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    #[allow(clippy::type_complexity)]
    collate: Box<dyn Fn(Vec<I>, u64) -> B>,
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
            collate: Box::new(collate),
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
            return Err(TrainError::Argument(format!(
                "batch index {index} out of {}",
                self.len()
            )));
        }
        let order = epoch_order(n, self.shuffle, self.seed, epoch);
        let end = ((index + 1) * self.batch_size).min(n);
        let items = order[index * self.batch_size..end]
            .iter()
            .map(|&i| self.items[i].clone())
            .collect();
        Ok((self.collate)(items, (epoch * self.len() + index) as u64))
    }
}
