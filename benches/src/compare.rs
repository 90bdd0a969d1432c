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
    // CPU backends, and PyTorch rows run on the CPU (`torch-eager:cpu`).
    if ["flex", "ndarray", "cpu", "tch"].contains(&m.backend.as_str())
        || m.backend.ends_with(":cpu")
    {
        return None;
    }
    let (_, f32_peak, half_peak) = GPU_PEAKS.iter().find(|(n, _, _)| gpu.contains(n))?;
    let peak = if m.dtype == "f32" {
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
        },
        m.workload.config,
        m.workload.seq,
        m.workload.batch
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The Markdown table of every row of every file.
pub fn markdown(files: &[Results]) -> String {
    let mut out = String::from(
        "| machine | workload | backend | dtype | tokens/s | samples/s | ms/step (median) | first step ms | peak RSS MiB | device MiB | × PyTorch eager | MFU |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for f in files {
        for m in &f.results {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} |\n",
                f.machine.label,
                workload_name(m),
                m.backend,
                m.dtype,
                m.tokens_per_s,
                m.samples_per_s,
                m.median_ms,
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
/// machine and backend.
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
            let push = |groups: &mut Vec<BarGroup>, v: f64| match groups
                .iter_mut()
                .find(|g| g.label == label)
            {
                Some(g) => g.bars.push((series.clone(), v)),
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
