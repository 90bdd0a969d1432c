//! `classify`: fine-tune `BertForSequenceClassification` on a CSV, TSV, JSONL or Parquet file
//! (one text or a pair; single-label, regression or multi-label), evaluate it, save it as an HF
//! model directory, and predict labels with softmax probabilities for new texts.
//!
//! With no data arguments it fine-tunes all-MiniLM-L6-v2 on the movie-review polarity
//! sentences of the fixtures (a fixed 80/20 split) and predicts a few reviews.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bert::{
    BertConfig, BertForSequenceClassification, BertInput, BertPretrained, ProblemType,
    SequenceClassificationLabels,
};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{TokenizedText, pad_texts};
use bert_datasets::metrics;
use bert_datasets::tasks::classification::{
    ClassificationColumns, ClassificationData, Label, read_classification,
};
use bert_train::{Metrics, TrainError, TrainTask, train};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use clap::Parser;
use serde_json::json;

use crate::{
    BackendArgs, Error, TrainArgs, TrainDefaults, column, load_model,
    save_pretrained_with_tokenizer, softmax, split_indices, to_vec,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "classify",
    about = "Fine-tune, evaluate and predict with BertForSequenceClassification"
)]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// HF model directory to start from: a `BertModel` checkpoint gets a new classifier head
    /// (default: all-MiniLM-L6-v2 from the fixtures).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// CSV, TSV, JSONL or Parquet training file (default: the fixtures' polarity sentences).
    #[arg(long)]
    pub train_file: Option<PathBuf>,
    /// Evaluation file; without it --validation-split of the training file is held out.
    #[arg(long)]
    pub validation_file: Option<PathBuf>,
    /// Fraction of the training file held out for evaluation (a fixed split by --seed).
    #[arg(long, default_value_t = 0.2)]
    pub validation_split: f64,
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
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Use only the first N training examples.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Use only the first N evaluation examples.
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    /// Texts to classify after training (a pair as `A ||| B`). With --model and no
    /// --train-file: predict only, with the model's own head.
    #[arg(long)]
    pub predict: Vec<String>,
    /// Set every dropout probability to 0 (deterministic training, e.g. to compare backends).
    #[arg(long)]
    pub no_dropout: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Defaults that fine-tune all-MiniLM-L6-v2 on the polarity sentences in a few minutes on two
/// CPU cores (one epoch: 100 steps of 32).
pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 1e-4,
    num_train_epochs: 1.0,
    batch_size: 32,
    warmup_ratio: 0.1,
};

const DEFAULT_PREDICT: [&str; 3] = [
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate clichés from start to finish .",
    "an utterly charming and hilarious film that reminded me how much i love movies .",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Single,
    Regression,
    MultiLabel,
}

#[derive(Debug, Clone)]
struct Item {
    text: TokenizedText,
    /// A class id, a regression target, or a multi-hot row.
    target: Vec<f32>,
}

type Batch = (BertInput, SequenceClassificationLabels);

fn collate(items: &[Item], kind: Kind, pad_id: u32, device: &Device) -> Batch {
    let texts: Vec<&TokenizedText> = items.iter().map(|i| &i.text).collect();
    let mut input = crate::text_input(pad_texts(&texts, pad_id, device));
    let n = items.len();
    let labels = match kind {
        Kind::Single => {
            let classes: Vec<i64> = items.iter().map(|i| i.target[0] as i64).collect();
            input = input.with_label_values(&classes);
            SequenceClassificationLabels::Classes(Tensor::from_data(
                TensorData::new(classes, [n]),
                device,
            ))
        }
        Kind::Regression | Kind::MultiLabel => {
            let width = items.first().map_or(1, |i| i.target.len());
            SequenceClassificationLabels::Values(Tensor::from_data(
                TensorData::new(
                    items.iter().flat_map(|i| i.target.clone()).collect(),
                    [n, width],
                ),
                device,
            ))
        }
    };
    (input, labels)
}

/// Splits a multi-label field: a JSON array or comma-separated names.
fn label_set(field: &str) -> Vec<String> {
    let field = field.trim();
    if field.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<serde_json::Value>>(field)
    {
        return v
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect();
    }
    field
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The examples' targets and the class names; multi-hot rows follow `names` when given (the
/// training data's), else the names found in `data`.
fn targets(
    data: &ClassificationData,
    kind: Kind,
    names: Option<&[String]>,
) -> (Vec<Vec<f32>>, Vec<String>) {
    match kind {
        Kind::Regression => (
            data.examples
                .iter()
                .map(|e| match e.label {
                    Label::Value(v) => vec![v],
                    Label::Class(c) => vec![c as f32],
                })
                .collect(),
            Vec::new(),
        ),
        Kind::Single => (
            data.examples
                .iter()
                .map(|e| match e.label {
                    Label::Class(c) => vec![c as f32],
                    Label::Value(v) => vec![v],
                })
                .collect(),
            data.id2label.clone(),
        ),
        Kind::MultiLabel => {
            let sets: Vec<Vec<String>> = data
                .examples
                .iter()
                .map(|e| match e.label {
                    Label::Class(c) => label_set(&data.id2label[c]),
                    Label::Value(v) => vec![v.to_string()],
                })
                .collect();
            let mut found: Vec<String> = sets.iter().flatten().cloned().collect();
            found.sort();
            found.dedup();
            let names = names.map_or(found, <[String]>::to_vec);
            let rows = sets
                .iter()
                .map(|s| {
                    names
                        .iter()
                        .map(|n| if s.contains(n) { 1.0 } else { 0.0 })
                        .collect()
                })
                .collect();
            (rows, names)
        }
    }
}

fn tokenize(
    tokenizer: &BertTokenizer,
    data: &ClassificationData,
    targets: Vec<Vec<f32>>,
) -> Result<Vec<Item>, Error> {
    let encodings = match data.examples.first().and_then(|e| e.text_pair.as_ref()) {
        Some(_) => tokenizer.encode_batch(
            data.examples
                .iter()
                .map(|e| (e.text.as_str(), e.text_pair.as_deref().unwrap_or_default()))
                .collect(),
        )?,
        None => tokenizer.encode_batch(data.examples.iter().map(|e| e.text.as_str()).collect())?,
    };
    Ok(encodings
        .iter()
        .zip(targets)
        .map(|(e, target)| Item {
            text: e.into(),
            target,
        })
        .collect())
}

/// Fine-tuning with evaluation on held-out batches.
struct Task {
    kind: Kind,
    eval: Vec<(Batch, Vec<Vec<f32>>)>,
    tokenizer: BertTokenizer,
}

impl TrainTask<BertForSequenceClassification, Batch> for Task {
    fn loss(
        &self,
        model: &BertForSequenceClassification,
        (input, labels): Batch,
    ) -> Result<Tensor<1>, TrainError> {
        Ok(model.forward(input, Some(labels))?.loss.expect("labels"))
    }

    fn evaluate(
        &self,
        model: &BertForSequenceClassification,
    ) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut loss, mut n) = (0.0, 0usize);
        let mut logits = Vec::new();
        let mut gold = Vec::new();
        for ((input, labels), targets) in &self.eval {
            let out = model.forward(input.clone(), Some(labels.clone()))?;
            let b = targets.len();
            loss += out.loss.expect("labels").into_scalar::<f32>() as f64 * b as f64;
            n += b;
            let width = out.logits.dims()[1];
            let v = to_vec(out.logits).map_err(|e| TrainError::Evaluation(e.to_string()))?;
            logits.extend(v.chunks(width).map(<[f32]>::to_vec));
            gold.extend(targets.iter().cloned());
        }
        let mut m = score(self.kind, &logits, &gold);
        m.insert("eval_loss".into(), loss / n as f64);
        Ok(Some(m))
    }

    fn save_pretrained(
        &self,
        model: &BertForSequenceClassification,
        dir: &Path,
    ) -> Result<(), TrainError> {
        Ok(save_pretrained_with_tokenizer(model, &self.tokenizer, dir)?)
    }
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0)
}

/// Metrics by problem type, with the names of HF's GLUE metrics.
fn score(kind: Kind, logits: &[Vec<f32>], gold: &[Vec<f32>]) -> Metrics {
    let mut m = Metrics::new();
    match kind {
        Kind::Single => {
            let pred: Vec<usize> = logits.iter().map(|r| argmax(r)).collect();
            let gold: Vec<usize> = gold.iter().map(|g| g[0] as usize).collect();
            let classes = logits.first().map_or(2, Vec::len);
            m.insert("eval_accuracy".into(), metrics::accuracy(&pred, &gold));
            let f1 = if classes == 2 {
                metrics::f1_binary(&pred, &gold, 1)
            } else {
                metrics::f1_macro(&pred, &gold)
            };
            m.insert("eval_f1".into(), f1);
            m.insert(
                "eval_matthews_correlation".into(),
                metrics::matthews_corrcoef(&pred, &gold),
            );
        }
        Kind::Regression => {
            let pred: Vec<f64> = logits.iter().map(|r| r[0] as f64).collect();
            let gold: Vec<f64> = gold.iter().map(|g| g[0] as f64).collect();
            m.insert("eval_pearson".into(), metrics::pearson(&pred, &gold));
            m.insert("eval_spearmanr".into(), metrics::spearman(&pred, &gold));
        }
        Kind::MultiLabel => {
            let pred: Vec<Vec<bool>> = logits
                .iter()
                .map(|r| r.iter().map(|&x| x > 0.0).collect())
                .collect();
            let gold: Vec<Vec<bool>> = gold
                .iter()
                .map(|r| r.iter().map(|&x| x > 0.5).collect())
                .collect();
            m.insert(
                "eval_subset_accuracy".into(),
                metrics::accuracy(&pred, &gold),
            );
            let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
            for (p, g) in pred.iter().flatten().zip(gold.iter().flatten()) {
                match (p, g) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fn_ += 1.0,
                    _ => {}
                }
            }
            let f1 = if tp > 0.0 {
                2.0 * tp / (2.0 * tp + fp + fn_)
            } else {
                0.0
            };
            m.insert("eval_f1_micro".into(), f1);
        }
    }
    m
}

/// One prediction: the text and each label's probability (sigmoid for multi-label, the
/// value itself for regression).
fn predict(
    model: &BertForSequenceClassification,
    tokenizer: &BertTokenizer,
    texts: &[String],
    device: &Device,
) -> Result<Vec<serde_json::Value>, Error> {
    let config = model.config();
    let names: Vec<String> = (0..config.num_labels())
        .map(|i| {
            config
                .id2label
                .as_ref()
                .and_then(|m| m.get(&i).cloned())
                .unwrap_or_else(|| format!("LABEL_{i}"))
        })
        .collect();
    let kind = match config.problem_type {
        Some(ProblemType::Regression) => Kind::Regression,
        Some(ProblemType::MultiLabelClassification) => Kind::MultiLabel,
        _ if config.num_labels() == 1 => Kind::Regression,
        _ => Kind::Single,
    };
    let model = model.valid();
    let mut out = Vec::new();
    for text in texts {
        let encoding = match text.split_once("|||") {
            Some((a, b)) => tokenizer.encode_pair(a.trim(), b.trim())?,
            None => tokenizer.encode(text)?,
        };
        let t = TokenizedText::from(&encoding);
        let b = pad_texts(&[&t], 0, device);
        let logits = model.forward(crate::text_input(b), None)?.logits;
        let row = to_vec(logits)?;
        let scores: Vec<f32> = match kind {
            Kind::Single => softmax(&row),
            Kind::MultiLabel => row.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
            Kind::Regression => row.clone(),
        };
        let best = argmax(&scores);
        let probs: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(&scores)
            .map(|(n, s)| (n.clone(), json!(s)))
            .collect();
        out.push(json!({
            "text": text,
            "label": if kind == Kind::Regression { json!(row[0]) } else { json!(names[best]) },
            "scores": probs,
        }));
    }
    Ok(out)
}

fn print_predictions(predictions: &[serde_json::Value]) {
    for p in predictions {
        println!("\n{}", p["text"].as_str().unwrap_or_default());
        let mut scores: Vec<(&String, f64)> = p["scores"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, s) in scores {
            println!("  {name}: {:.0}%", s * 100.0);
        }
    }
}

fn read(
    path: &Path,
    args: &Args,
    default_data: bool,
) -> Result<ClassificationData, bert_datasets::DataError> {
    let columns = if default_data {
        // The polarity CSV: `"label","text"`, no header.
        ClassificationColumns {
            text: 1.into(),
            text_pair: None,
            label: 0.into(),
            has_header: false,
            regression: false,
        }
    } else {
        ClassificationColumns {
            text: column(&args.text_column),
            text_pair: args.text_pair_column.as_deref().map(column),
            label: column(&args.label_column),
            has_header: !args.no_header,
            regression: args.regression,
        }
    };
    read_classification(path, &columns)
}

/// Maps the evaluation file's class ids onto the training file's; an unknown label is an
/// error naming the file.
fn align_eval_labels(
    eval: &mut ClassificationData,
    train_names: &[String],
    path: &Path,
) -> Result<(), Error> {
    for e in &mut eval.examples {
        if let Label::Class(c) = e.label {
            let name = &eval.id2label[c];
            let id = train_names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "{}: label `{name}` does not occur in the training data (labels: {train_names:?})",
                    path.display()
                )
            })?;
            e.label = Label::Class(id);
        }
    }
    eval.id2label = train_names.to_vec();
    Ok(())
}

pub fn main(args: Args) -> Result<(), Error> {
    let device = args.backend.device()?;
    let model_dir = crate::model_or_default(&args.model)?;
    let tokenizer = BertTokenizer::from_pretrained(&model_dir)?.with_truncation(
        args.max_length,
        tokenizers::TruncationStrategy::LongestFirst,
        0,
    )?;
    let pad_id = tokenizer.special_ids()?.pad;

    if !args.predict.is_empty() && args.train_file.is_none() && args.model.is_some() {
        let model: BertForSequenceClassification =
            BertForSequenceClassification::from_pretrained(&model_dir, &device)?;
        let predictions = predict(&model, &tokenizer, &args.predict, &device)?;
        if args.json {
            println!(
                "{}",
                json!({ "model": model_dir, "predictions": predictions })
            );
        } else {
            print_predictions(&predictions);
        }
        return Ok(());
    }

    let default_data = args.train_file.is_none();
    let train_path = match &args.train_file {
        Some(p) => p.clone(),
        None => crate::fixtures_dir()?.join("data/polarity/sentences.csv"),
    };
    let kind = if args.regression {
        Kind::Regression
    } else if args.multi_label {
        Kind::MultiLabel
    } else {
        Kind::Single
    };
    let data = read(&train_path, &args, default_data)?;
    let (mut train_data, mut eval_data) = match &args.validation_file {
        Some(p) => {
            let mut eval = read(p, &args, false)?;
            if kind == Kind::Single {
                align_eval_labels(&mut eval, &data.id2label, p)?;
            }
            (data, eval)
        }
        None => {
            let (tr, ev) =
                split_indices(data.examples.len(), args.validation_split, args.train.seed);
            let pick = |idx: &[usize]| ClassificationData {
                examples: idx.iter().map(|&i| data.examples[i].clone()).collect(),
                id2label: data.id2label.clone(),
            };
            (pick(&tr), pick(&ev))
        }
    };
    if let Some(n) = args.max_train_samples {
        train_data.examples.truncate(n);
    }
    if let Some(n) = args.max_eval_samples {
        eval_data.examples.truncate(n);
    }
    let (train_targets, mut names) = targets(&train_data, kind, None);
    let (_, eval_names) = targets(&eval_data, kind, None);
    let (eval_targets, _) = targets(&eval_data, kind, Some(names.as_slice()));
    if kind == Kind::MultiLabel && eval_names.iter().any(|n| !names.contains(n)) {
        return Err(format!(
            "the evaluation data has labels not in the training data: {:?}",
            eval_names
                .iter()
                .filter(|n| !names.contains(n))
                .collect::<Vec<_>>()
        )
        .into());
    }
    if let Some(given) = &args.label_names {
        let given: Vec<String> = given.split(',').map(|s| s.trim().to_string()).collect();
        if given.len() != names.len() {
            return Err(format!(
                "--label-names has {} names but the data has {} labels {names:?}",
                given.len(),
                names.len()
            )
            .into());
        }
        names = given;
    } else if default_data {
        names = vec!["negative".into(), "positive".into()]; // "-1", "1"
    }

    let no_dropout = args.no_dropout;
    let configure = |c: &mut BertConfig| {
        if no_dropout {
            c.hidden_dropout_prob = 0.0;
            c.attention_probs_dropout_prob = 0.0;
            c.classifier_dropout = Some(0.0);
        }
        match kind {
            Kind::Regression => {
                c.set_num_labels(1);
                c.problem_type = Some(ProblemType::Regression);
            }
            Kind::Single => c.set_labels(&names),
            Kind::MultiLabel => {
                c.set_labels(&names);
                c.problem_type = Some(ProblemType::MultiLabelClassification);
            }
        }
    };
    let train_device = device.clone().autodiff();
    train_device.seed(args.train.seed);
    let model: BertForSequenceClassification =
        load_model(&model_dir, configure, &train_device, args.json)?;

    let eval_items = tokenize(&tokenizer, &eval_data, eval_targets)?;
    let train_items = tokenize(&tokenizer, &train_data, train_targets)?;
    let batch_size = args.train.batch_size(&DEFAULTS);
    let eval = eval_items
        .chunks(batch_size)
        .map(|c| {
            (
                collate(c, kind, pad_id, &device),
                c.iter().map(|i| i.target.clone()).collect(),
            )
        })
        .collect::<Vec<_>>();
    let n_train = train_items.len();
    let collate_device = train_device.clone();
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_items,
        |i: &Item| i.text.input_ids.len(),
        move |items: Vec<Item>, _| collate(&items, kind, pad_id, &collate_device),
    );
    let steps_per_epoch = bert_train::BatchSource::len(&batches);
    let training = args
        .train
        .training_arguments(&DEFAULTS, steps_per_epoch, !eval.is_empty());
    if !args.json {
        eprintln!(
            "classify: {} training / {} evaluation examples from {}, labels {names:?}, model {} on {}",
            n_train,
            eval_data.examples.len(),
            train_path.display(),
            model_dir.display(),
            args.backend.backend
        );
    }
    let task = Task {
        kind,
        eval,
        tokenizer: tokenizer.clone(),
    };
    let out = train(&training, model, &batches, &task, &train_device)?;
    let eval_metrics: BTreeMap<String, f64> =
        crate::last_logged(&out.state.log_history, "eval_loss")
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.starts_with("eval_"))
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
    let texts: Vec<String> = if !args.predict.is_empty() {
        args.predict.clone()
    } else if default_data {
        DEFAULT_PREDICT.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let predictions = predict(&out.model, &tokenizer, &texts, &device)?;
    let final_dir = training.output_dir.join("final_model");
    if args.json {
        println!(
            "{}",
            json!({
                "model": model_dir, "train_file": train_path, "backend": args.backend.backend.to_string(),
                "train_examples": n_train, "eval_examples": eval_data.examples.len(),
                "steps": out.state.global_step, "step_losses": out.step_losses,
                "eval": eval_metrics, "predictions": predictions, "output_dir": final_dir,
            })
        );
    } else {
        let (first, last) = crate::loss_range(&out.step_losses);
        println!(
            "trained {} steps: loss {first:.4} → {last:.4}",
            out.state.global_step
        );
        for (k, v) in &eval_metrics {
            println!("  {k} = {v:.4}");
        }
        print_predictions(&predictions);
        println!("\nmodel saved to {}", final_dir.display());
    }
    Ok(())
}
