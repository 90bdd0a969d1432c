//! Bad input, as a new user gives it: each case runs an example binary (built by `cargo test`
//! beside this test) and asserts its exit status — 2 for a flag clap refuses, 1 for an error
//! the example reports — that nothing panicked (exit 101, "panicked at"), and the words of the
//! message: the flag or file, the value, the allowed range or the problem.

use std::path::{Path, PathBuf};
use std::process::Command;

use bert::fixtures::Scratch;

/// `target/<profile>/examples/NAME`, beside this test's `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

fn scratch(name: &str, contents: &[u8]) -> Scratch {
    Scratch::file("bad-input", name, contents)
}

fn fixtures() -> PathBuf {
    bert_datasets::fixtures::dir().expect("fixtures (shared/fixtures/fetch.sh)")
}

/// Runs `name args…` and checks the exit status, that it did not panic, and that stderr holds
/// every one of `words`.
fn refuses(name: &str, args: &[&str], status: i32, words: &[&str]) {
    let mut cmd = Command::new(example(name));
    cmd.args(args);
    let out_dir = Scratch::dir("bad-input-out");
    if !matches!(name, "fill_mask" | "nsp" | "generate") {
        cmd.arg("--output-dir").arg(out_dir.join("out"));
    }
    let out = cmd
        .env("BERT_FIXTURES", fixtures())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e} (is the example built? `cargo test` builds it)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let case = format!("{name} {}", args.join(" "));
    assert_ne!(out.status.code(), Some(101), "{case}: panicked\n{stderr}");
    assert!(
        !stderr.contains("panicked at"),
        "{case}: panicked\n{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(status),
        "{case}: exit status\n{stderr}"
    );
    for w in words {
        assert!(stderr.contains(w), "{case}: no `{w}` in\n{stderr}");
    }
}

/// Every numeric flag out of HF's range is refused by the parser, naming the flag, the value
/// and the range (exit 2, before anything is loaded).
#[test]
fn flags_out_of_range_are_named() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("classify", &["--batch-size", "0"], "1.."),
        ("classify", &["--gradient-accumulation-steps", "0"], "1.."),
        ("classify", &["--validation-split", "1.5"], "(0, 1)"),
        ("classify", &["--validation-split=-0.2"], "(0, 1)"),
        ("classify", &["--max-length", "0"], "1.."),
        ("classify", &["--learning-rate", "0"], "(0, ∞)"),
        ("classify", &["--num-train-epochs=-1"], "(0, ∞)"),
        ("classify", &["--warmup-ratio", "1.5"], "[0, 1]"),
        ("classify", &["--weight-decay=-0.1"], "[0, ∞)"),
        ("classify", &["--max-grad-norm", "0"], "(0, ∞)"),
        ("classify", &["--adam-beta2", "1"], "[0, 1)"),
        ("classify", &["--max-steps", "0"], "1.."),
        ("classify", &["--logging-steps", "0"], "1.."),
        ("classify", &["--eval-steps", "0"], "1.."),
        ("classify", &["--save-steps", "0"], "1.."),
        ("classify", &["--save-total-limit", "0"], "1.."),
        ("classify", &["--batch-size", "eight"], "not a number"),
        ("ner", &["--validation-split", "1"], "(0, 1)"),
        ("qa", &["--n-best-size", "0"], "1.."),
        ("multiple_choice", &["--generate", "0"], "1.."),
        ("pretrain", &["--dupe-factor", "0"], "1.."),
        ("pretrain", &["--mlm-probability", "0"], "(0, 1)"),
        ("pretrain", &["--eval-fraction", "1"], "(0, 1)"),
        ("mlm", &["--mlm-probability", "0"], "(0, 1)"),
        ("fill_mask", &["--top-k", "0"], "1.."),
        ("generate", &["--temperature", "0"], "(0, ∞)"),
    ];
    for (name, args, range) in cases {
        let flag = args[0].split('=').next().unwrap();
        refuses(name, args, 2, &["invalid value", flag, range]);
    }
    refuses("classify", &["--backend", "tpu"], 2, &["tpu"]);
    refuses("classify", &["--dtype", "f8"], 2, &["unknown dtype `f8`"]);
}

/// A classification file with a fault: a ragged row, an unclosed quote, one class only, no
/// rows, a missing file; and an evaluation split with nothing in it.
#[test]
fn classification_data_faults_are_named() {
    let header = b"text,label\n";
    let rows = |extra: &[u8]| {
        let mut v = header.to_vec();
        for i in 0..10 {
            v.extend(format!("sentence {i},{}\n", i % 2).as_bytes());
        }
        v.extend(extra);
        v
    };
    let ragged = scratch("ragged.csv", &rows(b"one,too,many,1\n"));
    let quote = scratch("quote.csv", &rows(b"\"never closed,1\nmore,0\n"));
    let single = scratch("single.csv", b"text,label\na,pos\nb,pos\nc,pos\nd,pos\n");
    let empty = scratch("empty.csv", b"");
    let tiny = scratch("tiny.csv", b"text,label\na,0\nb,1\n");
    let p = |p: &Path| p.display().to_string();
    let cases: Vec<(PathBuf, Vec<&str>, Vec<String>)> = vec![
        (
            ragged.to_path_buf(),
            vec![],
            vec![format!("{}:12", p(&ragged)), "4 fields".into()],
        ),
        (
            quote.to_path_buf(),
            vec![],
            vec![format!("{}:12", p(&quote)), "not closed".into()],
        ),
        (
            single.to_path_buf(),
            vec![],
            vec!["1 class".into(), "at least 2".into(), "regression".into()],
        ),
        (empty.to_path_buf(), vec![], vec![p(&empty)]),
        (
            PathBuf::from("/nonexistent/train.csv"),
            vec![],
            vec!["/nonexistent/train.csv".into()],
        ),
        (
            tiny.to_path_buf(),
            vec!["--validation-split", "0.1"],
            vec!["evaluation set is empty".into(), "--no-eval".into()],
        ),
    ];
    for (file, extra, words) in &cases {
        let mut args = vec!["--train-file", file.to_str().unwrap()];
        args.extend(extra);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        refuses("classify", &args, 1, &words);
    }
}

/// Broken model directories: malformed config.json, truncated weights, no weights, and a
/// --max-length beyond the model's positions.
#[test]
fn broken_models_are_named() {
    let minilm = fixtures().join("models/all-MiniLM-L6-v2");
    let copy = |name: &str| {
        let dir = Scratch::dir(&format!("bad-input-{name}"));
        for f in ["tokenizer.json", "vocab.txt"] {
            std::fs::copy(minilm.join(f), dir.join(f)).unwrap();
        }
        dir
    };
    let bad_config = copy("bad-config");
    std::fs::write(bad_config.join("config.json"), b"{\"hidden_size\": \"big\"").unwrap();
    let truncated = copy("truncated");
    std::fs::copy(minilm.join("config.json"), truncated.join("config.json")).unwrap();
    let weights = std::fs::read(minilm.join("model.safetensors")).unwrap();
    std::fs::write(
        truncated.join("model.safetensors"),
        &weights[..weights.len() / 3],
    )
    .unwrap();
    let no_weights = copy("no-weights");
    std::fs::copy(minilm.join("config.json"), no_weights.join("config.json")).unwrap();
    let train = scratch("ok.csv", b"text,label\na,0\nb,1\nc,0\nd,1\ne,0\nf,1\n");
    let t = train.to_str().unwrap();
    for (dir, words) in [
        (&bad_config, vec!["config.json"]),
        (&truncated, vec!["model.safetensors", "cannot read weights"]),
        (
            &no_weights,
            vec!["no model.safetensors or pytorch_model.bin"],
        ),
    ] {
        refuses(
            "classify",
            &[
                "--model",
                dir.to_str().unwrap(),
                "--train-file",
                t,
                "--validation-split",
                "0.5",
            ],
            1,
            &words,
        );
    }
    refuses(
        "classify",
        &["--max-length", "100000"],
        1,
        &["--max-length 100000", "max_position_embeddings 512"],
    );
    refuses(
        "qa",
        &["--max-length", "2048"],
        1,
        &["max_position_embeddings"],
    );
    refuses(
        "fill_mask",
        &["--model", "/nonexistent/model"],
        1,
        &["/nonexistent/model", "no model here"],
    );
}

/// Other data formats with a fault: a CoNLL line with one column, a SQuAD file that is not
/// JSON, a SWAG row with a missing ending, a pretraining corpus too small.
#[test]
fn task_data_faults_are_named() {
    let conll = scratch("bad.conll", b"EU B-ORG\nrejects\n\n");
    refuses(
        "ner",
        &["--train-file", conll.to_str().unwrap()],
        1,
        &[conll.to_str().unwrap()],
    );
    let squad = scratch("bad-squad.json", b"{\"data\": [");
    refuses(
        "qa",
        &["--train-file", squad.to_str().unwrap()],
        1,
        &[squad.to_str().unwrap()],
    );
    let swag = scratch(
        "bad-swag.csv",
        b"sent1,sent2,ending0,ending1,label\nA,B,c,d,0\nA,B,c,1\n",
    );
    refuses(
        "multiple_choice",
        &["--train-file", swag.to_str().unwrap()],
        1,
        &["bad-swag.csv:3"],
    );
    let corpus = scratch("tiny-corpus.txt", b"One sentence.\n\nAnother one.\n");
    for example in ["pretrain", "mlm"] {
        refuses(
            example,
            &["--corpus", corpus.to_str().unwrap()],
            1,
            &["tiny-corpus.txt", "at least 4"],
        );
    }
    refuses(
        "pretrain",
        &["--corpus", "/nonexistent/corpus.txt"],
        1,
        &["/nonexistent/corpus.txt"],
    );
}

/// A model id is read from the local HF cache as HF's `from_pretrained` reads it
/// (`$HF_HUB_CACHE/models--{org}--{name}/snapshots/{refs/main}/`, the files symlinks as
/// `huggingface_hub` makes them): `embed --model sentence-transformers/all-MiniLM-L6-v2` prints
/// what `--model <the fixture's directory>` prints; an id the cache lacks is an error naming the
/// cache folder it looked for.
#[test]
fn a_model_id_is_read_from_the_hf_cache() {
    let minilm = fixtures().join("models/all-MiniLM-L6-v2");
    let cache = Scratch::dir("hf-cache");
    let repo = cache.join("models--sentence-transformers--all-MiniLM-L6-v2");
    let commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for f in std::fs::read_dir(&minilm).unwrap() {
        let f = f.unwrap().path();
        std::os::unix::fs::symlink(&f, snapshot.join(f.file_name().unwrap())).unwrap();
    }
    let embed = |model: &Path| {
        Command::new(example("embed"))
            .args(["--json", "A cat sat on the mat.", "A dog ran.", "--model"])
            .arg(model)
            .env("HF_HUB_CACHE", &*cache)
            .output()
            .expect("the embed example (built by `cargo test`)")
    };
    let (by_id, by_dir) = (
        embed(Path::new("sentence-transformers/all-MiniLM-L6-v2")),
        embed(&minilm),
    );
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    assert!(by_id.status.success(), "{}", stderr(&by_id));
    assert!(by_dir.status.success(), "{}", stderr(&by_dir));
    // The same embeddings and similarities; only the `model` each names differs.
    let json = |o: &std::process::Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json output");
        v.as_object_mut()
            .unwrap()
            .remove("model")
            .expect("the model it names");
        v
    };
    let (id_json, dir_json) = (json(&by_id), json(&by_dir));
    assert_eq!(id_json["sentences"].as_array().map(Vec::len), Some(2));
    assert_eq!(id_json, dir_json);
    let missing = embed(Path::new("sentence-transformers/no-such-model"));
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    for w in [
        "sentence-transformers/no-such-model: no such model directory",
        "models--sentence-transformers--no-such-model",
    ] {
        assert!(
            stderr(&missing).contains(w),
            "no `{w}` in {}",
            stderr(&missing)
        );
    }
}
