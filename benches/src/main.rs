//! The benchmark program.
//!
//! ```text
//! cargo run --release -p benches --features ndarray,tch,wgpu -- run \
//!     --backend flex,ndarray,tch,wgpu --configs tiny,small --seq 128,512 --batch 8,32 \
//!     --pytorch --label "2-core CPU" --out benches/results/cpu-2core.json
//! cargo run --release -p benches -- compare benches/results/*.json \
//!     --markdown benches/results/README.md --png benches/results/tokens_per_s.png
//! ```

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use benches::compare::{Machine, Results, charts, fill_ratios, markdown};
use benches::workload::{Kind, Measurement, Runs, Workload, measure};
use bert::precision::Autocast;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "benches",
    about = "BERT training and inference throughput per backend, against PyTorch"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measure workloads on one or more backends (and PyTorch), write a results JSON.
    Run(Box<RunArgs>),
    /// Merge results JSON files into a Markdown table and bar charts.
    Compare(CompareArgs),
    /// A long training run that samples host and device memory every N steps (leak check).
    Soak(SoakArgs),
    /// One row in this process, its measurement as JSON on stdout: what `run` starts for each
    /// row it isolates (`--isolate`).
    #[command(hide = true)]
    Row {
        /// A [`Row`] as JSON.
        spec: String,
    },
}

/// One Burn row of `run`: what a child process needs to measure it alone.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Row {
    /// `--backend` name.
    backend: String,
    /// The row's backend label (`NAME` or `NAME/variant`).
    label: String,
    /// The device's float type (`--dtype` without `--mixed`).
    precision: String,
    /// The dtype the row reports (`f32`, `bf16-mixed`, `bf16-pure`).
    dtype: String,
    workload: Workload,
    runs: Runs,
}

impl Row {
    /// Measures this row here.
    fn measure(&self) -> Result<Measurement, Error> {
        let backend: bert::backend::Backend = self.backend.parse()?;
        let device = backend.device_with(self.precision.parse()?)?;
        measure(&self.workload, &device, &self.label, &self.dtype, self.runs)
    }

    /// Measures this row in a child process of this program: a fresh heap and a fresh device,
    /// so its peak resident set is its own (a process keeps the heap memory earlier rows freed,
    /// `bert::backend::keep_freed_memory`, and a later row's peak would start from it). The
    /// child's log goes to this process's stderr.
    fn measure_isolated(&self) -> Result<Measurement, Error> {
        let exe = std::env::current_exe()?;
        let out = Command::new(&exe)
            .arg("row")
            .arg(serde_json::to_string(self)?)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!("the row's child process failed ({})", out.status).into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// `--isolate`: which rows run in a child process of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Isolate {
    /// The rows of backends whose tensors live in host memory (flex, ndarray, tch, cpu): their
    /// peak is the process's resident set. GPU rows share the process, whose device pools are
    /// emptied before each row, and reuse its compiled kernels.
    Host,
    /// Every row.
    All,
    /// None: every row in this process.
    None,
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    #[arg(long, default_value = "flex")]
    backend: String,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Sample memory every N steps.
    #[arg(long, default_value_t = 100)]
    every: usize,
    /// Steps before growth is measured (allocator pools and caches filling up).
    #[arg(long, default_value_t = 500)]
    warmup_steps: usize,
    #[arg(long, default_value = "benches/results/soak.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[arg(long, default_value = "flex", value_delimiter = ',',
          help = format!("Backends, comma-separated ({}), or `none` (with --pytorch: PyTorch's rows alone)", bert::backend::names()))]
    backend: Vec<String>,
    /// BERT sizes: tiny (2L/128H), small (4L/256H), base (12L/768H).
    #[arg(long, default_value = "tiny,small", value_delimiter = ',')]
    configs: Vec<String>,
    #[arg(long, default_value = "128", value_delimiter = ',')]
    seq: Vec<usize>,
    #[arg(long, default_value = "8,32", value_delimiter = ',')]
    batch: Vec<usize>,
    /// train (sequence classification: forward + loss + backward + AdamW), infer (forward),
    /// pretrain (BertForPreTraining, MLM at 15% on the masked rows + NSP, trained as train).
    #[arg(long, default_value = "train,infer", value_delimiter = ',')]
    workloads: Vec<Kind>,
    /// Float type: f32, f16 or bf16 (where the backend supports it).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// With --dtype f16|bf16: Burn keeps f32 weights and optimizer state and runs the matrix
    /// products in the half type (`bert::precision::autocast`, rows `bf16-mixed`: the
    /// trainer's `--bf16`/`--fp16`), like PyTorch's autocast rows; without it Burn's rows are
    /// pure half precision (`bf16-pure`).
    #[arg(long)]
    mixed: bool,
    /// Training: also measure with each encoder layer recomputed in the backward pass
    /// (`bert::checkpoint`, rows `NAME/ckpt`; PyTorch's `gradient_checkpointing_enable()`,
    /// rows `torch-eager/ckpt`), peak memory beside each.
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Unmeasured runs before timing (the first gives the time to first step).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Stop timing a workload once its timed runs add up to this many seconds (the warm-up not
    /// counted; at least one timed run).
    #[arg(long, default_value_t = 60.0)]
    budget_s: f64,
    /// Which rows run in a child process of their own, so that each row's peak RSS is its own
    /// and not the heap earlier rows left behind.
    #[arg(long, value_enum, default_value = "host")]
    isolate: Isolate,
    /// Training: sync after the forward pass, the backward pass and the optimizer step, and
    /// report where the step's time goes (host dispatch vs device wait per phase), the ops the
    /// forward pass records and the device → host reads a step makes.
    #[arg(long)]
    profile: bool,
    /// Training: also measure each backend with Burn's `ModuleOptimizer` after
    /// `clip_grad_norm` (rows `NAME/burn-optimizer`), the trainer's optimizer before
    /// `bert_train::AdamW`.
    #[arg(long)]
    burn_optimizer: bool,
    /// Training: also measure each backend with the trainer's AdamW composed from tensor ops
    /// (`AdamW::composed`, rows `NAME/composed-optimizer`) instead of the device's fused
    /// kernels, for before/after comparisons in one run.
    #[arg(long)]
    composed_optimizer: bool,
    /// Training and inference: also measure each CubeCL backend with LayerNorm, softmax, GELU,
    /// dropout and cross-entropy composed from Burn's tensor ops
    /// (`bert::cube_kernels::set_layer_kernels(false)`, rows `NAME/composed-layers`) instead of
    /// the kernels of `bert::cube_kernels`.
    #[arg(long)]
    composed_layers: bool,
    /// Pretraining: also measure each backend with the MLM head over every position as HF's
    /// `BertForPreTraining.forward` runs it (rows `NAME/all-positions`), not the masked rows only.
    #[arg(long)]
    mlm_all_positions: bool,
    /// Also run `benches/pytorch_bench.py` (HF transformers) on the same shapes, eager and
    /// with --pytorch-compile also `torch.compile`, and give each row its ratio to eager. It runs
    /// first, before any Burn device exists.
    #[arg(long)]
    pytorch: bool,
    #[arg(long)]
    pytorch_compile: bool,
    /// HF `attn_implementation`s for PyTorch: sdpa (HF's default: `torch-eager` rows) and/or
    /// eager (`torch-eager-attn` rows).
    #[arg(long, default_value = "sdpa")]
    pytorch_attention: String,
    /// `torch.backends.cuda.matmul.allow_tf32` for PyTorch: on or off (PyTorch's default).
    /// CubeCL's f32 matmul on CUDA runs on TF32 tensor cores where its autotune picks them.
    #[arg(long, default_value = "off")]
    pytorch_tf32: String,
    /// Device for PyTorch: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pytorch_device: String,
    #[arg(long, default_value = "python3")]
    python: String,
    /// A short name of this machine for tables (`2-core CPU`, `H100`).
    #[arg(long, default_value = "this machine")]
    label: String,
    /// Where to write the results JSON.
    #[arg(long, default_value = "benches/results/results.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Results JSON files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long, default_value = "benches/results/table.md")]
    markdown: PathBuf,
    /// Tokens/s chart; the ratio chart goes beside it (`…_ratio.png`).
    #[arg(long, default_value = "benches/results/tokens_per_s.png")]
    png: PathBuf,
}

type Error = Box<dyn std::error::Error>;

fn machine(label: &str) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let gpu = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty());
    Machine {
        label: label.to_string(),
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        gpu,
    }
}

/// The checkout's commit; `BERT_BENCH_COMMIT` names it where there is no `.git` (a binary
/// carried to another machine).
fn commit() -> String {
    if let Ok(c) = std::env::var("BERT_BENCH_COMMIT") {
        return c;
    }
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

/// Runs the PyTorch script on the same shapes; its rows (`torch-eager:DEV`, `torch-compile:DEV`)
/// and the library versions.
fn pytorch(args: &RunArgs) -> Result<(Vec<Measurement>, serde_json::Value), Error> {
    // The checkout this binary was built from, else `benches/` under the working directory
    // (a binary carried to another machine, run from the repository root).
    let script = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pytorch_bench.py"),
        PathBuf::from("benches/pytorch_bench.py"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or("benches/pytorch_bench.py not found (run from the repository root)")?;
    let join = |v: &[String]| v.join(",");
    let mut cmd = Command::new(&args.python);
    cmd.arg(&script)
        .args(["--configs", &join(&args.configs)])
        .args([
            "--seq",
            &join(&args.seq.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        ])
        .args([
            "--batch",
            &join(&args.batch.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        ])
        .args([
            "--workloads",
            &join(
                &args
                    .workloads
                    .iter()
                    .map(|k| match k {
                        Kind::Train => "train".to_string(),
                        Kind::Infer => "infer".to_string(),
                        Kind::Pretrain => "pretrain".to_string(),
                    })
                    .collect::<Vec<_>>(),
            ),
        ])
        .args(["--dtype", &args.dtype, "--device", &args.pytorch_device])
        .args([
            "--warmup",
            &args.warmup.to_string(),
            "--iters",
            &args.iters.to_string(),
        ])
        .args(["--budget-s", &args.budget_s.to_string()])
        .args(["--attention", &args.pytorch_attention])
        .args(["--tf32", &args.pytorch_tf32]);
    if args.pytorch_compile {
        cmd.arg("--compile");
    }
    if args.gradient_checkpointing {
        cmd.arg("--gradient-checkpointing");
    }
    // PyTorch's rows isolated as Burn's rows of the same kind of device are.
    if args.isolate == Isolate::All
        || (args.isolate == Isolate::Host && args.pytorch_device == "cpu")
    {
        cmd.arg("--isolate");
    }
    eprintln!("running {}", script.display());
    let out = cmd.output().map_err(|e| format!("{}: {e}", args.python))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows: Vec<Measurement> = serde_json::from_value(v["results"].clone())?;
    Ok((rows, v["versions"].clone()))
}

/// Whether the CubeCL backends among `backends` start this run with CubeCL's cache of an earlier
/// one (`found: FILE`: autotune's choices for whatever shapes it ran, and the memory-bandwidth
/// probe) or with none (`none: FILE`: everything tuned in this run). Tuning is most of their
/// first step (the `cpu` backend's BERT-tiny first training step: ~25 s without, ~2 s with
/// the shape tuned). `None` without a CubeCL backend or in a build without `persistence`
/// (every run tunes anew).
fn cubecl_cache_state(backends: &[String]) -> Option<String> {
    use bert::backend::Backend;
    let cubecl = backends.iter().any(|b| {
        matches!(
            b.parse(),
            Ok(Backend::Cpu | Backend::Wgpu(_) | Backend::Vulkan(_) | Backend::Cuda(_))
        )
    });
    // A run without a CubeCL backend leaves CubeCL's configuration unread.
    if !cubecl {
        return None;
    }
    let file = bert::backend::cubecl_cache_file()?;
    let state = if file.exists() { "found" } else { "none" };
    Some(format!("{state}: {}", file.display()))
}

fn run(mut args: RunArgs) -> Result<(), Error> {
    let mut results: Vec<Measurement> = Vec::new();
    let mut workloads = Vec::new();
    for &kind in &args.workloads {
        for config in &args.configs {
            for &seq in &args.seq {
                for &batch in &args.batch {
                    workloads.push(Workload {
                        kind,
                        config: config.clone(),
                        batch,
                        seq,
                    });
                }
            }
        }
    }
    let precision: bert::backend::Precision = args.dtype.parse()?;
    // One spelling (`f32`, not `fp32`) in the rows and for PyTorch.
    args.dtype = precision.to_string();
    args.backend.retain(|b| b != "none");
    // Every backend name is checked before anything runs.
    for name in &args.backend {
        name.parse::<bert::backend::Backend>()?;
    }
    let cubecl_cache = cubecl_cache_state(&args.backend);
    // PyTorch first, in a child process, while no Burn device holds memory or threads.
    let torch = if args.pytorch {
        Some(pytorch(&args)?)
    } else {
        None
    };
    // Burn's f16/bf16 make every tensor that type (no f32 master weights); PyTorch's rows are
    // autocast and say so (`bf16-autocast`).
    let (burn_dtype, autocast, precision) = match (precision, args.mixed) {
        (bert::backend::Precision::F32, _) => (args.dtype.clone(), Autocast::Off, precision),
        (bert::backend::Precision::BF16, true) => (
            "bf16-mixed".into(),
            Autocast::Bf16,
            bert::backend::Precision::F32,
        ),
        (bert::backend::Precision::F16, true) => (
            "f16-mixed".into(),
            Autocast::F16,
            bert::backend::Precision::F32,
        ),
        (_, false) => (format!("{}-pure", args.dtype), Autocast::Off, precision),
    };
    let mut failed = Vec::new();
    for name in &args.backend {
        let backend: bert::backend::Backend = name.parse()?;
        // A backend not compiled in is an error; one that does not take the dtype is skipped.
        backend.device()?;
        let device = match backend.device_with(precision) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{name}: skipped: {e}");
                continue;
            }
        };
        // Row variants: the label's suffix and what differs from the default row.
        let plain = Runs {
            warmup: args.warmup,
            iters: args.iters,
            budget_s: args.budget_s,
            profile: args.profile,
            burn_optimizer: false,
            composed_optimizer: false,
            composed_layers: false,
            mlm_all_positions: false,
            autocast,
            gradient_checkpointing: false,
        };
        let mut variants = vec![("", plain)];
        if args.burn_optimizer {
            variants.push((
                "/burn-optimizer",
                Runs {
                    burn_optimizer: true,
                    ..plain
                },
            ));
        }
        if args.composed_optimizer {
            variants.push((
                "/composed-optimizer",
                Runs {
                    composed_optimizer: true,
                    ..plain
                },
            ));
        }
        if args.composed_layers {
            variants.push((
                "/composed-layers",
                Runs {
                    composed_layers: true,
                    ..plain
                },
            ));
        }
        if args.mlm_all_positions {
            variants.push((
                "/all-positions",
                Runs {
                    mlm_all_positions: true,
                    ..plain
                },
            ));
        }
        if args.gradient_checkpointing {
            variants.push((
                "/ckpt",
                Runs {
                    gradient_checkpointing: true,
                    ..plain
                },
            ));
        }
        for (w, &(suffix, runs)) in workloads
            .iter()
            .flat_map(|w| variants.iter().map(move |v| (w, v)))
            .filter(|(w, (_, r))| {
                let train_only =
                    r.burn_optimizer || r.composed_optimizer || r.gradient_checkpointing;
                (!train_only || w.kind != Kind::Infer)
                    && (!r.mlm_all_positions || w.kind == Kind::Pretrain)
            })
        {
            let label = format!("{name}{suffix}");
            let name = &label;
            let row = Row {
                backend: backend.to_string(),
                label: label.clone(),
                precision: precision.to_string(),
                dtype: burn_dtype.clone(),
                workload: w.clone(),
                runs,
            };
            let isolated = match args.isolate {
                Isolate::All => true,
                Isolate::Host => !backend.spec().gpu,
                Isolate::None => false,
            };
            let measured = if isolated {
                row.measure_isolated()
            } else {
                measure(w, &device, name, &burn_dtype, row.runs)
            };
            match measured {
                Ok(m) => {
                    if let Some(b) = &m.breakdown {
                        eprintln!(
                            "{name:>8} {:?} {} s{} b{}: forward {:.1} + {:.1} ms, backward {:.1} + {:.1} ms, optimizer {:.1} + {:.1} ms (host + wait); {:.0} ops recorded forward, {:.0} host reads",
                            w.kind,
                            w.config,
                            w.seq,
                            w.batch,
                            b.forward_host_ms,
                            b.forward_wait_ms,
                            b.backward_host_ms,
                            b.backward_wait_ms,
                            b.optimizer_host_ms,
                            b.optimizer_wait_ms,
                            b.forward_ops,
                            b.host_reads,
                        );
                    }
                    eprintln!(
                        "{name:>8} {:?} {} s{} b{}: {:.0} tokens/s, {:.1} ms/step (first {:.0} ms), {} iters",
                        w.kind,
                        w.config,
                        w.seq,
                        w.batch,
                        m.tokens_per_s,
                        m.median_ms,
                        m.first_step_ms,
                        m.iters
                    );
                    results.push(m);
                }
                Err(e) => {
                    eprintln!("{name:>8} {w:?}: failed: {e}");
                    failed.push(format!(
                        "{name} {:?} {} s{} b{}",
                        w.kind, w.config, w.seq, w.batch
                    ));
                }
            }
        }
    }
    if let Some((rows, _)) = &torch {
        for r in rows {
            eprintln!(
                "{:>8} {:?} {} s{} b{}: {:.0} tokens/s, {:.1} ms/step",
                r.backend,
                r.workload.kind,
                r.workload.config,
                r.workload.seq,
                r.workload.batch,
                r.tokens_per_s,
                r.median_ms
            );
        }
        results.extend(rows.iter().cloned());
        // Every row's ratio to PyTorch eager (HF's default sdpa attention) on its workload.
        let eager: Vec<(Workload, f64)> = rows
            .iter()
            .filter(|t| t.backend.starts_with("torch-eager:"))
            .map(|t| (t.workload.clone(), t.tokens_per_s))
            .collect();
        for r in &mut results {
            r.ratio_to_pytorch = eager
                .iter()
                .find(|(w, _)| *w == r.workload)
                .map(|(_, tps)| r.tokens_per_s / tps);
        }
    }
    let versions = torch
        .as_ref()
        .map_or(serde_json::Value::Null, |(_, v)| v.clone());
    let file = Results {
        machine: machine(&args.label),
        burn_version: benches::BURN_VERSION.into(),
        commit: commit(),
        date: Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%dT%H:%M:%SZ")
            .output()
            .map_or(String::new(), |o| {
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            }),
        torch_version: versions["torch"].as_str().map(str::to_string),
        transformers_version: versions["transformers"].as_str().map(str::to_string),
        torch_allow_tf32: versions["allow_tf32"].as_bool(),
        cubecl_cache,
        results,
    };
    if let Some(d) = args.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&file)?)?;
    println!("{}", markdown(std::slice::from_ref(&file)));
    eprintln!("results written to {}", args.out.display());
    if !failed.is_empty() {
        return Err(format!("{} workload(s) failed: {}", failed.len(), failed.join(", ")).into());
    }
    Ok(())
}

fn compare(args: CompareArgs) -> Result<(), Error> {
    let mut files = args
        .files
        .iter()
        .map(|p| -> Result<Results, Error> {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        })
        .collect::<Result<Vec<_>, _>>()?;
    fill_ratios(&mut files);
    let table = markdown(&files);
    std::fs::write(&args.markdown, &table)?;
    let ratio_png = args.png.with_file_name(format!(
        "{}_ratio.png",
        args.png
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("chart")
    ));
    charts(&files, &args.png, &ratio_png)?;
    println!("{table}");
    eprintln!(
        "wrote {}, {} and {}",
        args.markdown.display(),
        args.png.display(),
        ratio_png.display()
    );
    Ok(())
}

/// The hidden `row` command: one row measured here, printed as JSON.
fn row(spec: &str) -> Result<(), Error> {
    let m = serde_json::from_str::<Row>(spec)?.measure()?;
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

fn soak(a: SoakArgs) -> Result<(), Error> {
    let device = bert::backend::device_from_name(&a.backend)?;
    let dir = bert::fixtures::Scratch::dir("soak");
    let result = benches::soak::soak(&a.backend, &device, a.steps, a.every, a.warmup_steps, &dir)?;
    for s in &result.samples {
        eprintln!(
            "step {:>6}: RSS {:>8.1} MiB  device {:?}",
            s.step, s.rss_mib, s.device_reserved_mib
        );
    }
    eprintln!(
        "{} steps in {:.0} s; growth after step {}: RSS {:+.1}%, device {:?}",
        result.steps,
        result.seconds,
        result.warmup_steps,
        100.0 * result.rss_growth,
        result.device_growth.map(|g| format!("{:+.1}%", 100.0 * g))
    );
    let json = serde_json::json!({ "machine": machine("this machine"), "commit": commit(), "soak": result });
    if let Some(d) = a.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(a) => run(*a),
        Cmd::Compare(a) => compare(a),
        Cmd::Soak(a) => soak(a),
        Cmd::Row { spec } => row(&spec),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
