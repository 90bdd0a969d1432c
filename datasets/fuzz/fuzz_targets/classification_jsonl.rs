#![no_main]

use bert_datasets::tasks::Format;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::classification(data, Format::Jsonl));
