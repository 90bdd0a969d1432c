//! `ner`: fine-tune `BertForTokenClassification` on CoNLL-2003 or two-column BIO data, report
//! seqeval entity precision/recall/F1 overall and per type, and tag raw text word by word
//! (HF `run_ner.py`).
//!
//! With no data arguments it fine-tunes all-MiniLM-L6-v2 on WNUT-16 from the fixtures (a
//! fixed 80/20 split) and tags the HF NER example sentence.

use std::path::Path;

use bert::{BertForTokenClassification, BertPretrained};
use bert_datasets::tasks::conll::{bio_label_list, read_conll, tokenize_and_align_labels};
use bert_datasets::tasks::train_and_validation;
use bert_train::tasks::{TokenClassificationTask, all_o_baseline, scores, tag};
use clap::Parser;

use crate::range;
use crate::{Error, TaskArgs, TrainArgs, TrainDefaults, load_model};

/// Fine-tune BertForTokenClassification on CoNLL/BIO data and tag text.
///
/// A CoNLL-2003 or `token<TAB>tag` --train-file (default: WNUT-16 from the fixtures).
#[derive(Debug, Clone, Parser)]
#[command(name = "ner")]
pub struct Args {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Give every word piece the word's label, not only the first (HF's `label_all_tokens`).
    #[arg(long)]
    pub label_all_tokens: bool,
    #[arg(long, default_value_t = 128, value_parser = range::at_least_one)]
    pub max_length: usize,
    /// Texts to tag after training. With --model and no --train-file: tag only.
    #[arg(long)]
    pub predict: Vec<String>,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults::FINE_TUNING;

/// The sentence of HF's NER task summary.
pub const EXAMPLE_TEXT: &str = "Hugging Face Inc. is a company based in New York City. Its headquarters are in DUMBO, therefore very close to the Manhattan Bridge.";

pub fn main(args: Args) -> Result<(), Error> {
    let run = args.task.setup(&args.train, Some(args.max_length))?;
    let (tokenizer, device, json) = (&run.tokenizer, &run.device, args.task.json);
    let texts = match &args.predict[..] {
        [] => vec![EXAMPLE_TEXT.to_string()],
        t => t.to_vec(),
    };
    let tag_texts = |model: &BertForTokenClassification| -> Result<(), Error> {
        let tagged = texts.iter().map(|t| tag(model, tokenizer, t, device));
        crate::print_all(tagged.collect::<Result<Vec<_>, _>>()?, json);
        Ok(())
    };
    if args.task.predict_only(!args.predict.is_empty()) {
        return tag_texts(&BertForTokenClassification::from_pretrained(
            &run.model_dir,
            device,
        )?);
    }
    let train_path = match &args.task.train_file {
        Some(p) => p.clone(),
        None => crate::fixtures_dir()?.join("data/wnut16/train.txt"),
    };
    let validation = args.task.validation_file.as_deref();
    let (split, seed) = (args.task.validation_split, args.train.seed);
    let (mut train_s, mut eval_s, eval_path) =
        train_and_validation(&train_path, validation, |p| read_conll(p), split, seed)?;
    // Labels of the whole training data (before --max-train-samples).
    let labels = bio_label_list(&train_s);
    args.task.truncate(&mut train_s, &mut eval_s)?;
    let items = |s, path: &Path| {
        let name = path.display().to_string();
        tokenize_and_align_labels(tokenizer, s, &labels, args.label_all_tokens, &name)
    };
    let (train_items, eval_items) = (items(&train_s, &train_path)?, items(&eval_s, &eval_path)?);
    let model: BertForTokenClassification = load_model(
        &run.model_dir,
        |c| c.set_labels(&labels),
        &run.train_device,
        json,
    )?;
    let batch_size = args.train.batch_size(&DEFAULTS);
    let task = TokenClassificationTask::new(
        labels.clone(),
        &eval_items,
        batch_size,
        tokenizer.clone(),
        device,
    )?;
    run.summary(format!(
        "ner: {} training / {} evaluation sentences from {}, {} labels",
        train_s.len(),
        eval_s.len(),
        train_path.display(),
        labels.len()
    ));
    let out = args.train.fit(&DEFAULTS, model, train_items, &task, &run)?;
    // Per-type scores, and the all-`O` baseline on the same evaluation data.
    let (_, rows) = task.predict_eval(&out.model)?;
    let (s, all_o) = (scores(&rows), scores(&all_o_baseline(&rows)));
    match json {
        true => println!(
            "{}",
            serde_json::json!({"entities": s, "all_o_baseline_f1": all_o.f1})
        ),
        false => println!("{s}\n  all-O baseline F1 {:.4}", all_o.f1),
    }
    tag_texts(&out.model)
}
