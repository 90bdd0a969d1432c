//! Device → host reads made by this workspace's code, counted per thread: a read waits for the
//! device to finish all queued work, so a training step makes none between logging steps (a
//! test counts them). Reads inside Burn itself (e.g. writing a record) are not counted.

use std::cell::Cell;

use burn::tensor::{Int, Tensor};

thread_local! {
    static READS: Cell<usize> = const { Cell::new(0) };
}

fn counted() {
    READS.with(|r| r.set(r.get() + 1));
}

/// How many reads this thread has made through this module.
pub fn count() -> usize {
    READS.with(Cell::get)
}

/// A float tensor's values on the host (one read).
pub fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    counted();
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// An integer tensor's values on the host (one read).
pub fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    counted();
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("converted to i64")
}
