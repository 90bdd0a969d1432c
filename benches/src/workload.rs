//! One benchmark workload (train or infer, a BERT size, batch × seq) and its measurement.

use std::time::Instant;

use bert::{
    BertConfig, BertForPreTraining, BertForSequenceClassification, BertInput, HostBounds,
    MaskedPositions, SequenceClassificationLabels,
};
use bert_train::{AdamW, AdamWArgs, adamw_with_no_decay, clip_grad_norm};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::memory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `BertForSequenceClassification`: forward, loss, backward, clipping, AdamW.
    Train,
    /// `BertForSequenceClassification` forward.
    Infer,
    /// `BertForPreTraining` (MLM at 15% + NSP), trained as `train`; the MLM head on the masked
    /// positions only (`forward_masked`), or with `--mlm-all-positions` on every position as HF.
    Pretrain,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "train" => Ok(Kind::Train),
            "infer" => Ok(Kind::Infer),
            "pretrain" => Ok(Kind::Pretrain),
            o => Err(format!(
                "unknown workload `{o}`; expected train, infer or pretrain"
            )),
        }
    }
}

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: Kind,
    /// `tiny`, `small` or `base` ([`bench_config`]).
    pub config: String,
    pub batch: usize,
    pub seq: usize,
}

/// The BERT sizes: tiny (2 layers, hidden 128, 2 heads), small (4, 256, 4) and base (12, 768,
/// 12: `bert-base-uncased`); vocabulary 30522, intermediate 4 × hidden.
pub fn bench_config(name: &str) -> Result<BertConfig, String> {
    let (layers, hidden, heads) = match name {
        "tiny" => (2, 128, 2),
        "small" => (4, 256, 4),
        "base" => (12, 768, 12),
        o => {
            return Err(format!(
                "unknown config `{o}`; expected tiny, small or base"
            ));
        }
    };
    let mut c = BertConfig::tiny(30522, hidden, layers, heads);
    c.max_position_embeddings = 512;
    c.set_num_labels(2);
    Ok(c)
}

/// Parameters outside the embeddings (encoder, pooler, classifier).
pub fn non_embedding_params(c: &BertConfig) -> usize {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h;
    c.num_hidden_layers * layer + h * h + h + h * c.num_labels() + c.num_labels()
}

/// FLOPs per token as MFU counts them: `6N` (train) or `2N` (inference), N the non-embedding
/// parameters (the attention score/value products are left out, as in the usual MFU figure).
pub fn flops_per_token(c: &BertConfig, kind: Kind, _seq: usize) -> f64 {
    let n = non_embedding_params(c) as f64;
    match kind {
        Kind::Train | Kind::Pretrain => 6.0 * n,
        Kind::Infer => 2.0 * n,
    }
}

/// One row of results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    #[serde(flatten)]
    pub workload: Workload,
    pub backend: String,
    pub dtype: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub tokens_per_s: f64,
    pub samples_per_s: f64,
    /// The first run: compilation, autotuning and allocation included.
    pub first_step_ms: f64,
    pub peak_rss_mib: Option<f64>,
    pub device_reserved_mib: Option<f64>,
    pub iters: usize,
    pub flops_per_token: f64,
    pub achieved_tflops: f64,
    /// Tokens/s over PyTorch eager's in the same run (filled in when PyTorch ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_pytorch: Option<f64>,
    /// `--profile`: where a training step's time goes (medians over the timed steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Breakdown>,
}

/// A training step in phases, each followed by a device sync (`--profile`; the syncs make the
/// step slower than an unprofiled one on asynchronous backends). `*_host_ms`: the time the host
/// spends recording and launching the phase's work; `*_wait_ms`: the time then spent waiting
/// for the device to finish it. A phase whose host time dominates is bound by dispatch, not by
/// the device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Breakdown {
    /// Forward pass and loss.
    pub forward_host_ms: f64,
    pub forward_wait_ms: f64,
    /// `loss.backward()`.
    pub backward_host_ms: f64,
    pub backward_wait_ms: f64,
    /// Global-norm clipping and the AdamW step.
    pub optimizer_host_ms: f64,
    pub optimizer_wait_ms: f64,
    /// Float ops the forward pass records on the autodiff device (new autodiff tensors, by
    /// Burn's node ids): the graph the backward pass walks. A fused kernel counts once. (The
    /// backward pass and the optimizer run on the inner device and record none.)
    #[serde(default)]
    pub forward_ops: f64,
    /// Device → host reads per step by this workspace's code (`bert::reads`): each waits for
    /// the device.
    #[serde(default)]
    pub host_reads: f64,
}

/// What `--profile` collects per timed step: the phases' [host done, device done] times and
/// the counts of [`Breakdown`] (forward ops, host reads).
#[derive(Debug, Default)]
struct Profile {
    times: Vec<[f64; 6]>,
    counts: Vec<[f64; 2]>,
}

/// Burn's next autodiff node id (taking one): the difference of two is the number of autodiff
/// tensors created in between, plus one.
fn next_node() -> u64 {
    burn::backend::autodiff::NodeId::new().value
}

/// The model input: deterministic token ids in `[1, vocab)` (no padding, full attention), with
/// their range taken on the host, as a collator gives it (no device read to check them).
fn input(batch: usize, seq: usize, vocab: usize, device: &Device) -> BertInput {
    let v = input_ids(batch, seq, vocab);
    let bounds = HostBounds {
        input_ids: Some(bert::bounds(v.iter().copied(), None)),
        ..Default::default()
    };
    BertInput::new(Tensor::from_data(TensorData::new(v, [batch, seq]), device))
        .with_host_bounds(bounds)
}

/// Token ids in `[1, vocab)` from a xorshift64 stream (`pytorch_bench.py` draws the same).
fn input_ids(batch: usize, seq: usize, vocab: usize) -> Vec<i64> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..batch * seq)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % (vocab as u64 - 1)) as i64
        })
        .collect()
}

/// Training steps of `model` on `loss` (forward + loss), then backward, global-norm clipping
/// at 1.0 and an AdamW step (weight decay 0.01 with HF's no-decay group), as `runs` says.
fn train_loop<M: Module>(
    mut model: M,
    loss: impl Fn(&M) -> Result<Tensor<1>, Error>,
    ad: &Device,
    runs: Runs,
    first: &mut Option<f64>,
    times: &mut Vec<f64>,
    profile: &mut Profile,
) -> Result<(), Error> {
    let sync = |d: &Device| d.sync().map_err(|e| format!("{e:?}"));
    let adamw = AdamWArgs {
        weight_decay: 0.01,
        ..AdamWArgs::default()
    };
    let mut optim = AdamW::new(&adamw);
    if runs.composed_optimizer {
        optim = optim.composed();
    }
    let mut burn_optim = adamw_with_no_decay(&adamw);
    let total = runs.warmup.max(1) + runs.iters.max(1);
    for k in 0..total {
        let t = Instant::now();
        // Phase boundaries: [host done, device done] for each of the three phases.
        let mut marks = [0.0f64; 6];
        let mut mark = |i: usize, d: &Device| -> Result<(), Error> {
            if runs.profile {
                marks[2 * i] = t.elapsed().as_secs_f64() * 1e3;
                sync(d)?;
                marks[2 * i + 1] = t.elapsed().as_secs_f64() * 1e3;
            }
            Ok(())
        };
        let (reads, node) = (bert::reads::count(), next_node());
        let l = bert::precision::autocast(runs.autocast, || loss(&model))?;
        mark(0, ad)?;
        let forward_ops = next_node() - node - 1;
        let grads = l.backward();
        mark(1, ad)?;
        let mut grads = GradientsParams::from_grads(grads, &model);
        model = if runs.burn_optimizer {
            clip_grad_norm(&model, &mut grads, 1.0);
            burn_optim.step(1e-5, model, grads)
        } else {
            optim.step(1e-5, model, grads, 1.0)?.0
        };
        mark(2, ad)?;
        let counts = [forward_ops as f64, (bert::reads::count() - reads) as f64];
        sync(ad)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if runs.profile && k >= runs.warmup.max(1) {
            let mut d = [0.0; 6];
            for i in 0..6 {
                d[i] = marks[i] - if i == 0 { 0.0 } else { marks[i - 1] };
            }
            profile.times.push(d);
            profile.counts.push(counts);
        }
        record(k, ms, runs.warmup, first, times);
        if times.iter().sum::<f64>() / 1e3 > runs.budget_s {
            break;
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

type Error = Box<dyn std::error::Error>;

/// How to run a workload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Runs {
    /// Unmeasured runs first (at least one: the time to first step).
    pub warmup: usize,
    /// Timed runs (at least one).
    pub iters: usize,
    /// Stop timing once the timed runs add up to this many seconds (never fewer than one).
    pub budget_s: f64,
    /// Training: sync after each phase and report the [`Breakdown`].
    pub profile: bool,
    /// Training: Burn's `ModuleOptimizer` after `clip_grad_norm` (the trainer's optimizer
    /// before `bert_train::AdamW`), for before/after comparisons in one run.
    pub burn_optimizer: bool,
    /// Training: the trainer's AdamW composed from tensor ops (`AdamW::composed`), not the
    /// device's fused kernels.
    #[serde(default)]
    pub composed_optimizer: bool,
    /// LayerNorm, softmax, GELU, dropout and cross-entropy composed from tensor ops on the
    /// CubeCL backends
    /// (`bert::cube_kernels::set_layer_kernels(false)`), not this crate's kernels.
    #[serde(default)]
    pub composed_layers: bool,
    /// Pretraining: the MLM head over every position (HF's `BertForPreTraining.forward`)
    /// instead of the masked rows only.
    pub mlm_all_positions: bool,
    /// Mixed precision of the forward pass (`bert::precision`).
    pub autocast: bert::precision::Autocast,
    /// Training: gradient checkpointing (each encoder layer recomputed, `bert::checkpoint`).
    pub gradient_checkpointing: bool,
}

impl Runs {
    /// The training device.
    fn autodiff(&self, device: &Device) -> Device {
        let ad = device.clone().autodiff();
        if self.gradient_checkpointing {
            ad.gradient_checkpointing()
        } else {
            ad
        }
    }
}

/// The pretraining labels: a position is labelled with its own id where the xorshift64 stream
/// from `0x9E37_79B9_7F4A_7C15` draws < 15 of 100 (`pytorch_bench.py` draws the same).
fn mlm_labels(input_ids: &[i64]) -> Vec<i64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    input_ids
        .iter()
        .map(|&id| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 100 < 15 { id } else { -100 }
        })
        .collect()
}

/// Runs `w` on `device` as `runs` says.
pub fn measure(
    w: &Workload,
    device: &Device,
    backend: &str,
    dtype: &str,
    runs: Runs,
) -> Result<Measurement, Error> {
    // Restored when this measurement ends, however it ends.
    struct LayerKernels;
    impl Drop for LayerKernels {
        fn drop(&mut self) {
            bert::cube_kernels::set_layer_kernels(true);
        }
    }
    let _restore = LayerKernels;
    bert::cube_kernels::set_layer_kernels(!runs.composed_layers);
    let Runs {
        warmup,
        iters,
        budget_s,
        ..
    } = runs;
    let config = bench_config(&w.config)?;
    if w.seq > config.max_position_embeddings {
        return Err(format!("seq {} > max_position_embeddings", w.seq).into());
    }
    // The pages the previous workload left in the device's pools go back to the driver, so the
    // memory reserved after this one is what it needed (with and without checkpointing).
    device.memory_cleanup();
    memory::reset_peak_rss();
    let mut times = Vec::new();
    let mut first = None;
    let total = warmup.max(1) + iters.max(1);
    let labels: Vec<i64> = (0..w.batch).map(|i| (i % 2) as i64).collect();
    let mut profile = Profile::default();
    match w.kind {
        Kind::Train => {
            let ad = runs.autodiff(device);
            ad.seed(0);
            let model = BertForSequenceClassification::new(&config, &ad);
            let input = input(w.batch, w.seq, config.vocab_size, &ad).with_label_values(&labels);
            let labels = SequenceClassificationLabels::Classes(Tensor::from_data(
                TensorData::new(labels, [w.batch]),
                &ad,
            ));
            let loss = |m: &BertForSequenceClassification| -> Result<Tensor<1>, Error> {
                Ok(m.forward(input.clone(), Some(labels.clone()))?
                    .loss
                    .expect("labels"))
            };
            train_loop(model, loss, &ad, runs, &mut first, &mut times, &mut profile)?;
        }
        Kind::Pretrain => {
            let ad = runs.autodiff(device);
            ad.seed(0);
            let model = BertForPreTraining::new(&config, &ad);
            let ids = input_ids(w.batch, w.seq, config.vocab_size);
            let mlm = mlm_labels(&ids);
            let mut input = input(w.batch, w.seq, config.vocab_size, &ad).with_label_values(&mlm);
            input.host_bounds.next_sentence_label =
                Some(bert::bounds(labels.iter().copied(), None));
            let masked = MaskedPositions::from_labels(&mlm, w.seq, 1, &ad)?;
            let mlm = Tensor::<2, Int>::from_data(TensorData::new(mlm, [w.batch, w.seq]), &ad);
            let nsp = Tensor::<1, Int>::from_data(TensorData::new(labels, [w.batch]), &ad);
            let all = runs.mlm_all_positions;
            let loss = |m: &BertForPreTraining| -> Result<Tensor<1>, Error> {
                Ok(if all {
                    m.forward(input.clone(), Some(mlm.clone()), Some(nsp.clone()))?
                        .loss
                        .expect("labels")
                } else {
                    m.forward_masked(input.clone(), &masked, nsp.clone())?.loss
                })
            };
            train_loop(model, loss, &ad, runs, &mut first, &mut times, &mut profile)?;
        }
        Kind::Infer => {
            let model = BertForSequenceClassification::new(&config, device);
            let input = input(w.batch, w.seq, config.vocab_size, device);
            for k in 0..total {
                let t = Instant::now();
                let logits = bert::precision::autocast(runs.autocast, || {
                    model.forward(input.clone(), None)
                })?
                .logits;
                let _ = logits.into_data();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                record(k, ms, warmup, &mut first, &mut times);
                if times.iter().sum::<f64>() / 1e3 > budget_s {
                    break;
                }
            }
        }
    }
    if times.is_empty() {
        times.push(first.unwrap_or(f64::NAN));
    }
    let med = median(times.clone());
    let tokens = (w.batch * w.seq) as f64;
    let fpt = flops_per_token(&config, w.kind, w.seq);
    let tokens_per_s = tokens / (med / 1e3);
    Ok(Measurement {
        workload: w.clone(),
        backend: backend.to_string(),
        dtype: dtype.to_string(),
        median_ms: med,
        min_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
        tokens_per_s,
        samples_per_s: w.batch as f64 / (med / 1e3),
        first_step_ms: first.unwrap_or(f64::NAN),
        peak_rss_mib: memory::peak_rss_mib(),
        device_reserved_mib: memory::device_reserved_mib(device),
        iters: times.len(),
        flops_per_token: fpt,
        achieved_tflops: tokens_per_s * fpt / 1e12,
        ratio_to_pytorch: None,
        breakdown: (!profile.times.is_empty()).then(|| {
            let m = |i: usize| median(profile.times.iter().map(|p| p[i]).collect());
            let c = |i: usize| median(profile.counts.iter().map(|p| p[i]).collect());
            Breakdown {
                forward_host_ms: m(0),
                forward_wait_ms: m(1),
                backward_host_ms: m(2),
                backward_wait_ms: m(3),
                optimizer_host_ms: m(4),
                optimizer_wait_ms: m(5),
                forward_ops: c(0),
                host_reads: c(1),
            }
        }),
    })
}

/// Run `k`: the first is the time to first step, runs after the warmup are measured.
fn record(k: usize, ms: f64, warmup: usize, first: &mut Option<f64>, times: &mut Vec<f64>) {
    if k == 0 {
        *first = Some(ms);
    }
    if k >= warmup.max(1) {
        times.push(ms);
    }
}
