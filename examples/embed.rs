//! Sentence embeddings with a pretrained BERT (all-MiniLM-L6-v2 by default, from the real
//! fixtures): tokenize, run `BertModel`, mean-pool over the attention mask and L2-normalise
//! (as sentence-transformers does for this model), then print the cosine similarities.
//!
//! ```text
//! cargo run --release --example embed                      # built-in sentences, flex CPU
//! cargo run --release --example embed -- --backend wgpu "A cat sat." "A dog ran."
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use bert::{BertInput, BertModel, BertPretrained};
use bert_examples::{BackendArgs, fixtures_dir, run};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

#[derive(Debug, Parser)]
#[command(about = "Embed sentences with a BERT model and print their cosine similarities")]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// HF model directory with tokenizer.json, or a model id of the local HF cache
    /// (`sentence-transformers/all-MiniLM-L6-v2`; default: the fixtures' all-MiniLM-L6-v2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Longest input in tokens; longer sentences are truncated.
    #[arg(long, default_value_t = 256)]
    max_length: usize,
    /// Print the embeddings and similarities as JSON.
    #[arg(long)]
    json: bool,
    /// Sentences to embed (default: a few built-in ones).
    sentences: Vec<String>,
}

const DEFAULT_SENTENCES: [&str; 5] = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "A cat is sleeping on the windowsill.",
];

fn main() -> ExitCode {
    run(|| {
        let args = Args::parse();
        let device = args.backend.device()?;
        let dir = match args.model {
            Some(d) => bert::hub::resolve_model(d)?,
            None => fixtures_dir()?.join("models/all-MiniLM-L6-v2"),
        };
        let sentences: Vec<String> = if args.sentences.is_empty() {
            DEFAULT_SENTENCES.iter().map(|s| s.to_string()).collect()
        } else {
            args.sentences
        };

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("{}: {e}", dir.join("tokenizer.json").display()))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: args.max_length,
                ..Default::default()
            }))
            .map_err(|e| e.to_string())?;
        let encodings = tokenizer
            .encode_batch(sentences.clone(), true)
            .map_err(|e| e.to_string())?;

        let (batch, seq) = (encodings.len(), encodings[0].get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Tensor<2, Int> {
            let v: Vec<i64> = encodings
                .iter()
                .flat_map(|e| f(e).iter().map(|&x| x as i64))
                .collect();
            Tensor::from_data(TensorData::new(v, [batch, seq]), &device)
        };
        let ids = flat(&|e| e.get_ids());
        let mask = flat(&|e| e.get_attention_mask());
        let types = flat(&|e| e.get_type_ids());

        let model = BertModel::from_pretrained(&dir, &device)?;
        let start = std::time::Instant::now();
        let out = model.forward(
            BertInput::new(ids)
                .with_attention_mask(mask.clone())
                .with_token_type_ids(types),
        )?;
        // Mean pooling over real tokens, then L2 normalisation.
        let m = mask.float().unsqueeze_dim::<3>(2);
        let summed = (out.last_hidden_state * m.clone())
            .sum_dim(1)
            .squeeze_dim::<2>(1);
        let counts = m.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
        let emb = summed / counts;
        let norm = emb.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        let emb = emb / norm;
        let sim = emb.clone().matmul(emb.clone().transpose());
        let sim: Vec<f32> = sim.into_data().try_to_vec().map_err(|e| format!("{e:?}"))?;
        let elapsed = start.elapsed();

        if args.json {
            let emb: Vec<f32> = emb.into_data().try_to_vec().map_err(|e| format!("{e:?}"))?;
            let dim = emb.len() / batch;
            let rows: Vec<_> = (0..batch)
                .map(|i| {
                    serde_json::json!({
                        "sentence": sentences[i],
                        "embedding": &emb[i * dim..(i + 1) * dim],
                        "similarity": &sim[i * batch..(i + 1) * batch],
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "model": dir, "backend": args.backend.backend.to_string(), "sentences": rows })
            );
            return Ok(());
        }
        println!(
            "{} sentences, {} tokens each (padded), embedded on {} in {:.2?}\n",
            batch, seq, args.backend.backend, elapsed
        );
        println!("cosine similarity:");
        for i in 0..batch {
            let row: Vec<String> = (0..batch)
                .map(|j| format!("{:5.2}", sim[i * batch + j]))
                .collect();
            println!("  [{}] {}  {}", i, row.join(" "), sentences[i]);
        }
        let best = (0..batch)
            .map(|i| {
                let j = (0..batch)
                    .filter(|&j| j != i)
                    .max_by(|&a, &b| sim[i * batch + a].total_cmp(&sim[i * batch + b]))
                    .unwrap_or(i);
                (i, j)
            })
            .collect::<Vec<_>>();
        println!("\nnearest neighbour:");
        for (i, j) in best {
            println!("  [{i}] -> [{j}] ({:.2})", sim[i * batch + j]);
        }
        Ok(())
    })
}
