//! `ner`: fine-tune `BertForTokenClassification` on CoNLL-2003 or two-column BIO data, report
//! seqeval entity precision/recall/F1 overall and per type, and tag raw text word by word.
//!
//! With no data arguments it fine-tunes all-MiniLM-L6-v2 on WNUT-16 from the fixtures (a
//! fixed 80/20 split) and tags the HF NER example sentence.

use std::path::{Path, PathBuf};

use bert::{BertForTokenClassification, BertInput, BertPretrained};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{
    TokenClassificationBatch, TokenClassificationBatcher, TokenClassificationItem, TokenizedText,
    pad_texts,
};
use bert_datasets::metrics::{EntityScores, entity_scores};
use bert_datasets::tasks::conll::{TaggedSentence, align_labels, label_list, read_conll};
use bert_train::{Metrics, TrainError, TrainTask, train};
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use clap::Parser;
use serde_json::json;

use crate::{
    BackendArgs, Error, TrainArgs, TrainDefaults, load_model, save_pretrained_with_tokenizer,
    split_indices,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ner",
    about = "Fine-tune BertForTokenClassification on CoNLL/BIO data and tag text"
)]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// HF model directory to start from (default: all-MiniLM-L6-v2 from the fixtures).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// CoNLL-2003 or `token<TAB>tag` training file (default: WNUT-16 from the fixtures).
    #[arg(long)]
    pub train_file: Option<PathBuf>,
    #[arg(long)]
    pub validation_file: Option<PathBuf>,
    /// Fraction of the training sentences held out when no --validation-file is given.
    #[arg(long, default_value_t = 0.2)]
    pub validation_split: f64,
    /// Give every word piece the word's label, not only the first (HF's `label_all_tokens`).
    #[arg(long)]
    pub label_all_tokens: bool,
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    /// Texts to tag after training. With --model and no --train-file: tag only.
    #[arg(long)]
    pub predict: Vec<String>,
    #[arg(long)]
    pub json: bool,
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

type Batch = TokenClassificationBatch;

fn to_input(b: &Batch) -> BertInput {
    let mut input = crate::text_input(b.inputs.clone());
    input.host_bounds.labels = Some(b.label_bounds);
    input
}

fn items(
    tokenizer: &BertTokenizer,
    sentences: &[TaggedSentence],
    labels: &[String],
    label_all_tokens: bool,
    path: &Path,
) -> Result<Vec<TokenClassificationItem>, Error> {
    let words: Vec<Vec<&str>> = sentences
        .iter()
        .map(|s| s.words.iter().map(String::as_str).collect())
        .collect();
    let encodings = tokenizer.encode_batch(words)?;
    encodings
        .iter()
        .zip(sentences)
        .map(|(e, s)| {
            let labels = align_labels(e.get_word_ids(), &s.tags, labels, label_all_tokens)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            Ok(TokenClassificationItem {
                text: e.into(),
                labels,
            })
        })
        .collect()
}

struct Task {
    eval: Vec<Batch>,
    labels: Vec<String>,
    tokenizer: BertTokenizer,
}

/// Predicted and gold tags of one sentence.
type TagRow = (Vec<String>, Vec<String>);

/// Tags at the labelled positions of each row: (predicted, gold).
fn tags_at_labels(
    logits: Tensor<3>,
    gold: Tensor<2, burn::tensor::Int>,
    labels: &[String],
) -> Result<Vec<TagRow>, Error> {
    let [b, s, _] = logits.dims();
    let pred: Vec<i64> = logits
        .argmax(2)
        .reshape([b * s])
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .map_err(|e| format!("{e:?}"))?;
    let gold: Vec<i64> = gold
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .map_err(|e| format!("{e:?}"))?;
    Ok((0..b)
        .map(|r| {
            let keep: Vec<usize> = (r * s..(r + 1) * s).filter(|&i| gold[i] >= 0).collect();
            (
                keep.iter()
                    .map(|&i| labels[pred[i] as usize].clone())
                    .collect(),
                keep.iter()
                    .map(|&i| labels[gold[i] as usize].clone())
                    .collect(),
            )
        })
        .collect())
}

fn scores(rows: &[(Vec<String>, Vec<String>)]) -> EntityScores {
    fn as_str(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let pred: Vec<Vec<&str>> = rows.iter().map(|r| as_str(&r.0)).collect();
    let gold: Vec<Vec<&str>> = rows.iter().map(|r| as_str(&r.1)).collect();
    entity_scores(&pred, &gold)
}

impl TrainTask<BertForTokenClassification, Batch> for Task {
    fn loss(
        &self,
        model: &BertForTokenClassification,
        batch: Batch,
    ) -> Result<Tensor<1>, TrainError> {
        Ok(model
            .forward(to_input(&batch), Some(batch.labels))?
            .loss
            .expect("labels"))
    }

    fn evaluate(&self, model: &BertForTokenClassification) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut loss, mut n) = (0.0, 0usize);
        let mut rows = Vec::new();
        for batch in &self.eval {
            let out = model.forward(to_input(batch), Some(batch.labels.clone()))?;
            let b = batch.labels.dims()[0];
            loss += out.loss.expect("labels").into_scalar::<f32>() as f64 * b as f64;
            n += b;
            rows.extend(
                tags_at_labels(out.logits, batch.labels.clone(), &self.labels)
                    .map_err(|e| TrainError::Evaluation(e.to_string()))?,
            );
        }
        let s = scores(&rows);
        let correct = rows
            .iter()
            .flat_map(|(p, g)| p.iter().zip(g).map(|(a, b)| (a == b) as usize))
            .sum::<usize>();
        let total = rows.iter().map(|r| r.1.len()).sum::<usize>().max(1);
        let mut m = Metrics::new();
        m.insert("eval_loss".into(), loss / n as f64);
        m.insert("eval_precision".into(), s.precision);
        m.insert("eval_recall".into(), s.recall);
        m.insert("eval_f1".into(), s.f1);
        m.insert("eval_accuracy".into(), correct as f64 / total as f64);
        Ok(Some(m))
    }

    fn save_pretrained(
        &self,
        model: &BertForTokenClassification,
        dir: &Path,
    ) -> Result<(), TrainError> {
        Ok(save_pretrained_with_tokenizer(model, &self.tokenizer, dir)?)
    }
}

/// Tags `text` word by word (a word's tag is its first piece's), then groups BIO entities.
pub fn tag_text(
    model: &BertForTokenClassification,
    tokenizer: &BertTokenizer,
    text: &str,
    device: &Device,
) -> Result<serde_json::Value, Error> {
    let config = model.config();
    let name = |i: usize| {
        config
            .id2label
            .as_ref()
            .and_then(|m| m.get(&i).cloned())
            .unwrap_or_else(|| format!("LABEL_{i}"))
    };
    let encoding = tokenizer.encode(text)?;
    let t = TokenizedText::from(&encoding);
    let b = pad_texts(&[&t], 0, device);
    let logits = model.valid().forward(crate::text_input(b), None)?.logits;
    let [_, s, _] = logits.dims();
    let pred: Vec<i64> = logits
        .argmax(2)
        .reshape([s])
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .map_err(|e| format!("{e:?}"))?;
    // Words: consecutive tokens with the same word id; char span from the offsets.
    let mut words: Vec<(String, String, usize, usize)> = Vec::new();
    let mut last = None;
    let chars: Vec<char> = text.chars().collect();
    for (i, w) in encoding.get_word_ids().iter().enumerate() {
        let Some(w) = w else { continue };
        let (a, z) = encoding.get_offsets()[i];
        if last == Some(*w) {
            if let Some(word) = words.last_mut() {
                word.3 = z;
                word.0 = chars[word.2..z].iter().collect();
            }
        } else {
            words.push((chars[a..z].iter().collect(), name(pred[i] as usize), a, z));
        }
        last = Some(*w);
    }
    let tags: Vec<&str> = words.iter().map(|w| w.1.as_str()).collect();
    let entities: Vec<_> = bert_datasets::metrics::bio_entities(&tags)
        .into_iter()
        .map(|(ty, s, e)| {
            json!({
                "entity": ty,
                "word": chars[words[s].2..words[e - 1].3].iter().collect::<String>(),
                "start": words[s].2,
                "end": words[e - 1].3,
            })
        })
        .collect();
    Ok(json!({
        "text": text,
        "words": words.iter().map(|w| json!({"word": w.0, "tag": w.1})).collect::<Vec<_>>(),
        "entities": entities,
    }))
}

fn print_tagged(v: &serde_json::Value) {
    println!("\n{}", v["text"].as_str().unwrap_or_default());
    let words: Vec<String> = v["words"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            format!(
                "{}/{}",
                w["word"].as_str().unwrap_or_default(),
                w["tag"].as_str().unwrap_or_default()
            )
        })
        .collect();
    println!("  {}", words.join(" "));
    for e in v["entities"].as_array().into_iter().flatten() {
        println!(
            "  {:<14} {}",
            e["entity"].as_str().unwrap_or_default(),
            e["word"].as_str().unwrap_or_default()
        );
    }
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
        let model = BertForTokenClassification::from_pretrained(&model_dir, &device)?;
        let tagged = args
            .predict
            .iter()
            .map(|t| tag_text(&model, &tokenizer, t, &device))
            .collect::<Result<Vec<_>, _>>()?;
        if args.json {
            println!("{}", json!({ "model": model_dir, "predictions": tagged }));
        } else {
            tagged.iter().for_each(print_tagged);
        }
        return Ok(());
    }

    let train_path = match &args.train_file {
        Some(p) => p.clone(),
        None => crate::fixtures_dir()?.join("data/wnut16/train.txt"),
    };
    let sentences = read_conll(&train_path)?;
    let (mut train_s, mut eval_s, eval_path) = match &args.validation_file {
        Some(p) => (sentences, read_conll(p)?, p.clone()),
        None => {
            let (tr, ev) = split_indices(sentences.len(), args.validation_split, args.train.seed);
            (
                tr.iter().map(|&i| sentences[i].clone()).collect(),
                ev.iter().map(|&i| sentences[i].clone()).collect(),
                train_path.clone(),
            )
        }
    };
    // Labels of the whole training data (before --max-train-samples), with both the B- and
    // I- tag of every entity type; an evaluation tag outside them is an error.
    let mut labels = label_list(&train_s);
    let types: Vec<String> = labels
        .iter()
        .filter_map(|l| l.split_once('-').map(|(_, t)| t.to_string()))
        .collect();
    for t in types {
        for p in ["B", "I"] {
            let tag = format!("{p}-{t}");
            if !labels.contains(&tag) {
                labels.push(tag);
            }
        }
    }
    labels.sort();
    if let Some(n) = args.max_train_samples {
        train_s.truncate(n);
    }
    if let Some(n) = args.max_eval_samples {
        eval_s.truncate(n);
    }
    let train_items = items(
        &tokenizer,
        &train_s,
        &labels,
        args.label_all_tokens,
        &train_path,
    )?;
    let eval_items = items(
        &tokenizer,
        &eval_s,
        &labels,
        args.label_all_tokens,
        &eval_path,
    )?;

    let train_device = device.clone().autodiff();
    train_device.seed(args.train.seed);
    let model: BertForTokenClassification = load_model(
        &model_dir,
        |c| c.set_labels(&labels),
        &train_device,
        args.json,
    )?;
    let batcher = TokenClassificationBatcher { pad_id };
    let batch_size = args.train.batch_size(&DEFAULTS);
    let eval: Vec<Batch> = eval_items
        .chunks(batch_size)
        .map(|c| batcher.batch(c.to_vec(), &device))
        .collect();
    let n_train = train_items.len();
    let collate_device = train_device.clone();
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_items,
        |i: &TokenClassificationItem| i.text.input_ids.len(),
        move |items, _| batcher.batch(items, &collate_device),
    );
    let training = args.train.training_arguments(
        &DEFAULTS,
        bert_train::BatchSource::len(&batches),
        !eval.is_empty(),
    );
    if !args.json {
        eprintln!(
            "ner: {} training / {} evaluation sentences from {}, {} labels, model {} on {}",
            n_train,
            eval_s.len(),
            train_path.display(),
            labels.len(),
            model_dir.display(),
            args.backend.backend
        );
    }
    let task = Task {
        eval,
        labels: labels.clone(),
        tokenizer: tokenizer.clone(),
    };
    let out = train(&training, model, &batches, &task, &train_device)?;

    // Final per-type report and the all-`O` baseline on the same evaluation data.
    let valid = out.model.valid();
    let mut rows = Vec::new();
    for batch in &task.eval {
        let logits = valid.forward(to_input(batch), None)?.logits;
        rows.extend(tags_at_labels(logits, batch.labels.clone(), &labels)?);
    }
    let s = scores(&rows);
    let baseline_rows: Vec<(Vec<String>, Vec<String>)> = rows
        .iter()
        .map(|(_, g)| (vec!["O".to_string(); g.len()], g.clone()))
        .collect();
    let baseline = scores(&baseline_rows);
    let texts: Vec<String> = if args.predict.is_empty() {
        vec![EXAMPLE_TEXT.to_string()]
    } else {
        args.predict.clone()
    };
    let tagged = texts
        .iter()
        .map(|t| tag_text(&out.model, &tokenizer, t, &device))
        .collect::<Result<Vec<_>, _>>()?;
    let final_dir = training.output_dir.join("final_model");
    if args.json {
        let per_type: serde_json::Map<String, serde_json::Value> = s
            .per_type
            .iter()
            .map(|(t, (p, r, f, n))| {
                (
                    t.clone(),
                    json!({"precision": p, "recall": r, "f1": f, "number": n}),
                )
            })
            .collect();
        println!(
            "{}",
            json!({
                "model": model_dir, "train_file": train_path, "backend": args.backend.backend.to_string(),
                "train_sentences": n_train, "eval_sentences": eval_s.len(),
                "steps": out.state.global_step, "step_losses": out.step_losses,
                "eval": {"precision": s.precision, "recall": s.recall, "f1": s.f1, "per_type": per_type},
                "all_o_baseline_f1": baseline.f1,
                "predictions": tagged, "output_dir": final_dir,
            })
        );
    } else {
        let (first, last) = crate::loss_range(&out.step_losses);
        println!(
            "trained {} steps: loss {first:.4} → {last:.4}",
            out.state.global_step
        );
        println!(
            "entities: precision {:.4} recall {:.4} F1 {:.4} (all-O baseline F1 {:.4})",
            s.precision, s.recall, s.f1, baseline.f1
        );
        println!(
            "  {:<14} {:>9} {:>9} {:>9} {:>7}",
            "type", "precision", "recall", "f1", "number"
        );
        for (t, (p, r, f, n)) in &s.per_type {
            println!("  {t:<14} {p:>9.4} {r:>9.4} {f:>9.4} {n:>7}");
        }
        tagged.iter().for_each(print_tagged);
        println!("\nmodel saved to {}", final_dir.display());
    }
    Ok(())
}
