//! `multiple_choice`: fine-tune `BertForMultipleChoice` on SWAG-style CSV/JSONL (a context,
//! the start of the next sentence, N endings, the right one's index) and report accuracy (HF
//! `run_swag.py`).
//!
//! With no `--train-file` it writes generated SWAG-format items
//! (`bert_datasets::synthetic::swag`: someone picks up an object; which ending fits it?) and
//! trains and evaluates on them.

use std::path::{Path, PathBuf};

use bert::BertForMultipleChoice;
use bert_datasets::synthetic;
use bert_datasets::tasks::swag::{read_swag, tokenize_choices};
use bert_datasets::tasks::train_and_validation;
use bert_train::{Metrics, TrainTask, tasks::MultipleChoiceTask};
use clap::Parser;

use crate::range;
use crate::{Error, TaskArgs, TrainArgs, TrainDefaults, load_model};

/// Fine-tune BertForMultipleChoice on SWAG-style data.
///
/// A SWAG CSV or JSONL --train-file (default: generated items).
#[derive(Debug, Clone, Parser)]
#[command(name = "multiple_choice")]
pub struct Args {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Generated training items when no --train-file is given (a quarter more for eval).
    #[arg(long, default_value_t = 400, value_parser = range::at_least_one)]
    pub generate: usize,
    #[arg(long, default_value_t = 64, value_parser = range::at_least_one)]
    pub max_length: usize,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 5e-5,
    num_train_epochs: 2.0,
    batch_size: 8,
    warmup_ratio: 0.1,
};

impl Args {
    /// The training and evaluation files (generated into `output_dir/data/` without
    /// --train-file); without an evaluation file, --validation-split of the training file.
    fn files(&self) -> Result<(PathBuf, Option<PathBuf>), Error> {
        if let Some(p) = &self.task.train_file {
            return Ok((p.clone(), self.task.validation_file.clone()));
        }
        let data = self.train.output_dir.join("data");
        std::fs::create_dir_all(&data)?;
        let (t, e) = (
            data.join("generated_train.csv"),
            data.join("generated_eval.csv"),
        );
        std::fs::write(&t, synthetic::swag(self.generate, self.train.seed))?;
        std::fs::write(
            &e,
            synthetic::swag((self.generate / 4).max(1), self.train.seed + 1),
        )?;
        Ok((t, Some(self.task.validation_file.clone().unwrap_or(e))))
    }
}

pub fn main(args: Args) -> Result<(), Error> {
    let run = args.task.setup(&args.train, Some(args.max_length))?;
    let (tokenizer, json) = (&run.tokenizer, args.task.json);
    let (train_path, eval_path) = args.files()?;
    let (split, seed) = (args.task.validation_split, args.train.seed);
    let (mut train_examples, mut eval_examples, eval_path) = train_and_validation(
        &train_path,
        eval_path.as_deref(),
        |p| read_swag(p),
        split,
        seed,
    )?;
    args.task
        .truncate(&mut train_examples, &mut eval_examples)?;
    let items = |e, p: &Path| tokenize_choices(tokenizer, e, &p.display().to_string());
    let (train_items, eval_items) = (
        items(&train_examples, &train_path)?,
        items(&eval_examples, &eval_path)?,
    );
    let model: BertForMultipleChoice = load_model(&run.model_dir, |_| {}, &run.train_device, json)?;
    let batch_size = args.train.batch_size(&DEFAULTS);
    let task = MultipleChoiceTask::new(&eval_items, batch_size, tokenizer.clone(), &run.device)?;
    run.summary(format!(
        "multiple_choice: {} training / {} evaluation items from {}",
        train_examples.len(),
        eval_examples.len(),
        train_path.display()
    ));
    let before = task.evaluate(&model)?;
    args.train.fit(&DEFAULTS, model, train_items, &task, &run)?;
    let acc = |m: Option<Metrics>| {
        m.and_then(|m| m.get("eval_accuracy").copied())
            .unwrap_or(f64::NAN)
    };
    let chance = 1.0 / eval_examples.first().map_or(4, |e| e.choices.len()) as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({"eval_accuracy_before": acc(before), "chance": chance})
        );
    } else {
        println!(
            "held-out accuracy before training {:.4}, chance {chance:.2}",
            acc(before)
        );
    }
    Ok(())
}
