//! Training batches from a stream made anew each epoch: a corpus larger than memory
//! (`bert_datasets::pretraining::stream`), as HF's `IterableDataset` with `--streaming`.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::TrainError;
use crate::data::BatchSource;

/// A fresh stream of items for an epoch.
pub type ItemStream<T> = Box<dyn Iterator<Item = Result<T, TrainError>>>;

/// Micro-batches of `batch_size` consecutive items of a stream that `open` makes anew for
/// every epoch, passed through a shuffle buffer of `shuffle_buffer` items seeded by
/// `(seed, epoch)` (HF's `IterableDataset.shuffle(buffer_size)`; 0 or 1 keeps the stream's
/// order). Only the buffer and one batch are held. The next batch continues the stream; any
/// other (a resumed run) re-opens the epoch's stream and skips to it, so a resumed run sees
/// the batches the interrupted one would have. `len` comes from one counting pass over the
/// stream when the source is made.
pub struct StreamedBatches<T, B> {
    open: Box<dyn Fn() -> Result<ItemStream<T>, TrainError>>,
    batch_size: usize,
    shuffle_buffer: usize,
    seed: u64,
    collate: Box<dyn Fn(Vec<T>, u64) -> B>,
    len: usize,
    items: usize,
    current: RefCell<Option<Cursor<T>>>,
}

/// Where an epoch's stream is.
struct Cursor<T> {
    epoch: usize,
    next_index: usize,
    items: Shuffled<T>,
}

impl<T: 'static, B> StreamedBatches<T, B> {
    /// Counts the stream's items (one pass) and keeps `open` to stream them each epoch; an
    /// error of the stream, or an empty one, is an error here.
    pub fn new(
        open: impl Fn() -> Result<ItemStream<T>, TrainError> + 'static,
        batch_size: usize,
        shuffle_buffer: usize,
        seed: u64,
        collate: impl Fn(Vec<T>, u64) -> B + 'static,
    ) -> Result<Self, TrainError> {
        if batch_size == 0 {
            return Err(TrainError::Argument("the batch size must be ≥ 1".into()));
        }
        let mut items = 0usize;
        for item in open()? {
            item?;
            items += 1;
        }
        if items == 0 {
            return Err(TrainError::Data("the stream holds no items".into()));
        }
        Ok(Self {
            open: Box::new(open),
            batch_size,
            shuffle_buffer,
            seed,
            collate: Box::new(collate),
            len: items.div_ceil(batch_size),
            items,
            current: RefCell::new(None),
        })
    }

    /// Items per epoch.
    pub fn items(&self) -> usize {
        self.items
    }

    fn open_epoch(&self, epoch: usize) -> Result<Cursor<T>, TrainError> {
        let rng = StdRng::seed_from_u64(
            self.seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        Ok(Cursor {
            epoch,
            next_index: 0,
            items: Shuffled {
                stream: (self.open)()?,
                buffer: Vec::with_capacity(self.shuffle_buffer),
                size: self.shuffle_buffer,
                rng,
            },
        })
    }

    fn next_batch(&self, cursor: &mut Cursor<T>) -> Result<Vec<T>, TrainError> {
        let mut batch = Vec::with_capacity(self.batch_size);
        while batch.len() < self.batch_size {
            match cursor.items.next() {
                Some(item) => batch.push(item?),
                None => break,
            }
        }
        cursor.next_index += 1;
        Ok(batch)
    }
}

impl<T: 'static, B> BatchSource<B> for StreamedBatches<T, B> {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, epoch: usize, index: usize) -> Result<B, TrainError> {
        if index >= self.len {
            return Err(TrainError::Data(format!(
                "batch index {index} out of {}",
                self.len
            )));
        }
        let mut current = self.current.borrow_mut();
        let reuse = matches!(&*current, Some(c) if c.epoch == epoch && c.next_index <= index);
        if !reuse {
            *current = Some(self.open_epoch(epoch)?);
        }
        let cursor = current.as_mut().expect("opened");
        while cursor.next_index < index {
            self.next_batch(cursor)?;
        }
        let items = self.next_batch(cursor)?;
        if items.is_empty() {
            return Err(TrainError::Data(format!(
                "the stream ended before batch {index} of epoch {epoch}: it changed since it was counted"
            )));
        }
        Ok((self.collate)(items, (epoch * self.len + index) as u64))
    }
}

/// A shuffle buffer over a stream: fills `size` items, then yields a random one and puts the
/// next item of the stream in its place; at the end, drains the rest in random order.
struct Shuffled<T> {
    stream: ItemStream<T>,
    buffer: Vec<T>,
    size: usize,
    rng: StdRng,
}

impl<T> Iterator for Shuffled<T> {
    type Item = Result<T, TrainError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.size <= 1 {
            return self.stream.next();
        }
        while self.buffer.len() < self.size {
            match self.stream.next() {
                Some(Ok(item)) => self.buffer.push(item),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.buffer.len());
        Some(Ok(self.buffer.swap_remove(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: usize, batch: usize, buffer: usize) -> StreamedBatches<usize, Vec<usize>> {
        StreamedBatches::new(
            move || Ok(Box::new((0..n).map(Ok)) as ItemStream<usize>),
            batch,
            buffer,
            7,
            |v, _| v,
        )
        .unwrap()
    }

    fn epoch(s: &StreamedBatches<usize, Vec<usize>>, e: usize) -> Vec<usize> {
        (0..s.len()).flat_map(|i| s.get(e, i).unwrap()).collect()
    }

    #[test]
    fn every_item_once_per_epoch_shuffled_by_epoch() {
        let s = source(103, 10, 16);
        assert_eq!((s.len(), s.items()), (11, 103));
        let (a, b) = (epoch(&s, 0), epoch(&s, 1));
        for order in [&a, &b] {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..103).collect::<Vec<_>>());
        }
        assert_ne!(a, (0..103).collect::<Vec<_>>(), "shuffled");
        assert_ne!(a, b, "each epoch its own order");
        assert_eq!(a, epoch(&s, 0), "the same epoch again: the same order");
        // Unshuffled: the stream's order.
        assert_eq!(epoch(&source(25, 4, 0), 3), (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn a_resumed_run_gets_the_same_batches() {
        let s = source(60, 4, 8);
        let all: Vec<Vec<usize>> = (0..s.len()).map(|i| s.get(2, i).unwrap()).collect();
        // A fresh source asked from the middle of epoch 2, as after `--resume`.
        let resumed = source(60, 4, 8);
        for i in [9, 10, 11] {
            assert_eq!(resumed.get(2, i).unwrap(), all[i]);
        }
        // Going back re-opens the stream.
        assert_eq!(resumed.get(2, 3).unwrap(), all[3]);
        assert!(resumed.get(2, s.len()).is_err());
    }

    #[test]
    fn an_empty_or_failing_stream_is_an_error() {
        let empty = StreamedBatches::new(
            || Ok(Box::new(std::iter::empty()) as ItemStream<usize>),
            2,
            0,
            0,
            |v: Vec<usize>, _| v,
        );
        assert!(empty.err().unwrap().to_string().contains("no items"));
        let failing = StreamedBatches::new(
            || {
                Ok(Box::new((0..3usize).map(|i| {
                    if i == 2 {
                        Err(TrainError::Data("line 3: bad".into()))
                    } else {
                        Ok(i)
                    }
                })) as ItemStream<usize>)
            },
            2,
            0,
            0,
            |v: Vec<usize>, _| v,
        );
        assert!(failing.err().unwrap().to_string().contains("line 3: bad"));
    }
}
