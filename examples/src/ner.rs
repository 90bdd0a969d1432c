//! `ner`: fine-tune `BertForTokenClassification` on CoNLL-2003 or two-column BIO data, report
//! seqeval entity precision/recall/F1 overall and per type, and tag raw text word by word
//! (HF `run_ner.py`).
//!
//! With no data arguments it fine-tunes all-MiniLM-L6-v2 on WNUT-16 from the fixtures (a
//! fixed 80/20 split) and tags the HF NER example sentence.

use std::path::PathBuf;

use bert::{BertForTokenClassification, BertPretrained};
use bert_datasets::collate::{TokenClassificationBatcher, TokenClassificationItem};
use bert_datasets::tasks::conll::{bio_label_list, read_conll, tokenize_and_align_labels};
use bert_datasets::tasks::split;
use bert_train::tasks::{TagRows, TaggedText, TokenClassificationTask, scores, tag};
use clap::Parser;

use crate::range;
use crate::{Error, TaskArgs, TrainArgs, TrainDefaults, load_model};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ner",
    about = "Fine-tune BertForTokenClassification on CoNLL/BIO data and tag text"
)]
pub struct Args {
    /// A CoNLL-2003 or `token<TAB>tag` --train-file (default: WNUT-16 from the fixtures).
    #[command(flatten)]
    pub task: TaskArgs,
    /// Fraction of the training sentences held out when no --validation-file is given.
    #[arg(long, default_value_t = 0.2, value_parser = range::fraction)]
    pub validation_split: f64,
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

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 1e-4,
    num_train_epochs: 3.0,
    batch_size: 32,
    warmup_ratio: 0.1,
};

/// The sentence of HF's NER task summary.
pub const EXAMPLE_TEXT: &str = "Hugging Face Inc. is a company based in New York City. Its headquarters are in DUMBO, therefore very close to the Manhattan Bridge.";

fn print_tagged(t: &TaggedText, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string(t).unwrap_or_default());
        return;
    }
    let words: Vec<String> = t
        .words
        .iter()
        .map(|w| format!("{}/{}", w.word, w.tag))
        .collect();
    println!("\n{}\n  {}", t.text, words.join(" "));
    for e in &t.entities {
        println!("  {:<14} {}", e.entity, e.word);
    }
}

pub fn main(args: Args) -> Result<(), Error> {
    let run = args.task.setup(&args.train, Some(args.max_length))?;
    let (tokenizer, device, json) = (&run.tokenizer, &run.device, args.task.json);
    let texts = match &args.predict[..] {
        [] => vec![EXAMPLE_TEXT.to_string()],
        t => t.to_vec(),
    };
    if args.task.predict_only(!args.predict.is_empty()) {
        let model = BertForTokenClassification::from_pretrained(&run.model_dir, device)?;
        for t in &texts {
            print_tagged(&tag(&model, tokenizer, t, device)?, json);
        }
        return Ok(());
    }
    let train_path = match &args.task.train_file {
        Some(p) => p.clone(),
        None => crate::fixtures_dir()?.join("data/wnut16/train.txt"),
    };
    let sentences = read_conll(&train_path)?;
    let (mut train_s, mut eval_s, eval_path) = match &args.task.validation_file {
        Some(p) => (sentences, read_conll(p)?, p.clone()),
        None => {
            let (tr, ev) = split(sentences, args.validation_split, args.train.seed)?;
            (tr, ev, train_path.clone())
        }
    };
    // Labels of the whole training data (before --max-train-samples).
    let labels = bio_label_list(&train_s);
    args.task.truncate(&mut train_s, &mut eval_s)?;
    let items = |s, path: &PathBuf| {
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
    let batches = args.train.batches(
        &DEFAULTS,
        train_items,
        |i: &TokenClassificationItem| i.text.len(),
        TokenClassificationBatcher {
            pad_id: tokenizer.special_ids()?.pad,
        },
        &run.train_device,
    );
    run.summary(format!(
        "ner: {} training / {} evaluation sentences from {}, {} labels",
        train_s.len(),
        eval_s.len(),
        train_path.display(),
        labels.len()
    ));
    let out = args.train.fit(
        &DEFAULTS,
        model,
        &batches,
        &task,
        !eval_items.is_empty(),
        &run,
    )?;
    // Per-type scores, and the all-`O` baseline on the same evaluation data.
    let (_, rows) = task.predict_eval(&out.model)?;
    let (s, all_o) = (scores(&rows), scores(&all_o_rows(&rows)));
    if json {
        println!(
            "{}",
            serde_json::json!({"entities": s, "all_o_baseline_f1": all_o.f1})
        );
    } else {
        println!(
            "entities: F1 {:.4} (all-O baseline F1 {:.4})",
            s.f1, all_o.f1
        );
        println!(
            "  {:<14} {:>9} {:>9} {:>9} {:>7}",
            "type", "precision", "recall", "f1", "number"
        );
        for (t, (p, r, f, n)) in &s.per_type {
            println!("  {t:<14} {p:>9.4} {r:>9.4} {f:>9.4} {n:>7}");
        }
    }
    for t in &texts {
        print_tagged(&tag(&out.model, tokenizer, t, device)?, json);
    }
    Ok(())
}

/// Every gold row tagged all `O`: the baseline a model must beat.
fn all_o_rows(rows: &TagRows) -> TagRows {
    rows.iter()
        .map(|(_, g)| (vec!["O".to_string(); g.len()], g.clone()))
        .collect()
}
