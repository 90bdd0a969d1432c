//! Every example runs a handful of steps on flex with a tiny model and tiny slices of the real
//! fixtures, writes an HF model directory that the predict-only modes load back, and a killed
//! pretraining run resumed with `--resume` continues the uninterrupted run's loss curve.

use std::path::{Path, PathBuf};

use bert::fixtures::{Scratch, assert_err};
use bert::{BertConfig, BertModel, BertPretrained};
use bert_examples::{
    classify, clm, fill_mask, generate, mlm, multiple_choice, ner, nsp, pretrain, qa,
};
use clap::Parser;
use serde_json::Value;

/// Burn's device RNG is process-wide: the examples train one at a time.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp(tag: &str) -> Scratch {
    Scratch::dir(&format!("examples-{tag}"))
}

fn fixtures() -> PathBuf {
    bert_datasets::fixtures::dir().expect("fixtures (shared/fixtures/fetch.sh)")
}

/// A 2-layer, hidden-32 `BertModel` with all-MiniLM-L6-v2's tokenizer.
fn tiny_model() -> Scratch {
    let dir = tmp("tiny-model");
    let minilm = fixtures().join("models/all-MiniLM-L6-v2");
    let mut config = BertConfig::tiny(30522, 32, 2, 2);
    config.max_position_embeddings = 512;
    config.pad_token_id = Some(0);
    let device = bert::backend::device_from_name("flex").unwrap();
    device.seed(1);
    BertModel::new(&config, true, &device)
        .save_pretrained(&dir)
        .unwrap();
    for f in ["tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(minilm.join(f), dir.join(f)).unwrap();
    }
    dir
}

fn log(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn losses(dir: &Path) -> Vec<(u64, f64)> {
    log(dir)
        .iter()
        .filter_map(|e| Some((e["step"].as_u64()?, e.get("loss")?.as_f64()?)))
        .collect()
}

/// `name --model model rest…`: an example's command line.
fn with_model<A: Parser>(name: &str, model: &Path, rest: &[&str]) -> A {
    let model = model.to_str().unwrap();
    A::parse_from([name, "--model", model].iter().chain(rest))
}

/// A 3-step training run of `name` from `model` into `out`, logging every step.
fn train<A: Parser>(name: &str, model: &Path, out: &Path, extra: &[&str]) -> A {
    let mut a = vec!["--output-dir", out.to_str().unwrap()];
    a.extend(extra);
    a.extend(STEPS);
    with_model(name, model, &a)
}

const STEPS: [&str; 8] = [
    "--max-steps",
    "3",
    "--batch-size",
    "4",
    "--logging-steps",
    "1",
    "--quiet",
    "--json",
];

/// A finished run: 3 logged steps with finite losses, an evaluation, and `final_model/`.
fn check_run(out: &Path, class: &str) {
    let l = losses(out);
    assert_eq!(
        l.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "{l:?}"
    );
    assert!(l.iter().all(|s| s.1.is_finite()), "{l:?}");
    assert!(
        log(out).iter().any(|e| e.get("eval_loss").is_some()),
        "no evaluation logged"
    );
    let config = BertConfig::from_file(out.join("final_model")).unwrap();
    assert_eq!(config.architectures.unwrap(), [class]);
    assert!(out.join("final_model/tokenizer.json").is_file());
    assert!(out.join("training.png").is_file());
}

#[test]
fn classify_trains_saves_and_predicts() {
    let _l = lock();
    let (model, out) = (tiny_model(), tmp("classify"));
    // The README main job's batching (HF's length-grouped sampling).
    let samples = ["--max-train-samples", "24", "--max-eval-samples", "8"];
    let a = [&samples[..], &["--group-by-length"]].concat();
    classify::main(train("classify", &model, &out, &a)).unwrap();
    check_run(&out, "BertForSequenceClassification");
    // `--gradient-checkpointing` (each layer recomputed in the backward pass, dropout 0.1):
    // on flex the same losses, step by step, and the same evaluation.
    let checkpointed = tmp("classify-checkpointed");
    let c = [&a[..], &["--gradient-checkpointing"]].concat();
    classify::main(train("classify", &model, &checkpointed, &c)).unwrap();
    let eval = |dir: &Path| -> Vec<String> {
        let entries = log(dir)
            .into_iter()
            .filter_map(|e| e.get("eval_loss").cloned());
        entries.map(|v| v.to_string()).collect()
    };
    assert_eq!(losses(&checkpointed), losses(&out));
    assert_eq!(eval(&checkpointed), eval(&out));
    let config = BertConfig::from_file(out.join("final_model")).unwrap();
    assert_eq!(config.num_labels(), 2);
    assert_eq!(config.id2label.unwrap()[&1], "positive");
    // Predict-only with the saved head.
    let saved = out.join("final_model");
    let predict = ["--predict", "a fine film", "--json"];
    classify::main(with_model("classify", &saved, &predict)).unwrap();
}

#[test]
fn classify_reads_pairs_regression_and_rejects_unknown_eval_labels() {
    let _l = lock();
    let (model, out) = (tiny_model(), tmp("classify-files"));
    let train_file = out.join("train.jsonl");
    let rows: String = (0..12)
        .map(|i| {
            format!(
                "{{\"a\": \"sentence {i}\", \"b\": \"another {i}\", \"score\": {}}}\n",
                i as f32 / 3.0
            )
        })
        .collect();
    std::fs::write(&train_file, rows).unwrap();
    let o = out.join("reg");
    let columns = ["--text-column", "a", "--text-pair-column", "b"];
    let a = [
        &["--train-file", train_file.to_str().unwrap()],
        &columns[..],
    ]
    .concat();
    let a = [&a[..], &["--label-column", "score", "--regression"]].concat();
    classify::main(train("classify", &model, &o, &a)).unwrap();
    check_run(&o, "BertForSequenceClassification");
    assert_eq!(
        BertConfig::from_file(o.join("final_model"))
            .unwrap()
            .num_labels(),
        1
    );

    // Multi-label: comma-separated class names → multi-hot targets, BCE, sorted names.
    let ml = out.join("multi.jsonl");
    let rows: String = (0..12)
        .map(|i| {
            let labels = match i % 3 {
                0 => "sports",
                1 => "sports,politics",
                _ => "arts",
            };
            format!("{{\"text\": \"headline {i}\", \"label\": \"{labels}\"}}\n")
        })
        .collect();
    std::fs::write(&ml, rows).unwrap();
    let o = out.join("multi");
    let a = ["--train-file", ml.to_str().unwrap(), "--multi-label"];
    classify::main(train("classify", &model, &o, &a)).unwrap();
    check_run(&o, "BertForSequenceClassification");
    let config = BertConfig::from_file(o.join("final_model")).unwrap();
    assert_eq!(config.num_labels(), 3);
    assert_eq!(config.id2label.unwrap()[&0], "arts");
    assert_eq!(
        config.problem_type,
        Some(bert::ProblemType::MultiLabelClassification)
    );

    // An evaluation label never seen in training is an error naming the file.
    let (tr, ev) = (out.join("t.csv"), out.join("e.csv"));
    std::fs::write(&tr, "text,label\ngood,pos\nbad,neg\n").unwrap();
    std::fs::write(&ev, "text,label\nfine,neutral\n").unwrap();
    let files = [
        "--train-file",
        tr.to_str().unwrap(),
        "--validation-file",
        ev.to_str().unwrap(),
    ];
    assert_err(
        classify::main(train("classify", &model, &out.join("bad"), &files)),
        &["e.csv", "neutral"],
    );
}

#[test]
fn unknown_or_missing_backend_is_a_clear_error() {
    assert_err(
        classify::Args::try_parse_from(["classify", "--backend", "tpu"]),
        &["tpu"],
    );
    assert_err(
        classify::Args::try_parse_from(["classify", "--dtype", "f8"]),
        &["unknown dtype `f8`"],
    );
    if !cfg!(feature = "cuda") {
        let args = classify::Args::parse_from(["classify", "--backend", "cuda"]);
        assert_err(classify::main(args), &["cuda"]);
    }
}

#[test]
fn ner_trains_reports_entities_and_tags_words() {
    let _l = lock();
    let (model, out) = (tiny_model(), tmp("ner"));
    let samples = ["--max-train-samples", "24", "--max-eval-samples", "8"];
    ner::main(train("ner", &model, &out, &samples)).unwrap();
    check_run(&out, "BertForTokenClassification");
    let config = BertConfig::from_file(out.join("final_model")).unwrap();
    assert!(config.num_labels() > 2);
    let saved = out.join("final_model");
    ner::main(with_model("ner", &saved, &["--predict", ner::EXAMPLE_TEXT])).unwrap();
}

#[test]
fn qa_trains_on_generated_and_sample_squad() {
    let _l = lock();
    let (model, out) = (tiny_model(), tmp("qa"));
    let a = [
        "--generate",
        "16",
        "--max-length",
        "96",
        "--doc-stride",
        "32",
    ];
    qa::main(train("qa", &model, &out, &a)).unwrap();
    check_run(&out, "BertForQuestionAnswering");
    assert!(
        log(&out)
            .iter()
            .any(|e| e.get("eval_exact_match").is_some())
    );
    // The generated file is SQuAD JSON whose answers sit at their offsets.
    let squad =
        bert_datasets::tasks::squad::read_squad(out.join("data/generated_train.json")).unwrap();
    assert_eq!(squad.len(), 16);
}

#[test]
fn multiple_choice_trains_on_generated_swag() {
    let _l = lock();
    let (model, out) = (tiny_model(), tmp("mc"));
    let a = ["--generate", "16"];
    multiple_choice::main(train("multiple_choice", &model, &out, &a)).unwrap();
    check_run(&out, "BertForMultipleChoice");
    let swag = bert_datasets::tasks::swag::read_swag(out.join("data/generated_train.csv")).unwrap();
    assert_eq!(swag.len(), 16);
    assert!(swag.iter().all(|e| e.choices.len() == 4));
}

/// The first 400 lines of the Jargon File as a small corpus.
fn small_corpus(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("data/corpus/jargon.txt")).unwrap();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text.lines().take(400).collect::<Vec<_>>().join("\n")).unwrap();
    path
}

fn pretrain_args(corpus: &Path, out: &Path, steps: &str, extra: &[&str]) -> pretrain::Args {
    pretrain::Args::parse_from(lm_args("pretrain", corpus, out, steps, extra))
}

/// An LM example (`main`: `mlm`, `clm`) on [`small_corpus`] in `dir`, 3 steps with an evaluation
/// at step 3, and `extra`; its output folder.
fn lm_run(dir: &Path, name: &str, extra: &[&str], main: impl FnOnce(Vec<&str>)) -> PathBuf {
    let corpus = small_corpus(dir);
    let out = dir.join("out");
    let extra = [&["--eval-steps", "3"][..], extra].concat();
    main(lm_args(name, &corpus, &out, "3", &extra));
    out
}

/// The arguments `pretrain`, `mlm` and `clm` share: a tiny model on `corpus` for `steps` steps.
fn lm_args<'a>(
    name: &'a str,
    corpus: &'a Path,
    out: &'a Path,
    steps: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        name,
        "--corpus",
        corpus.to_str().unwrap(),
        "--paragraphs",
        "--output-dir",
        out.to_str().unwrap(),
        "--vocab-size",
        "400",
        "--hidden-size",
        "32",
        "--num-hidden-layers",
        "1",
        "--num-attention-heads",
        "2",
        "--max-seq-length",
        "32",
        "--eval-fraction",
        "0.2",
        "--max-steps",
        steps,
        "--batch-size",
        "4",
        "--logging-steps",
        "1",
        "--save-steps",
        "2",
        "--quiet",
        "--json",
    ];
    a.extend(extra);
    if !extra.contains(&"--eval-steps") {
        a.extend(["--eval-steps", "100"]);
    }
    a
}

/// A 4-step pretraining run with `extra` on a small corpus, and the same run killed after its
/// step-2 checkpoint (later files removed) and resumed with `--resume`: the two runs log the
/// same losses. Returns the uninterrupted run's output folder.
fn resumes_exactly(dir: &Path, extra: &[&str]) -> PathBuf {
    let corpus = small_corpus(dir);
    let (full, cut) = (dir.join("full"), dir.join("cut"));
    pretrain::main(pretrain_args(&corpus, &full, "4", extra)).unwrap();
    let tokenizer = full.join("tokenizer/tokenizer.json");
    let t = [&["--tokenizer", tokenizer.to_str().unwrap()], extra].concat();
    pretrain::main(pretrain_args(&corpus, &cut, "4", &t)).unwrap();
    for k in ["checkpoint-4", "final_model", "best_model"] {
        std::fs::remove_dir_all(cut.join(k)).unwrap();
    }
    let t = [&t[..], &["--resume"]].concat();
    pretrain::main(pretrain_args(&corpus, &cut, "4", &t)).unwrap();
    let (a, b) = (losses(&full), losses(&cut));
    assert_eq!(a.len(), 4, "{a:?}");
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert!((x.1 - y.1).abs() < 1e-6, "{a:?} vs {b:?}");
    }
    full
}

/// `--streaming`: the corpus streamed through a shuffle buffer; a run killed after its step-2
/// checkpoint and resumed re-opens the stream and continues the uninterrupted run's losses.
#[test]
fn pretrain_streams_its_corpus_and_resumes_exactly() {
    let _l = lock();
    let dir = tmp("pretrain-stream");
    let stream = ["--streaming", "--shuffle-buffer", "32"];
    let full = resumes_exactly(&dir, &[&stream[..], &["--max-eval-samples", "8"]].concat());
    assert!(log(&full).iter().any(|e| e.get("eval_mlm_loss").is_some()));
    assert!(full.join("final_model/tokenizer.json").is_file());
}

#[test]
fn pretrain_resumes_exactly_and_its_model_fills_masks_and_predicts_nsp() {
    let _l = lock();
    let dir = tmp("pretrain");
    let full = resumes_exactly(&dir, &["--dupe-factor", "2"]);
    let e = log(&full);
    let eval = e
        .iter()
        .rev()
        .find(|e| e.get("eval_mlm_accuracy").is_some())
        .unwrap();
    // Four steps from a random init: the masked-token loss is still about ln(vocab) (a loss
    // over the wrong rows, or over padding rows, is not), and the accuracies are fractions.
    let vocab = BertConfig::from_file(full.join("final_model/config.json"))
        .unwrap()
        .vocab_size as f64;
    let metric = |k: &str| eval[k].as_f64().unwrap();
    assert!(
        (metric("eval_mlm_loss") - vocab.ln()).abs() < 1.0,
        "eval_mlm_loss {} vs ln(vocab) {}",
        metric("eval_mlm_loss"),
        vocab.ln()
    );
    for k in ["eval_nsp_accuracy", "eval_mlm_accuracy"] {
        assert!((0.0..=1.0).contains(&metric(k)), "{k} {}", metric(k));
    }
    assert!(metric("eval_loss") > metric("eval_mlm_loss"), "{eval}");

    let model = full.join("final_model");
    let fill = ["--json", "the [MASK] is a program ."];
    fill_mask::main(with_model("fill_mask", &model, &fill)).unwrap();
    assert_err(
        fill_mask::main(with_model("fill_mask", &model, &["no mask here"])),
        &["no [MASK]"],
    );
    nsp::main(with_model("nsp", &model, &["--json"])).unwrap();
    let none = with_model("nsp", &dir.join("none"), &[]);
    assert_err(nsp::main(none), &["no model here"]);
}

#[test]
fn masked_lm_training_feeds_fill_mask() {
    let _l = lock();
    let dir = tmp("mlm");
    let extra = ["--whole-word-mask", "--mlm-probability", "0.3"];
    let out = lm_run(&dir, "mlm", &extra, |a| {
        mlm::main(mlm::Args::parse_from(a)).unwrap()
    });
    let e = log(&out);
    let eval = e.iter().rev().find(|e| e.get("eval_perplexity").is_some());
    let metric = |k: &str| eval.expect("an evaluation")[k].as_f64().unwrap();
    // Three steps from a random init: the loss per masked token is still about ln(vocab), the
    // perplexity its exponential (run_mlm.py's), the accuracy a fraction.
    check_run(&out, "BertForMaskedLM");
    let model = out.join("final_model");
    let config = BertConfig::from_file(model.join("config.json")).unwrap();
    let vocab = (config.vocab_size as f64).ln();
    let loss = metric("eval_loss");
    assert!(
        (loss - vocab).abs() < 1.0,
        "eval_loss {loss} vs ln(vocab) {vocab}"
    );
    assert!((metric("eval_perplexity") - loss.exp()).abs() < 1e-9 * loss.exp());
    assert!((0.0..=1.0).contains(&metric("eval_accuracy")));
    let fill = ["--json", "the [MASK] is a program ."];
    fill_mask::main(with_model("fill_mask", &model, &fill)).unwrap();
}

#[test]
fn causal_lm_pretraining_feeds_generation() {
    let _l = lock();
    let dir = tmp("clm");
    let out = lm_run(&dir, "clm", &[], |a| {
        clm::main(clm::Args::parse_from(a)).unwrap()
    });
    assert!(
        log(&out).iter().any(|e| e.get("eval_perplexity").is_some()),
        "{:?}",
        log(&out)
    );
    let model = out.join("final_model");
    assert!(BertConfig::from_file(&model).unwrap().is_decoder);
    for extra in [&[][..], &["--do-sample"], &["--no-cache"]] {
        let a = [&["--max-new-tokens", "4", "--json"], extra, &["the hacker"]].concat();
        generate::main(with_model("generate", &model, &a)).unwrap();
    }
}
