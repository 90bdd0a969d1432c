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
