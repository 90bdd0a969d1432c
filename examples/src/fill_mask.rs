//! `fill_mask`: the top-k tokens for each `[MASK]` of a text, as HF's `fill-mask` pipeline
//! prints them, from a `BertForMaskedLM` or `BertForPreTraining` directory (for example the
//! `final_model` of the `pretrain` or `mlm` example).

use std::path::PathBuf;

use bert::{BertConfig, BertForMaskedLM, BertForPreTraining, BertInput, BertPretrained};
use bert_datasets::BertTokenizer;
use burn::tensor::Tensor;
use clap::Parser;

use bert_train::tasks::fill_mask;

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
) -> Result<Tensor<3>, bert::BertError> {
    let config = BertConfig::from_file(&args.model)?;
    let class = config.architecture();
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
    for text in &args.texts {
        let fills = fill_mask(
            |input| mlm_logits(&args, input, &device),
            &tokenizer,
            text,
            args.top_k,
            &device,
        )?;
        if args.json {
            println!("{}", serde_json::json!({ "text": text, "masks": fills }));
            continue;
        }
        println!("{text}");
        for m in &fills {
            println!("  [MASK] at token {}:", m.position);
            for c in &m.candidates {
                println!("    {:<14} {:.4}  {}", c.token_str, c.score, c.sequence);
            }
        }
    }
    Ok(())
}
