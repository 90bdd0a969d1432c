//! `fill_mask`: the top-k tokens for each `[MASK]` of a text, as HF's `fill-mask` pipeline
//! prints them, from a `BertForMaskedLM` or `BertForPreTraining` directory (for example the
//! `final_model` of the `pretrain` example).

use std::path::PathBuf;

use bert::{BertConfig, BertForMaskedLM, BertForPreTraining, BertInput, BertPretrained};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{TokenizedText, pad_texts};
use burn::tensor::Tensor;
use clap::Parser;
use serde_json::json;

use bert_train::tasks::{rows, softmax};

use crate::range;
use crate::{BackendArgs, Error, model_dir_or_hint};

#[derive(Debug, Clone, Parser)]
#[command(name = "fill_mask", about = "Predict the [MASK] tokens of a text")]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// A BertForMaskedLM or BertForPreTraining directory with its tokenizer.
    #[arg(long, default_value = "output/pretrain/final_model")]
    pub model: PathBuf,
    /// Predictions per mask.
    #[arg(long, default_value_t = 5, value_parser = range::at_least_one)]
    pub top_k: usize,
    #[arg(long)]
    pub json: bool,
    /// Texts with one or more [MASK] tokens.
    #[arg(default_value = "The [MASK] of the program was written in C.")]
    pub texts: Vec<String>,
}

/// The MLM logits `[1, seq, vocab]` of one encoded text, from whichever class the directory holds.
fn mlm_logits(
    args: &Args,
    input: BertInput,
    device: &burn::tensor::Device,
) -> Result<Tensor<3>, Error> {
    let config = BertConfig::from_file(&args.model)?;
    let class = config
        .architectures
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    Ok(if class == "BertForPreTraining" {
        BertForPreTraining::from_pretrained(&args.model, device)?
            .forward(input, None, None)?
            .prediction_logits
    } else {
        BertForMaskedLM::from_pretrained(&args.model, device)?
            .forward(input, None)?
            .logits
    })
}

pub fn main(args: Args) -> Result<(), Error> {
    model_dir_or_hint(&args.model, "pretrain")?;
    let device = args.backend.device()?;
    let tokenizer = BertTokenizer::from_pretrained(&args.model)?;
    let special = tokenizer.special_ids()?;
    let mut results = Vec::new();
    for text in &args.texts {
        let encoding = tokenizer.encode(text)?;
        let t = TokenizedText::from(&encoding);
        let positions: Vec<usize> = (0..t.input_ids.len())
            .filter(|&i| t.input_ids[i] == special.mask)
            .collect();
        if positions.is_empty() {
            return Err(format!("no [MASK] token in {text:?}").into());
        }
        let b = pad_texts(&[&t], special.pad, &device);
        let input = b;
        let logits = mlm_logits(&args, input, &device)?;
        let [_, s, v] = logits.dims();
        let all = rows(logits.reshape([s, v]))?.concat();
        let mut masks = Vec::new();
        for &p in &positions {
            let probs = softmax(&all[p * v..(p + 1) * v]);
            let mut idx: Vec<usize> = (0..v).collect();
            idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let top: Vec<_> = idx
                .iter()
                .take(args.top_k)
                .map(|&i| {
                    let mut ids = t.input_ids.clone();
                    ids[p] = i as u32;
                    let sequence = tokenizer.inner.decode(&ids, true).unwrap_or_default();
                    json!({
                        "score": probs[i], "token": i,
                        "token_str": tokenizer.inner.id_to_token(i as u32).unwrap_or_default(),
                        "sequence": sequence,
                    })
                })
                .collect();
            masks.push(json!({ "position": p, "predictions": top }));
        }
        results.push(json!({ "text": text, "masks": masks }));
    }
    if args.json {
        println!("{}", json!({ "model": args.model, "results": results }));
        return Ok(());
    }
    for r in &results {
        println!("{}", r["text"].as_str().unwrap_or_default());
        for m in r["masks"].as_array().into_iter().flatten() {
            println!("  [MASK] at token {}:", m["position"]);
            for p in m["predictions"].as_array().into_iter().flatten() {
                println!(
                    "    {:<14} {:.4}  {}",
                    p["token_str"].as_str().unwrap_or_default(),
                    p["score"].as_f64().unwrap_or(0.0),
                    p["sequence"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
