//! `compare`: merges result files from several machines into one Markdown table and bar
//! charts (tokens/s per backend, and the ratio to PyTorch eager measured in the same run),
//! with an MFU column for GPUs whose peak FLOP/s is known.

use std::path::Path;

use bert_train::plot::{BarGroup, bar_chart};
use serde::{Deserialize, Serialize};

use crate::workload::{Kind, Measurement};

/// What a result file says about where it ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// A short name for tables (`2-core CPU`, `H100`).
    pub label: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    #[serde(default)]
    pub gpu: Option<String>,
}

/// One result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub burn_version: String,
    pub commit: String,
    pub date: String,
    pub torch_version: Option<String>,
    pub transformers_version: Option<String>,
    /// `torch.backends.cuda.matmul.allow_tf32` in the PyTorch rows (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_allow_tf32: Option<bool>,
    /// CubeCL's cache at the start of the run (`found: FILE` / `none: FILE`): whether the CubeCL
    /// rows' `first_step_ms` may start from an earlier run's tuning. Absent without a CubeCL row,
    /// in builds without the `persistence` feature and in older files (every run tuned anew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cubecl_cache: Option<String>,
    pub results: Vec<Measurement>,
}

/// Dense peak FLOP/s (TFLOP/s) of known GPUs by dtype: (name fragment, f32, bf16/f16 tensor).
/// f32 is the CUDA-core (non-tensor-core) peak. Sources: the vendors' data sheets (SXM parts).
pub const GPU_PEAKS: [(&str, f64, f64); 5] = [
    ("H200", 67.0, 989.0),
    ("H100", 67.0, 989.0),
    ("A100", 19.5, 312.0),
    ("L4", 30.3, 121.0),
    ("A10", 31.2, 125.0),
];

/// Model FLOPs utilisation of a row on `machine`, if its GPU's peak is known.
pub fn mfu(m: &Measurement, machine: &Machine) -> Option<f64> {
    let gpu = machine.gpu.as_deref()?;
    // CPU backends (`flex`, `flex/burn-optimizer`, …), and PyTorch rows run on the CPU
    // (`torch-eager:cpu`).
    let base = m.backend.split('/').next().unwrap_or_default();
    let on_cpu = base
        .parse::<bert::backend::Backend>()
        .is_ok_and(|b| !b.spec().gpu);
    if on_cpu || m.backend.ends_with(":cpu") {
        return None;
    }
    let (_, f32_peak, half_peak) = GPU_PEAKS.iter().find(|(n, _, _)| gpu.contains(n))?;
    let peak = if base_dtype(&m.dtype) == "f32" {
        f32_peak
    } else {
        half_peak
    };
    Some(m.achieved_tflops / peak)
}

fn workload_name(m: &Measurement) -> String {
    format!(
        "{} {} s{} b{}",
        match m.workload.kind {
            Kind::Train => "train",
            Kind::Infer => "infer",
            Kind::Pretrain => "pretrain",
        },
        m.workload.config,
        m.workload.seq,
        m.workload.batch
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The precision a row computes in, without how (`bf16-pure`, `bf16-autocast` → `bf16`).
fn base_dtype(dtype: &str) -> &str {
    dtype.split('-').next().unwrap_or(dtype)
}

/// Gives rows without a ratio to PyTorch (a backend benchmarked in another call of the same
/// session, e.g. `tch-cuda` from its own binary) the ratio to the `torch-eager` row of the
/// same machine label, workload and precision, from any of the files.
pub fn fill_ratios(files: &mut [Results]) {
    let eager: Vec<(String, crate::workload::Workload, String, f64)> = files
        .iter()
        .flat_map(|f| {
            f.results
                .iter()
                .filter(|m| m.backend.starts_with("torch-eager:"))
                .map(|m| {
                    (
                        f.machine.label.clone(),
                        m.workload.clone(),
                        base_dtype(&m.dtype).to_string(),
                        m.tokens_per_s,
                    )
                })
        })
        .collect();
    for f in files.iter_mut() {
        for m in f
            .results
            .iter_mut()
            .filter(|m| m.ratio_to_pytorch.is_none())
        {
            m.ratio_to_pytorch = eager
                .iter()
                .find(|(label, w, d, _)| {
                    *label == f.machine.label && *w == m.workload && d == base_dtype(&m.dtype)
                })
                .map(|(.., tps)| m.tokens_per_s / tps);
        }
    }
}

/// The Markdown table of every row of every file.
pub fn markdown(files: &[Results]) -> String {
    let mut out = String::from(
        "| machine | workload | backend | dtype | tokens/s | samples/s | ms/step (median) | ms/step (min) | first step ms | peak RSS MiB | device MiB | × PyTorch eager | MFU |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for f in files {
        for m in &f.results {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} |\n",
                f.machine.label,
                workload_name(m),
                m.backend,
                m.dtype,
                m.tokens_per_s,
                m.samples_per_s,
                m.median_ms,
                m.min_ms,
                m.first_step_ms,
                opt(m.peak_rss_mib, 0),
                opt(m.device_reserved_mib, 0),
                opt(m.ratio_to_pytorch, 2),
                mfu(m, &f.machine).map_or("–".into(), |v| format!("{:.1}%", 100.0 * v)),
            ));
        }
    }
    out
}

/// Bar charts: tokens/s (log scale) and the ratio to PyTorch eager, per workload, one bar per
/// machine and backend: where files measure the same one, the later file's row (pass files
/// oldest first); rows of earlier builds (`NAME@commit`, the "before" of a before/after run)
/// are left out.
pub fn charts(
    files: &[Results],
    tokens_png: &Path,
    ratio_png: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut groups: Vec<BarGroup> = Vec::new();
    let mut ratios: Vec<BarGroup> = Vec::new();
    for f in files {
        for m in &f.results {
            let label = workload_name(m);
            let series = if files.len() > 1 {
                format!("{} {}", f.machine.label, m.backend)
            } else {
                m.backend.clone()
            };
            if m.backend.contains('@') {
                continue;
            }
            let push = |groups: &mut Vec<BarGroup>, v: f64| match groups
                .iter_mut()
                .find(|g| g.label == label)
            {
                Some(g) => match g.bars.iter_mut().find(|(s, _)| *s == series) {
                    Some(bar) => bar.1 = v,
                    None => g.bars.push((series.clone(), v)),
                },
                None => groups.push(BarGroup {
                    label: label.clone(),
                    bars: vec![(series.clone(), v)],
                }),
            };
            push(&mut groups, m.tokens_per_s);
            if let Some(r) = m.ratio_to_pytorch {
                push(&mut ratios, r);
            }
        }
    }
    bar_chart(
        tokens_png,
        "tokens/s per backend (higher is better)",
        "tokens/s",
        &groups,
        true,
    )?;
    if !ratios.is_empty() {
        bar_chart(
            ratio_png,
            "throughput / PyTorch eager, same machine and run",
            "ratio",
            &ratios,
            true,
        )?;
    }
    Ok(())
}
