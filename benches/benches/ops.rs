//! Criterion micro-benchmarks of BERT's hot operations, forward on BERT-base shapes
//! (batch 8, seq 128, hidden 768, 12 heads): self-attention, LayerNorm, GELU (exact, erf),
//! the embeddings, and the MLM head with the tied decoder (vocab 30522).
//!
//! ```text
//! cargo bench -p benches --bench ops                         # flex
//! BERT_BENCH_BACKEND=wgpu cargo bench -p benches --features wgpu --bench ops
//! ```

use bert::BertConfig;
use bert::attention::BertSelfAttention;
use bert::embeddings::BertEmbeddings;
use bert::heads::prediction::BertLMPredictionHead;
use bert::layer_norm::LayerNorm;
use burn::tensor::{Device, Distribution, Int, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};

const BATCH: usize = 8;
const SEQ: usize = 128;

fn device() -> Device {
    let name = std::env::var("BERT_BENCH_BACKEND").unwrap_or_else(|_| "flex".into());
    bert::backend::device_from_name(&name).expect("backend compiled in")
}

fn config() -> BertConfig {
    BertConfig::tiny(30522, 768, 12, 12)
}

fn hidden(device: &Device) -> Tensor<3> {
    Tensor::random([BATCH, SEQ, 768], Distribution::Normal(0.0, 1.0), device)
}

/// Runs `f` and waits for the device, so that lazy backends are timed fully.
fn synced(device: &Device, f: impl FnOnce() -> Tensor<3>) -> Tensor<3> {
    let out = f();
    device.sync().expect("device sync");
    out
}

fn ops(c: &mut Criterion) {
    let device = device();
    let config = config();
    let x = hidden(&device);
    let mut g = c.benchmark_group(format!("bert-base b{BATCH} s{SEQ}"));
    g.sample_size(10);

    let attention = BertSelfAttention::new(&config, &device);
    g.bench_function("self_attention", |b| {
        b.iter(|| synced(&device, || attention.forward(x.clone(), None, None, None).0))
    });
    let ln = LayerNorm::new(768, 1e-12, &device);
    g.bench_function("layer_norm", |b| {
        b.iter(|| synced(&device, || ln.forward(x.clone())))
    });
    g.bench_function("gelu_exact", |b| {
        b.iter(|| synced(&device, || bert::activation::gelu_exact(x.clone())))
    });
    let embeddings = BertEmbeddings::new(&config, &device);
    let ids: Tensor<2, Int> =
        Tensor::random([BATCH, SEQ], Distribution::Uniform(0.0, 30521.0), &device);
    g.bench_function("embeddings", |b| {
        b.iter(|| synced(&device, || embeddings.forward(ids.clone(), None, None, 0)))
    });
    let head = BertLMPredictionHead::new(&config, &device);
    let words = embeddings.word_embeddings.weight.val();
    g.bench_function("mlm_head_tied", |b| {
        b.iter(|| synced(&device, || head.forward(x.clone(), words.clone())))
    });
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
