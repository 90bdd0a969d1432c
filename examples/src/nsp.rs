//! `nsp`: is sentence B the next sentence of A? `BertForNextSentencePrediction` (or the NSP
//! head of a `BertForPreTraining` directory, e.g. the `pretrain` example's `final_model`), with
//! HF's NSP example as the default pair: logit 0 = "B follows A", logit 1 = "B is random".

use std::path::PathBuf;

use bert::{BertConfig, BertForNextSentencePrediction, BertForPreTraining, BertPretrained};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{TokenizedText, pad_texts};
use clap::Parser;
use serde_json::json;

use bert_train::tasks::{rows, softmax};

use crate::{BackendArgs, Error, model_dir_or_hint};

#[derive(Debug, Clone, Parser)]
#[command(name = "nsp", about = "Next sentence prediction: does B follow A?")]
pub struct Args {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// A BertForNextSentencePrediction or BertForPreTraining directory with its tokenizer.
    #[arg(long, default_value = "output/pretrain/final_model")]
    pub model: PathBuf,
    /// Sentence A.
    #[arg(
        default_value = "In Italy, pizza served in formal settings, such as at a restaurant, is presented unsliced."
    )]
    pub sentence_a: String,
    /// Sentence B.
    #[arg(default_value = "The sky is blue due to the shorter wavelength of blue light.")]
    pub sentence_b: String,
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> Result<(), Error> {
    model_dir_or_hint(&args.model, "pretrain")?;
    let device = args.backend.device()?;
    let tokenizer = BertTokenizer::from_pretrained(&args.model)?;
    let encoding = tokenizer.encode_pair(&args.sentence_a, &args.sentence_b)?;
    let input = pad_texts(
        &[&TokenizedText::from(&encoding)],
        tokenizer.special_ids()?.pad,
        &device,
    );
    let config = BertConfig::from_file(&args.model)?;
    let class = config.architecture();
    let logits = if class == "BertForPreTraining" {
        BertForPreTraining::from_pretrained(&args.model, &device)?
            .forward(input, None, None)?
            .seq_relationship_logits
    } else {
        BertForNextSentencePrediction::from_pretrained(&args.model, &device)?
            .forward(input, None)?
            .logits
    };
    let logits = rows(logits)?.concat();
    let p = softmax(&logits);
    let is_next = logits[0] > logits[1];
    if args.json {
        println!(
            "{}",
            json!({ "model": args.model, "sentence_a": args.sentence_a, "sentence_b": args.sentence_b,
                    "logits": logits, "is_next": is_next, "probability_is_next": p[0] })
        );
    } else {
        println!("A: {}\nB: {}", args.sentence_a, args.sentence_b);
        println!(
            "{} (is next: {:.1}%, random: {:.1}%; logits {:.3} {:.3})",
            if is_next {
                "B follows A"
            } else {
                "B is a random sentence"
            },
            100.0 * p[0],
            100.0 * p[1],
            logits[0],
            logits[1]
        );
    }
    Ok(())
}
