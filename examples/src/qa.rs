//! `qa`: fine-tune `BertForQuestionAnswering` on SQuAD v1.1/v2.0 JSON (long contexts in
//! windows of `--max-length` tokens with `--doc-stride`), report exact match and F1 (the
//! official SQuAD normalisation), and answer a question over a context (HF `run_qa.py`).
//!
//! With no `--train-file` it writes a generated SQuAD-format set
//! (`bert_datasets::synthetic::squad`) beside the real SQuAD sample of the fixtures, trains on
//! both and evaluates on held-out generated questions.

use std::path::Path;

use bert::{BertForQuestionAnswering, BertPretrained};
use bert_datasets::collate::QuestionAnsweringItem;
use bert_datasets::synthetic;
use bert_datasets::tasks::squad::{Postprocess, SquadExample, prepare_features, read_squad};
use bert_datasets::tasks::train_and_validation;
use bert_train::tasks::{QuestionAnsweringTask, answer_questions};
use clap::Parser;

use crate::range;
use crate::{Error, TaskArgs, TrainArgs, TrainDefaults, load_model};

/// Fine-tune BertForQuestionAnswering on SQuAD JSON and answer questions.
///
/// A SQuAD JSON --train-file and --validation-file (default: generated questions + the
/// fixtures' SQuAD sample).
#[derive(Debug, Clone, Parser)]
#[command(name = "qa")]
pub struct Args {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Generated training questions when no --train-file is given (a quarter more for eval).
    #[arg(long, default_value_t = 600, value_parser = range::at_least_one)]
    pub generate: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 192, value_parser = range::at_least_one)]
    pub max_length: usize,
    /// Context tokens shared by neighbouring windows.
    #[arg(long, default_value_t = 64)]
    pub doc_stride: usize,
    #[arg(long, default_value_t = 20, value_parser = range::at_least_one)]
    pub n_best_size: usize,
    #[arg(long, default_value_t = 30, value_parser = range::at_least_one)]
    pub max_answer_length: usize,
    /// SQuAD v2: questions may have no answer (the empty answer can win).
    #[arg(long)]
    pub version_2_with_negative: bool,
    /// A question to answer over --context after training (default: HF's QA example).
    #[arg(long)]
    pub question: Vec<String>,
    #[arg(long)]
    pub context: Option<String>,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    num_train_epochs: 2.0,
    batch_size: 16,
    ..TrainDefaults::FINE_TUNING
};

/// The context and questions of HF's extractive-QA task summary.
pub const EXAMPLE_CONTEXT: &str = "Extractive Question Answering is the task of extracting an answer from a text given a question. An example of a question answering dataset is the SQuAD dataset, which is entirely based on that task. If you would like to fine-tune a model on a SQuAD task, you may leverage the examples/pytorch/question-answering/run_squad.py script.";
pub const EXAMPLE_QUESTIONS: [&str; 2] = [
    "What is extractive question answering?",
    "What is a good example of a question answering dataset?",
];

impl Args {
    fn postprocess(&self) -> Postprocess {
        Postprocess {
            n_best_size: self.n_best_size,
            max_answer_length: self.max_answer_length,
            version_2_with_negative: self.version_2_with_negative,
        }
    }

    /// Training and evaluation questions: the files (without a validation file,
    /// --validation-split of the training file), or generated ones (written to
    /// `output_dir/data/`) with the fixtures' SQuAD sample.
    fn data(&self) -> Result<(Vec<SquadExample>, Vec<SquadExample>), Error> {
        let validation = self.task.validation_file.as_deref();
        let split = self.task.validation_split;
        if let Some(p) = &self.task.train_file {
            let read = |p: &Path| read_squad(p);
            let (train, eval, _) =
                train_and_validation(p, validation, read, split, self.train.seed)?;
            return Ok((train, eval));
        }
        let (dir, seed) = (self.train.output_dir.join("data"), self.train.seed);
        let train_path = dir.join("generated_train.json");
        let eval_path = dir.join("generated_eval.json");
        synthetic::write_squad(&train_path, self.generate, seed)?;
        synthetic::write_squad(&eval_path, (self.generate / 4).max(1), seed + 1)?;
        let sample = crate::fixtures_dir()?.join("data/samples/squad.json");
        let mut train = read_squad(train_path)?;
        train.extend(read_squad(sample)?);
        Ok((train, read_squad(validation.unwrap_or(&eval_path))?))
    }
}

pub fn main(args: Args) -> Result<(), Error> {
    let run = args.task.setup(&args.train, None)?;
    crate::cli::check_max_length(&run.model_dir, args.max_length)?;
    let (tokenizer, device, json) = (&run.tokenizer, &run.device, args.task.json);
    let questions = match &args.question[..] {
        [] => EXAMPLE_QUESTIONS.iter().map(|s| s.to_string()).collect(),
        q => q.to_vec(),
    };
    let context = args.context.as_deref().unwrap_or(EXAMPLE_CONTEXT);
    let windows = (args.max_length, args.doc_stride);
    let post = args.postprocess();
    let answer = |m| answer_questions(m, tokenizer, &questions, context, windows, &post, device);
    if args.task.predict_only(!args.question.is_empty()) {
        let model = BertForQuestionAnswering::from_pretrained(&run.model_dir, device)?;
        crate::print_all(answer(&model)?, json);
        return Ok(());
    }
    let (mut train_examples, mut eval_examples) = args.data()?;
    args.task
        .truncate(&mut train_examples, &mut eval_examples)?;
    let features = |e| prepare_features(tokenizer, e, args.max_length, args.doc_stride);
    let train_features = features(&train_examples)?;
    let model: BertForQuestionAnswering =
        load_model(&run.model_dir, |_| {}, &run.train_device, json)?;
    let batch_size = args.train.batch_size(&DEFAULTS);
    run.summary(format!(
        "qa: {} training questions ({} windows), {} evaluation questions",
        train_examples.len(),
        train_features.len(),
        eval_examples.len()
    ));
    let task = QuestionAnsweringTask {
        features: features(&eval_examples)?,
        examples: eval_examples,
        batch_size,
        postprocess: args.postprocess(),
        tokenizer: tokenizer.clone(),
        device: device.clone(),
    };
    let train_items = train_features.iter().map(QuestionAnsweringItem::from);
    let train_items = train_items.collect();
    let out = args.train.fit(&DEFAULTS, model, train_items, &task, &run)?;
    // A few held-out questions with their predicted answers, then the example context.
    crate::print_all(task.held_out_answers(&out.model, 5)?, json);
    crate::print_all(answer(&out.model)?, json);
    Ok(())
}
