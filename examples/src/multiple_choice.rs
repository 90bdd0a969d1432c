//! `multiple_choice`: fine-tune `BertForMultipleChoice` on SWAG-style CSV/JSONL (a context,
//! the start of the next sentence, N endings, the right one's index) and report accuracy.
//!
//! With no `--train-file` it writes generated SWAG-format items (someone picks up an object;
//! which ending fits the object?) and trains and evaluates on them.

use std::path::{Path, PathBuf};

use bert::BertForMultipleChoice;
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{TokenizedText, pad_texts};
use bert_datasets::tasks::swag::{MultipleChoiceExample, read_swag};
use bert_train::{Metrics, TrainError, TrainTask, train};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::{
    BackendArgs, Error, TrainArgs, TrainDefaults, load_model, save_pretrained_with_tokenizer,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "multiple_choice",
    about = "Fine-tune BertForMultipleChoice on SWAG-style data"
)]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// HF model directory to start from (default: all-MiniLM-L6-v2 from the fixtures).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// SWAG CSV or JSONL training file (default: generated items).
    #[arg(long)]
    pub train_file: Option<PathBuf>,
    #[arg(long)]
    pub validation_file: Option<PathBuf>,
    /// Generated training items when no --train-file is given (a quarter more for eval).
    #[arg(long, default_value_t = 400)]
    pub generate: usize,
    #[arg(long, default_value_t = 64)]
    pub max_length: usize,
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 5e-5,
    num_train_epochs: 2.0,
    batch_size: 8,
    warmup_ratio: 0.1,
};

const NAMES: [&str; 12] = [
    "Anna", "Ben", "Carla", "David", "Emma", "Felix", "Gina", "Hugo", "Iris", "Jack", "Kim", "Leo",
];
/// (objects, endings that fit them).
const CATEGORIES: [(&[&str], &[&str]); 5] = [
    (
        &["guitar", "violin", "flute", "cello", "trumpet", "banjo"],
        &[
            "began to play a cheerful tune.",
            "tuned it and played a song.",
            "played a few notes for the audience.",
        ],
    ),
    (
        &[
            "apple",
            "sandwich",
            "pear",
            "slice of cake",
            "muffin",
            "peach",
        ],
        &[
            "took a big bite and smiled.",
            "ate it hungrily.",
            "shared it with a friend at lunch.",
        ],
    ),
    (
        &[
            "bicycle",
            "scooter",
            "skateboard",
            "motorbike",
            "tricycle",
            "unicycle",
        ],
        &[
            "rode it down the street.",
            "pedalled away quickly.",
            "raced it around the park.",
        ],
    ),
    (
        &["hammer", "saw", "drill", "wrench", "screwdriver", "chisel"],
        &[
            "started fixing the broken fence.",
            "repaired the wobbly chair.",
            "began working on the shelf.",
        ],
    ),
    (
        &[
            "novel",
            "magazine",
            "newspaper",
            "letter",
            "poem",
            "comic book",
        ],
        &[
            "began to read it aloud.",
            "read the first page slowly.",
            "laughed at what was written.",
        ],
    ),
];

/// SWAG-format CSV text with `n` generated items of four endings.
pub fn generate_swag(n: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "sent1", "sent2", "ending0", "ending1", "ending2", "ending3", "label",
    ])
    .expect("in memory");
    for _ in 0..n {
        let name = *NAMES.choose(&mut rng).expect("names");
        let mut cats: Vec<usize> = (0..CATEGORIES.len()).collect();
        cats.shuffle(&mut rng);
        let right = cats[0];
        let object = *CATEGORIES[right].0.choose(&mut rng).expect("objects");
        let verb = ["picked up the", "reached for the", "was handed the"][rng.random_range(0..3)];
        let mut endings: Vec<(bool, &str)> = cats[..4]
            .iter()
            .map(|&c| {
                (
                    c == right,
                    *CATEGORIES[c].1.choose(&mut rng).expect("endings"),
                )
            })
            .collect();
        endings.shuffle(&mut rng);
        let label = endings.iter().position(|e| e.0).expect("right ending");
        let mut row = vec![format!("{name} {verb} {object}."), format!("Then {name}")];
        row.extend(endings.iter().map(|e| e.1.to_string()));
        row.push(label.to_string());
        w.write_record(&row).expect("in memory");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8")
}

#[derive(Debug, Clone)]
struct Item {
    choices: Vec<TokenizedText>,
    label: usize,
}

#[derive(Debug, Clone)]
struct Batch {
    input_ids: Tensor<3, Int>,
    attention_mask: Tensor<3, Int>,
    token_type_ids: Tensor<3, Int>,
    labels: Tensor<1, Int>,
}

fn collate(items: &[Item], pad_id: u32, device: &Device) -> Batch {
    let (b, c) = (items.len(), items.first().map_or(0, |i| i.choices.len()));
    let texts: Vec<&TokenizedText> = items.iter().flat_map(|i| &i.choices).collect();
    let t = pad_texts(&texts, pad_id, device);
    let s = t.input_ids.dims()[1];
    let labels: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
    Batch {
        input_ids: t.input_ids.reshape([b, c, s]),
        attention_mask: t.attention_mask.reshape([b, c, s]),
        token_type_ids: t.token_type_ids.reshape([b, c, s]),
        labels: Tensor::from_data(TensorData::new(labels, [b]), device),
    }
}

fn items(
    tokenizer: &BertTokenizer,
    examples: &[MultipleChoiceExample],
    path: &Path,
) -> Result<Vec<Item>, Error> {
    let n = examples.first().map_or(0, |e| e.choices.len());
    if let Some(e) = examples.iter().find(|e| e.choices.len() != n) {
        return Err(format!(
            "{}: every item needs the same number of endings ({n}), one has {}: {:?}",
            path.display(),
            e.choices.len(),
            e.context
        )
        .into());
    }
    let pairs: Vec<(&str, &str)> = examples
        .iter()
        .flat_map(|e| e.choices.iter().map(|c| (e.context.as_str(), c.as_str())))
        .collect();
    let encodings = tokenizer.encode_batch(pairs)?;
    Ok(examples
        .iter()
        .zip(encodings.chunks(n.max(1)))
        .map(|(e, enc)| Item {
            choices: enc.iter().map(TokenizedText::from).collect(),
            label: e.label,
        })
        .collect())
}

struct Task {
    eval: Vec<Batch>,
    tokenizer: BertTokenizer,
}

fn forward(
    model: &BertForMultipleChoice,
    b: Batch,
) -> Result<bert::MultipleChoiceModelOutput, bert::BertError> {
    model.forward(
        b.input_ids,
        Some(b.attention_mask),
        Some(b.token_type_ids),
        Some(b.labels),
    )
}

impl TrainTask<BertForMultipleChoice, Batch> for Task {
    fn loss(&self, model: &BertForMultipleChoice, b: Batch) -> Result<Tensor<1>, TrainError> {
        Ok(forward(model, b)?.loss.expect("labels"))
    }

    fn evaluate(&self, model: &BertForMultipleChoice) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let (mut loss, mut correct, mut n) = (0.0, 0i64, 0usize);
        for b in &self.eval {
            let labels = b.labels.clone();
            let size = labels.dims()[0];
            let out = forward(&model, b.clone())?;
            loss += out.loss.expect("labels").into_scalar::<f32>() as f64 * size as f64;
            let right: i64 = out
                .logits
                .argmax(1)
                .reshape([size])
                .equal(labels)
                .int()
                .sum()
                .into_scalar();
            correct += right;
            n += size;
        }
        Ok(Some(Metrics::from([
            ("eval_loss".to_string(), loss / n as f64),
            ("eval_accuracy".to_string(), correct as f64 / n as f64),
        ])))
    }

    fn save_pretrained(&self, model: &BertForMultipleChoice, dir: &Path) -> Result<(), TrainError> {
        Ok(save_pretrained_with_tokenizer(model, &self.tokenizer, dir)?)
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
    let (train_path, eval_path) = match &args.train_file {
        Some(p) => (p.clone(), args.validation_file.clone()),
        None => {
            let data = args.train.output_dir.join("data");
            std::fs::create_dir_all(&data)?;
            let (t, e) = (
                data.join("generated_train.csv"),
                data.join("generated_eval.csv"),
            );
            std::fs::write(&t, generate_swag(args.generate, args.train.seed))?;
            std::fs::write(
                &e,
                generate_swag((args.generate / 4).max(1), args.train.seed + 1),
            )?;
            (t, Some(args.validation_file.clone().unwrap_or(e)))
        }
    };
    let mut train_examples = read_swag(&train_path)?;
    let mut eval_examples = match &eval_path {
        Some(p) => read_swag(p)?,
        None => Vec::new(),
    };
    if let Some(n) = args.max_train_samples {
        train_examples.truncate(n);
    }
    if let Some(n) = args.max_eval_samples {
        eval_examples.truncate(n);
    }
    let train_items = items(&tokenizer, &train_examples, &train_path)?;
    let eval_items = match &eval_path {
        Some(p) => items(&tokenizer, &eval_examples, p)?,
        None => Vec::new(),
    };
    let batch_size = args.train.batch_size(&DEFAULTS);
    let eval: Vec<Batch> = eval_items
        .chunks(batch_size)
        .map(|c| collate(c, pad_id, &device))
        .collect();

    let train_device = device.clone().autodiff();
    train_device.seed(args.train.seed);
    let model: BertForMultipleChoice = load_model(&model_dir, |_| {}, &train_device, args.json)?;
    let collate_device = train_device.clone();
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_items,
        // The longest choice sets the padded length (HF would take `len(input_ids)`, the
        // number of choices, which says nothing of the padding).
        |i: &Item| {
            i.choices
                .iter()
                .map(|c| c.input_ids.len())
                .max()
                .unwrap_or(0)
        },
        move |items: Vec<Item>, _| collate(&items, pad_id, &collate_device),
    );
    let training = args.train.training_arguments(
        &DEFAULTS,
        bert_train::BatchSource::len(&batches),
        !eval.is_empty(),
    );
    if !args.json {
        eprintln!(
            "multiple_choice: {} training / {} evaluation items from {}, model {} on {}",
            train_examples.len(),
            eval_examples.len(),
            train_path.display(),
            model_dir.display(),
            args.backend.backend
        );
    }
    let task = Task { eval, tokenizer };
    let before = task.evaluate(&model)?;
    let out = train(&training, model, &batches, &task, &train_device)?;
    let after = task.evaluate(&out.model)?;
    let acc = |m: &Option<Metrics>| {
        m.as_ref()
            .and_then(|m| m.get("eval_accuracy").copied())
            .unwrap_or(f64::NAN)
    };
    let final_dir = training.output_dir.join("final_model");
    if args.json {
        println!(
            "{}",
            json!({
                "model": model_dir, "backend": args.backend.backend.to_string(),
                "train_items": train_examples.len(), "eval_items": eval_examples.len(),
                "steps": out.state.global_step, "step_losses": out.step_losses,
                "eval_accuracy_before": acc(&before), "eval_accuracy": acc(&after),
                "eval": after, "output_dir": final_dir,
            })
        );
    } else {
        let (first, last) = crate::loss_range(&out.step_losses);
        println!(
            "trained {} steps: loss {first:.4} → {last:.4}",
            out.state.global_step
        );
        println!(
            "held-out accuracy: {:.4} (before training {:.4}, chance {:.2})",
            acc(&after),
            acc(&before),
            1.0 / eval_examples.first().map_or(4, |e| e.choices.len()) as f64
        );
        println!("model saved to {}", final_dir.display());
    }
    Ok(())
}
