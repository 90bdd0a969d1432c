//! Prints one of HF's learning-rate schedules, step by step, as JSON: the LR each optimizer
//! step uses (`transformers.get_scheduler(name, optimizer, num_warmup_steps,
//! num_training_steps)`).
//!
//! ```text
//! cargo run --example lr_schedule -- --scheduler cosine --lr 3e-4 --warmup-steps 10 --total-steps 100
//! cargo run --example lr_schedule -- --total-steps 100 --warmup-steps 10 --plot schedules.png
//! ```

use std::process::ExitCode;

use bert_examples::run;
use bert_train::plot::{Panel, Series, line_chart};
use bert_train::{SchedulerType, get_scheduler};
use burn::lr_scheduler::LrScheduler;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Print an HF learning-rate schedule as JSON")]
struct Args {
    /// constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial
    #[arg(long, default_value = "linear")]
    scheduler: String,
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Warmup steps (a value below 1 is a ratio of the total, as HF's warmup_ratio).
    #[arg(long, default_value_t = 0.0)]
    warmup_steps: f64,
    #[arg(long)]
    total_steps: usize,
    /// cosine: 0.5 by default; cosine_with_restarts: 1.
    #[arg(long)]
    num_cycles: Option<f64>,
    /// polynomial: 1.0 by default.
    #[arg(long)]
    power: Option<f64>,
    /// polynomial: 1e-7 by default.
    #[arg(long)]
    lr_end: Option<f64>,
    /// Also draw all six schedules (same lr, warmup and total) into this PNG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    run(|| {
        let args = Args::parse();
        let kind = match args.scheduler.parse::<SchedulerType>()? {
            SchedulerType::Cosine { num_cycles } => SchedulerType::Cosine {
                num_cycles: args.num_cycles.unwrap_or(num_cycles),
            },
            SchedulerType::CosineWithRestarts { num_cycles } => SchedulerType::CosineWithRestarts {
                num_cycles: args.num_cycles.unwrap_or(num_cycles),
            },
            SchedulerType::Polynomial { lr_end, power } => SchedulerType::Polynomial {
                lr_end: args.lr_end.unwrap_or(lr_end),
                power: args.power.unwrap_or(power),
            },
            k => k,
        };
        let warmup = bert_train::warmup_steps(args.warmup_steps, args.total_steps)?;
        let mut schedule = get_scheduler(kind, args.lr, warmup, args.total_steps)?;
        let lrs: Vec<f64> = (0..args.total_steps).map(|_| schedule.step()).collect();
        let out = serde_json::json!({
            "scheduler": kind.name(), "lr": args.lr, "warmup_steps": warmup,
            "total_steps": args.total_steps, "lrs": lrs,
        });
        println!("{out}");
        if let Some(path) = &args.plot {
            let mut series = Vec::new();
            for name in SchedulerType::NAMES {
                let mut s = get_scheduler(name.parse()?, args.lr, warmup, args.total_steps)?;
                let points = (0..args.total_steps)
                    .map(|i| (i as f64, s.step()))
                    .collect();
                series.push(Series {
                    name: name.into(),
                    points,
                });
            }
            let title = format!(
                "HF schedules: lr {}, warmup {warmup}, {} steps",
                args.lr, args.total_steps
            );
            line_chart(
                path,
                &title,
                "optimizer step",
                &[Panel {
                    y_label: "learning rate".into(),
                    series,
                }],
            )?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    })
}
