//! `qa`: fine-tune `BertForQuestionAnswering` on SQuAD v1.1/v2.0 JSON (long contexts in
//! windows of `--max-length` tokens with `--doc-stride`), report exact match and F1 (the
//! official SQuAD normalisation), and answer a question over a context.
//!
//! With no `--train-file` it writes a generated SQuAD-format set (template facts about
//! made-up people, questions about them) beside the real SQuAD sample of the fixtures, trains
//! on both and evaluates on held-out generated questions.

use std::path::{Path, PathBuf};

use bert::{BertForQuestionAnswering, BertInput, BertPretrained};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{
    QuestionAnsweringBatch, QuestionAnsweringBatcher, QuestionAnsweringItem, TokenizedText,
    pad_texts,
};
use bert_datasets::metrics::{squad_exact_match, squad_f1};
use bert_datasets::tasks::squad::{
    SquadExample, SquadFeature, best_answer, prepare_features, read_squad,
};
use bert_train::{Metrics, TrainError, TrainTask, train};
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
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
    name = "qa",
    about = "Fine-tune BertForQuestionAnswering on SQuAD JSON and answer questions"
)]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// HF model directory to start from (default: all-MiniLM-L6-v2 from the fixtures).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// SQuAD JSON training file (default: generated questions + the fixtures' SQuAD sample).
    #[arg(long)]
    pub train_file: Option<PathBuf>,
    /// SQuAD JSON evaluation file.
    #[arg(long)]
    pub validation_file: Option<PathBuf>,
    /// Generated training questions when no --train-file is given (a quarter more for eval).
    #[arg(long, default_value_t = 600)]
    pub generate: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 192)]
    pub max_length: usize,
    /// Context tokens shared by neighbouring windows.
    #[arg(long, default_value_t = 64)]
    pub doc_stride: usize,
    #[arg(long, default_value_t = 20)]
    pub n_best_size: usize,
    #[arg(long, default_value_t = 30)]
    pub max_answer_length: usize,
    /// SQuAD v2: questions may have no answer (the empty answer can win).
    #[arg(long)]
    pub version_2_with_negative: bool,
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    /// A question to answer over --context after training (default: HF's QA example).
    #[arg(long)]
    pub question: Vec<String>,
    #[arg(long)]
    pub context: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const DEFAULTS: TrainDefaults = TrainDefaults {
    learning_rate: 1e-4,
    num_train_epochs: 2.0,
    batch_size: 16,
    warmup_ratio: 0.1,
};

/// The context and questions of HF's extractive-QA task summary.
pub const EXAMPLE_CONTEXT: &str = "Extractive Question Answering is the task of extracting an answer from a text given a question. An example of a question answering dataset is the SQuAD dataset, which is entirely based on that task. If you would like to fine-tune a model on a SQuAD task, you may leverage the examples/pytorch/question-answering/run_squad.py script.";
pub const EXAMPLE_QUESTIONS: [&str; 2] = [
    "What is extractive question answering?",
    "What is a good example of a question answering dataset?",
];

const PEOPLE: [&str; 24] = [
    "Alice Moreau",
    "Bruno Keller",
    "Chen Wei",
    "Dara Okafor",
    "Elena Petrova",
    "Farid Haddad",
    "Greta Lindqvist",
    "Hiro Tanaka",
    "Ines Duarte",
    "Jonas Weber",
    "Kavya Rao",
    "Liam Byrne",
    "Maya Cohen",
    "Nikos Pappas",
    "Olga Novak",
    "Pedro Alves",
    "Quinn Harper",
    "Rosa Jimenez",
    "Samir Nasser",
    "Tanya Ivanova",
    "Umar Malik",
    "Vera Horvat",
    "Wen Li",
    "Yusuf Demir",
];
const CITIES: [&str; 16] = [
    "Lisbon",
    "Oslo",
    "Nairobi",
    "Kyoto",
    "Lima",
    "Krakow",
    "Dublin",
    "Hanoi",
    "Porto",
    "Quebec",
    "Tbilisi",
    "Seville",
    "Bergen",
    "Mombasa",
    "Osaka",
    "Valparaiso",
];
const JOBS: [&str; 12] = [
    "carpenter",
    "pilot",
    "nurse",
    "chemist",
    "librarian",
    "baker",
    "architect",
    "teacher",
    "journalist",
    "surgeon",
    "gardener",
    "translator",
];
const COMPANIES: [&str; 10] = [
    "Northwind Traders",
    "Blue Harbor Shipping",
    "Acme Robotics",
    "Silver Pine Bank",
    "Red Kite Studios",
    "Greenfield Farms",
    "Orion Airlines",
    "Cobalt Mining",
    "Lumen Labs",
    "Granite Builders",
];
const SUBJECTS: [&str; 10] = [
    "physics",
    "medieval history",
    "marine biology",
    "economics",
    "linguistics",
    "music",
    "mathematics",
    "philosophy",
    "geology",
    "painting",
];

/// SQuAD v1.1 JSON with `n` questions over generated contexts of three to four facts.
pub fn generate_squad(n: usize, seed: u64) -> serde_json::Value {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut paragraphs = Vec::new();
    let mut count = 0;
    while count < n {
        let mut people: Vec<&str> = PEOPLE.to_vec();
        people.shuffle(&mut rng);
        let mut context = String::new();
        // (question, answer, char start) for every fact of this context.
        let mut facts: Vec<(String, String, usize)> = Vec::new();
        for p in people.iter().take(rng.random_range(3..=4)) {
            let kind = rng.random_range(0..3);
            let mut sentence =
                |context: &mut String, parts: &[(&str, Option<(String, String)>)]| {
                    for (text, qa) in parts {
                        if let Some((question, _)) = qa {
                            facts.push((
                                question.clone(),
                                text.to_string(),
                                context.chars().count(),
                            ));
                        }
                        context.push_str(text);
                    }
                    context.push(' ');
                };
            match kind {
                0 => {
                    let (city, year) = (
                        *CITIES.choose(&mut rng).unwrap(),
                        rng.random_range(1900..2010),
                    );
                    sentence(
                        &mut context,
                        &[
                            (&format!("{p} was born in "), None),
                            (city, Some((format!("Where was {p} born?"), String::new()))),
                            (" in ", None),
                            (
                                &year.to_string(),
                                Some((format!("In what year was {p} born?"), String::new())),
                            ),
                            (".", None),
                        ],
                    );
                }
                1 => {
                    let (job, company) = (
                        *JOBS.choose(&mut rng).unwrap(),
                        *COMPANIES.choose(&mut rng).unwrap(),
                    );
                    sentence(
                        &mut context,
                        &[
                            (&format!("{p} works as a "), None),
                            (
                                job,
                                Some((format!("What does {p} work as?"), String::new())),
                            ),
                            (" for ", None),
                            (
                                company,
                                Some((format!("Which company does {p} work for?"), String::new())),
                            ),
                            (".", None),
                        ],
                    );
                }
                _ => {
                    let (city, subject) = (
                        *CITIES.choose(&mut rng).unwrap(),
                        *SUBJECTS.choose(&mut rng).unwrap(),
                    );
                    sentence(
                        &mut context,
                        &[
                            (&format!("{p} moved to "), None),
                            (
                                city,
                                Some((format!("Where did {p} move to?"), String::new())),
                            ),
                            (" to study ", None),
                            (
                                subject,
                                Some((format!("What did {p} study?"), String::new())),
                            ),
                            (".", None),
                        ],
                    );
                }
            }
        }
        let context = context.trim_end().to_string();
        facts.shuffle(&mut rng);
        let qas: Vec<_> = facts
            .iter()
            .take(2.min(n - count))
            .map(|(q, a, start)| {
                count += 1;
                json!({
                    "id": format!("gen-{seed}-{count}"),
                    "question": q,
                    "answers": [{"text": a, "answer_start": start}],
                })
            })
            .collect();
        paragraphs.push(json!({ "context": context, "qas": qas }));
    }
    json!({ "version": "1.1", "data": [{ "title": "generated", "paragraphs": paragraphs }] })
}

fn to_input(b: &QuestionAnsweringBatch) -> BertInput {
    crate::text_input(b.inputs.clone())
}

fn item(f: &SquadFeature) -> QuestionAnsweringItem {
    QuestionAnsweringItem {
        text: TokenizedText::from(&f.encoding),
        start_position: f.start_position,
        end_position: f.end_position,
    }
}

/// Start and end logits of one feature.
type SpanLogits = (Vec<f32>, Vec<f32>);

/// Start and end logits of each feature, trimmed to its tokens, and the mean loss.
fn feature_logits(
    model: &BertForQuestionAnswering,
    features: &[SquadFeature],
    batch_size: usize,
    pad_id: u32,
    device: &Device,
) -> Result<(Vec<SpanLogits>, f64), Error> {
    let batcher = QuestionAnsweringBatcher { pad_id };
    let mut out = Vec::new();
    let (mut loss, mut n) = (0.0, 0usize);
    for chunk in features.chunks(batch_size) {
        let batch = batcher.batch(chunk.iter().map(item).collect(), device);
        let o = model.forward(
            to_input(&batch),
            Some(batch.start_positions.clone()),
            Some(batch.end_positions.clone()),
        )?;
        loss += o.loss.expect("positions").into_scalar::<f32>() as f64 * chunk.len() as f64;
        n += chunk.len();
        let s = o.start_logits.dims()[1];
        let (start, end) = (crate::to_vec(o.start_logits)?, crate::to_vec(o.end_logits)?);
        for (i, f) in chunk.iter().enumerate() {
            let len = TokenizedText::from(&f.encoding).input_ids.len();
            out.push((
                start[i * s..i * s + len].to_vec(),
                end[i * s..i * s + len].to_vec(),
            ));
        }
    }
    Ok((out, loss / n.max(1) as f64))
}

struct Postprocess {
    n_best: usize,
    max_answer_length: usize,
    version_2: bool,
}

/// The best answer text of every example.
fn answers(
    examples: &[SquadExample],
    features: &[SquadFeature],
    logits: &[(Vec<f32>, Vec<f32>)],
    p: &Postprocess,
) -> Vec<(String, f32)> {
    (0..examples.len())
        .map(|e| {
            let idx: Vec<usize> = (0..features.len())
                .filter(|&i| features[i].example_index == e)
                .collect();
            let feats: Vec<&SquadFeature> = idx.iter().map(|&i| &features[i]).collect();
            let l: Vec<_> = idx.iter().map(|&i| logits[i].clone()).collect();
            let a = best_answer(
                &examples[e],
                &feats,
                &l,
                p.n_best,
                p.max_answer_length,
                p.version_2,
            );
            (a.text, a.score)
        })
        .collect()
}

/// SQuAD exact match and F1, in percent as the official script reports them.
fn squad_scores(examples: &[SquadExample], predicted: &[(String, f32)]) -> (f64, f64) {
    let (mut em, mut f1) = (0.0, 0.0);
    for (ex, (pred, _)) in examples.iter().zip(predicted) {
        let golds: Vec<&str> = if ex.answers.is_empty() {
            vec![""]
        } else {
            ex.answers.iter().map(|a| a.0.as_str()).collect()
        };
        em += squad_exact_match(pred, &golds);
        f1 += squad_f1(pred, &golds);
    }
    let n = examples.len().max(1) as f64;
    (100.0 * em / n, 100.0 * f1 / n)
}

struct Task {
    examples: Vec<SquadExample>,
    features: Vec<SquadFeature>,
    batch_size: usize,
    pad_id: u32,
    device: Device,
    post: Postprocess,
    tokenizer: BertTokenizer,
}

impl TrainTask<BertForQuestionAnswering, QuestionAnsweringBatch> for Task {
    fn loss(
        &self,
        model: &BertForQuestionAnswering,
        b: QuestionAnsweringBatch,
    ) -> Result<burn::tensor::Tensor<1>, TrainError> {
        Ok(model
            .forward(to_input(&b), Some(b.start_positions), Some(b.end_positions))?
            .loss
            .expect("positions"))
    }

    fn evaluate(&self, model: &BertForQuestionAnswering) -> Result<Option<Metrics>, TrainError> {
        if self.examples.is_empty() {
            return Ok(None);
        }
        let err = |e: Error| TrainError::Evaluation(e.to_string());
        let (logits, loss) = feature_logits(
            &model.valid(),
            &self.features,
            self.batch_size,
            self.pad_id,
            &self.device,
        )
        .map_err(err)?;
        let predicted = answers(&self.examples, &self.features, &logits, &self.post);
        let (em, f1) = squad_scores(&self.examples, &predicted);
        Ok(Some(Metrics::from([
            ("eval_loss".to_string(), loss),
            ("eval_exact_match".to_string(), em),
            ("eval_f1".to_string(), f1),
        ])))
    }

    fn save_pretrained(
        &self,
        model: &BertForQuestionAnswering,
        dir: &Path,
    ) -> Result<(), TrainError> {
        Ok(save_pretrained_with_tokenizer(model, &self.tokenizer, dir)?)
    }
}

/// Answers `questions` over `context`: `(question, answer, score)`.
fn answer_questions(
    model: &BertForQuestionAnswering,
    tokenizer: &BertTokenizer,
    args: &Args,
    questions: &[String],
    context: &str,
    device: &Device,
) -> Result<Vec<serde_json::Value>, Error> {
    let examples: Vec<SquadExample> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| SquadExample {
            id: i.to_string(),
            question: q.clone(),
            context: context.to_string(),
            answers: Vec::new(),
            is_impossible: false,
        })
        .collect();
    let features = prepare_features(tokenizer, &examples, args.max_length, args.doc_stride)?;
    let pad_id = tokenizer.special_ids()?.pad;
    let valid = model.valid();
    let mut logits = Vec::new();
    for f in &features {
        let t = item(f).text;
        let b = pad_texts(&[&t], pad_id, device);
        let o = valid.forward(crate::text_input(b), None, None)?;
        logits.push((crate::to_vec(o.start_logits)?, crate::to_vec(o.end_logits)?));
    }
    let post = Postprocess {
        n_best: args.n_best_size,
        max_answer_length: args.max_answer_length,
        version_2: args.version_2_with_negative,
    };
    Ok(answers(&examples, &features, &logits, &post)
        .into_iter()
        .zip(questions)
        .map(|((a, s), q)| json!({ "question": q, "answer": a, "score": s }))
        .collect())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), Error> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(v)?)?;
    Ok(())
}

pub fn main(args: Args) -> Result<(), Error> {
    let device = args.backend.device()?;
    let model_dir = crate::model_or_default(&args.model)?;
    let tokenizer = BertTokenizer::from_pretrained(&model_dir)?;
    let pad_id = tokenizer.special_ids()?.pad;
    let questions: Vec<String> = if args.question.is_empty() {
        EXAMPLE_QUESTIONS.iter().map(|s| s.to_string()).collect()
    } else {
        args.question.clone()
    };
    let context = args
        .context
        .clone()
        .unwrap_or_else(|| EXAMPLE_CONTEXT.to_string());
    if !args.question.is_empty() && args.train_file.is_none() && args.model.is_some() {
        let model = BertForQuestionAnswering::from_pretrained(&model_dir, &device)?;
        let answered = answer_questions(&model, &tokenizer, &args, &questions, &context, &device)?;
        if args.json {
            println!("{}", json!({ "model": model_dir, "answers": answered }));
        } else {
            for a in &answered {
                println!(
                    "{}\n  answer: {:?} (score {:.2})",
                    a["question"].as_str().unwrap_or_default(),
                    a["answer"].as_str().unwrap_or_default(),
                    a["score"].as_f64().unwrap_or(0.0)
                );
            }
        }
        return Ok(());
    }

    let (mut train_examples, mut eval_examples, train_desc) = match &args.train_file {
        Some(p) => {
            let eval = match &args.validation_file {
                Some(v) => read_squad(v)?,
                None => Vec::new(),
            };
            (read_squad(p)?, eval, p.display().to_string())
        }
        None => {
            let data = args.train.output_dir.join("data");
            let (train_path, eval_path) = (
                data.join("generated_train.json"),
                data.join("generated_eval.json"),
            );
            write_json(&train_path, &generate_squad(args.generate, args.train.seed))?;
            write_json(
                &eval_path,
                &generate_squad((args.generate / 4).max(1), args.train.seed + 1),
            )?;
            let sample = crate::fixtures_dir()?.join("data/samples/squad.json");
            let mut train = read_squad(&train_path)?;
            train.extend(read_squad(&sample)?);
            let eval = match &args.validation_file {
                Some(v) => read_squad(v)?,
                None => read_squad(&eval_path)?,
            };
            (
                train,
                eval,
                format!("{} + {}", train_path.display(), sample.display()),
            )
        }
    };
    if let Some(n) = args.max_train_samples {
        train_examples.truncate(n);
    }
    if let Some(n) = args.max_eval_samples {
        eval_examples.truncate(n);
    }
    let train_features = prepare_features(
        &tokenizer,
        &train_examples,
        args.max_length,
        args.doc_stride,
    )?;
    let eval_features =
        prepare_features(&tokenizer, &eval_examples, args.max_length, args.doc_stride)?;

    let train_device = device.clone().autodiff();
    train_device.seed(args.train.seed);
    let model: BertForQuestionAnswering = load_model(&model_dir, |_| {}, &train_device, args.json)?;
    let batch_size = args.train.batch_size(&DEFAULTS);
    let batcher = QuestionAnsweringBatcher { pad_id };
    let collate_device = train_device.clone();
    let batches = args.train.item_batches(
        &DEFAULTS,
        train_features.iter().map(item).collect(),
        |i: &QuestionAnsweringItem| i.text.input_ids.len(),
        move |items, _| batcher.batch(items, &collate_device),
    );
    let training = args.train.training_arguments(
        &DEFAULTS,
        bert_train::BatchSource::len(&batches),
        !eval_examples.is_empty(),
    );
    if !args.json {
        eprintln!(
            "qa: {} training questions ({} windows) from {train_desc}, {} evaluation questions, model {} on {}",
            train_examples.len(),
            train_features.len(),
            eval_examples.len(),
            model_dir.display(),
            args.backend.backend
        );
    }
    let task = Task {
        examples: eval_examples,
        features: eval_features,
        batch_size,
        pad_id,
        device: device.clone(),
        post: Postprocess {
            n_best: args.n_best_size,
            max_answer_length: args.max_answer_length,
            version_2: args.version_2_with_negative,
        },
        tokenizer: tokenizer.clone(),
    };
    let out = train(&training, model, &batches, &task, &train_device)?;
    let eval = crate::last_logged(&out.state.log_history, "eval_f1");
    // A few held-out questions with their predicted answers.
    let (logits, _) = feature_logits(
        &out.model.valid(),
        &task.features,
        batch_size,
        pad_id,
        &device,
    )?;
    let predicted = answers(&task.examples, &task.features, &logits, &task.post);
    let samples: Vec<_> = task
        .examples
        .iter()
        .zip(&predicted)
        .take(5)
        .map(|(e, (a, _))| json!({ "question": e.question, "answer": a, "gold": e.answers.first().map(|g| g.0.clone()) }))
        .collect();
    let answered = answer_questions(&out.model, &tokenizer, &args, &questions, &context, &device)?;
    let final_dir = training.output_dir.join("final_model");
    if args.json {
        println!(
            "{}",
            json!({
                "model": model_dir, "backend": args.backend.backend.to_string(),
                "train_questions": train_examples.len(), "steps": out.state.global_step,
                "step_losses": out.step_losses,
                "eval": { "loss": eval["eval_loss"], "exact_match": eval["eval_exact_match"], "f1": eval["eval_f1"] },
                "eval_samples": samples, "answers": answered, "output_dir": final_dir,
            })
        );
    } else {
        let (first, last) = crate::loss_range(&out.step_losses);
        println!(
            "trained {} steps: loss {first:.4} → {last:.4}",
            out.state.global_step
        );
        println!(
            "held-out: exact match {:.2}, F1 {:.2}",
            eval["eval_exact_match"].as_f64().unwrap_or(f64::NAN),
            eval["eval_f1"].as_f64().unwrap_or(f64::NAN)
        );
        for s in &samples {
            println!(
                "  {}  → {:?} (gold {:?})",
                s["question"].as_str().unwrap_or_default(),
                s["answer"].as_str().unwrap_or_default(),
                s["gold"].as_str().unwrap_or_default()
            );
        }
        println!("\n{context}");
        for a in &answered {
            println!(
                "  {}  → {:?}",
                a["question"].as_str().unwrap_or_default(),
                a["answer"].as_str().unwrap_or_default()
            );
        }
        println!("\nmodel saved to {}", final_dir.display());
    }
    Ok(())
}
