//! `generate`: greedy or sampled (temperature, top-k) continuation of a prompt with a
//! `BertLMHeadModel` (a decoder: `is_decoder = true`), with or without the KV cache. A
//! decoder is made by the `clm` example.

use std::path::PathBuf;

use bert::{BertInput, BertLMHeadModel, BertPretrained, SamplingConfig};
use bert_datasets::BertTokenizer;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use serde_json::json;

use crate::range;
use crate::{BackendArgs, Error};

#[derive(Debug, Clone, Parser)]
#[command(name = "generate", about = "Generate text with a BertLMHeadModel")]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// A BertLMHeadModel directory with its tokenizer.
    #[arg(long, default_value = "output/causal_lm/final_model")]
    pub model: PathBuf,
    #[arg(long, default_value_t = 30, value_parser = range::at_least_one)]
    pub max_new_tokens: usize,
    /// Sample instead of taking the most likely token.
    #[arg(long)]
    pub do_sample: bool,
    #[arg(long, default_value_t = 1.0, value_parser = range::positive_f32)]
    pub temperature: f32,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Re-run the whole prefix every step instead of feeding the cached keys/values.
    #[arg(long)]
    pub no_cache: bool,
    /// Stop at [SEP].
    #[arg(long)]
    pub stop_at_sep: bool,
    #[arg(long)]
    pub json: bool,
    /// Prompts.
    #[arg(default_value = "The hacker")]
    pub prompts: Vec<String>,
}

pub fn main(args: Args) -> Result<(), Error> {
    crate::model_dir_or_hint(&args.model, "pretrain")?;
    let device = args.backend.device()?;
    let tokenizer = BertTokenizer::from_pretrained(&args.model)?;
    let special = tokenizer.special_ids()?;
    let model = BertLMHeadModel::from_pretrained(&args.model, &device)?;
    let eos = args.stop_at_sep.then_some(special.sep as i64);
    let mut results = Vec::new();
    for prompt in &args.prompts {
        // `[CLS] prompt` without the closing `[SEP]`, as the decoder was trained.
        let mut ids: Vec<i64> = tokenizer
            .encode(prompt)?
            .get_ids()
            .iter()
            .map(|&i| i as i64)
            .collect();
        if ids.last() == Some(&(special.sep as i64)) {
            ids.pop();
        }
        let prompt_len = ids.len();
        let start = std::time::Instant::now();
        let input = BertInput::new(Tensor::<2, Int>::from_data(
            TensorData::new(ids.clone(), [1, ids.len()]),
            &device,
        ));
        ids = if args.do_sample {
            let config = SamplingConfig {
                max_new_tokens: args.max_new_tokens,
                temperature: args.temperature,
                top_k: args.top_k,
                use_cache: !args.no_cache,
                eos_token_id: eos,
                seed: args.seed,
            };
            model.generate_sampled(input, &config)?
        } else {
            model
                .generate(input, args.max_new_tokens, !args.no_cache, eos)?
                .into_data()
                .convert::<i64>()
                .try_into_vec()
                .map_err(|e| format!("{e:?}"))?
        };
        let elapsed = start.elapsed().as_secs_f64();
        let new: Vec<u32> = ids[prompt_len..].iter().map(|&i| i as u32).collect();
        let all: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        results.push(json!({
            "prompt": prompt,
            "generated_text": tokenizer.inner.decode(&all, true).unwrap_or_default(),
            "new_tokens": new.len(),
            "new_ids": new,
            "seconds": elapsed,
        }));
    }
    if args.json {
        println!(
            "{}",
            json!({ "model": args.model, "do_sample": args.do_sample, "use_cache": !args.no_cache, "results": results })
        );
    } else {
        for r in &results {
            println!(
                "{}\n  ({} new tokens in {:.2} s)",
                r["generated_text"].as_str().unwrap_or_default(),
                r["new_tokens"],
                r["seconds"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
