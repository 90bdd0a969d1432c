//! `classify`: fine-tune `BertForSequenceClassification` on a CSV, TSV, JSONL or Parquet file
//! (one text or a pair; single-label, regression or multi-label), evaluate it, save it as an HF
//! model directory, and predict labels with their scores for new texts (HF `run_glue.py`).
//!
//! With no data arguments it fine-tunes all-MiniLM-L6-v2 on the movie-review polarity
//! sentences of the fixtures (a fixed 80/20 split) and predicts a few reviews.

use bert::{BertConfig, BertForSequenceClassification, BertPretrained, ProblemType};
use bert_datasets::tasks::classification::{ClassificationColumns, load_train_eval};
use bert_train::tasks::{SequenceClassificationTask, classify};
use clap::Parser;

use crate::range;
use crate::{Error, TaskArgs, TrainArgs, TrainDefaults, column, load_model};

/// Fine-tune, evaluate and predict with BertForSequenceClassification.
///
/// A CSV, TSV, JSONL or Parquet --train-file (default: the fixtures' polarity sentences);
/// without --validation-file, --validation-split of it is held out.
#[derive(Debug, Clone, Parser)]
#[command(name = "classify")]
pub struct Args {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Column of the text: a header name or a 0-based position.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column of the second text of a pair.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The CSV/TSV file has no header row (columns by position).
    #[arg(long)]
    pub no_header: bool,
    /// Labels are numbers to regress on (MSE loss; Pearson/Spearman).
    #[arg(long, conflicts_with = "multi_label")]
    pub regression: bool,
    /// Each label field lists several classes, comma-separated (BCE loss).
    #[arg(long)]
    pub multi_label: bool,
    /// Names for the class ids in sorted label order, comma-separated (e.g. `negative,positive`).
    #[arg(long)]
    pub label_names: Option<String>,
    /// Longest input in tokens.
    #[arg(long, default_value_t = 128, value_parser = range::at_least_one)]
    pub max_length: usize,
    /// Texts to classify after training (a pair as `A ||| B`). With --model and no
    /// --train-file: predict only, with the model's own head.
    #[arg(long)]
    pub predict: Vec<String>,
    /// Set every dropout probability to 0 (deterministic training, e.g. to compare backends).
    #[arg(long)]
    pub no_dropout: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Defaults that fine-tune all-MiniLM-L6-v2 on the polarity sentences in a few minutes on two
/// CPU cores (one epoch: 100 steps of 32).
pub const DEFAULTS: TrainDefaults = TrainDefaults {
    num_train_epochs: 1.0,
    ..TrainDefaults::FINE_TUNING
};

const DEFAULT_PREDICT: [&str; 3] = [
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish .",
    "an utterly charming and hilarious film that reminded me how much i love movies .",
];

impl Args {
    fn problem_type(&self) -> ProblemType {
        match (self.regression, self.multi_label) {
            (true, _) => ProblemType::Regression,
            (_, true) => ProblemType::MultiLabelClassification,
            _ => ProblemType::SingleLabelClassification,
        }
    }

    fn columns(&self) -> ClassificationColumns {
        match self.task.train_file {
            None => ClassificationColumns::polarity(),
            Some(_) => ClassificationColumns {
                text: column(&self.text_column),
                text_pair: self.text_pair_column.as_deref().map(column),
                label: column(&self.label_column),
                has_header: !self.no_header,
                regression: self.regression,
            },
        }
    }
}

pub fn main(args: Args) -> Result<(), Error> {
    let run = args.task.setup(&args.train, Some(args.max_length))?;
    let (tokenizer, device) = (&run.tokenizer, &run.device);
    if args.task.predict_only(!args.predict.is_empty()) {
        let model = BertForSequenceClassification::from_pretrained(&run.model_dir, device)?;
        let predictions = classify(&model, tokenizer, &args.predict, device)?;
        crate::print_all(predictions, run.json);
        return Ok(());
    }
    let train_path = match &args.task.train_file {
        Some(p) => p.clone(),
        None => crate::fixtures_dir()?.join("data/polarity/sentences.csv"),
    };
    let (mut train_data, mut eval_data) = load_train_eval(
        &train_path,
        args.task.validation_file.as_deref(),
        &args.columns(),
        args.problem_type(),
        args.task.validation_split,
        args.train.seed,
    )?;
    args.task
        .truncate(&mut train_data.examples, &mut eval_data.examples)?;
    let names = match (&args.label_names, &args.task.train_file) {
        (None, None) => vec!["negative".into(), "positive".into()],
        (given, _) => train_data.label_names(given.as_deref())?,
    };
    let json = args.task.json;
    let head = |c: &mut BertConfig| {
        c.set_problem_type(args.problem_type(), &names);
        if args.no_dropout {
            c.disable_dropout();
        }
    };
    let model: BertForSequenceClassification =
        load_model(&run.model_dir, head, &run.train_device, json)?;
    let train_items = train_data.tokenize(tokenizer)?;
    let eval_items = eval_data.tokenize(tokenizer)?;
    let task = SequenceClassificationTask::new(
        args.problem_type(),
        &eval_items,
        args.train.batch_size(&DEFAULTS),
        tokenizer.clone(),
        device,
    )?;
    run.summary(format!(
        "classify: {} training / {} evaluation examples from {}, labels {names:?}",
        train_data.examples.len(),
        eval_items.len(),
        train_path.display()
    ));
    let out = args.train.fit(&DEFAULTS, model, train_items, &task, &run)?;
    let texts: Vec<String> = match (&args.predict[..], &args.task.train_file) {
        ([], None) => DEFAULT_PREDICT.iter().map(|s| s.to_string()).collect(),
        (texts, _) => texts.to_vec(),
    };
    crate::print_all(classify(&out.model, tokenizer, &texts, device)?, json);
    Ok(())
}
