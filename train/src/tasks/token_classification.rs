//! `BertForTokenClassification` (HF `run_ner.py`, `TokenClassificationPipeline`): a tag per
//! word, scored seqeval-style on entities.

use bert::{BertForTokenClassification, BertPretrained};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{
    TokenClassificationBatch, TokenClassificationItem, TokenizedText, pad_texts,
};
use bert_datasets::metrics::{EntityScores, entity_scores};
use bert_datasets::tasks::conll::{Entity, TaggedWord, group_words};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::{WeightedMean, label_name, padded_eval_batches};
use crate::{Metrics, TrainError, TrainTask, eval_metrics};

/// Fine-tuning with entity-level evaluation on held-out sentences.
pub struct TokenClassificationTask {
    pub eval: Vec<TokenClassificationBatch>,
    /// Tag names, index = label id.
    pub labels: Vec<String>,
    pub tokenizer: BertTokenizer,
}

/// Predicted and gold tags of one sentence, at its labelled positions.
pub type TagRows = Vec<(Vec<String>, Vec<String>)>;

impl TokenClassificationTask {
    /// Evaluates on `eval_items`, collated in batches of `batch_size` on `device`.
    pub fn new(
        labels: Vec<String>,
        eval_items: &[TokenClassificationItem],
        batch_size: usize,
        tokenizer: BertTokenizer,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            eval: padded_eval_batches(eval_items, batch_size, &tokenizer, device)?,
            labels,
            tokenizer,
        })
    }

    /// The mean loss and the (predicted, gold) tags of every evaluation sentence.
    pub fn predict_eval(
        &self,
        model: &BertForTokenClassification,
    ) -> Result<(f64, TagRows), TrainError> {
        let model = model.valid();
        let mut loss = WeightedMean::default();
        let mut rows = Vec::new();
        for b in &self.eval {
            let out = model.forward(b.input.clone(), Some(b.labels.clone()))?;
            loss.add(out.loss.expect("labels"), b.labels.dims()[0]);
            rows.extend(tags_at_labels(out.logits, b.labels.clone(), &self.labels)?);
        }
        Ok((loss.mean(), rows))
    }
}

/// Tags at the labelled positions of each row: (predicted, gold).
fn tags_at_labels(
    logits: Tensor<3>,
    gold: Tensor<2, Int>,
    labels: &[String],
) -> Result<TagRows, TrainError> {
    let [b, s, _] = logits.dims();
    let ints = |t: Tensor<2, Int>| {
        t.into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| TrainError::Evaluation(format!("{e:?}")))
    };
    let pred = ints(logits.argmax(2).reshape([b, s]))?;
    let gold = ints(gold)?;
    Ok((0..b)
        .map(|r| {
            let keep: Vec<usize> = (r * s..(r + 1) * s).filter(|&i| gold[i] >= 0).collect();
            let names = |v: &[i64]| {
                keep.iter()
                    .map(|&i| labels[v[i] as usize].clone())
                    .collect()
            };
            (names(&pred), names(&gold))
        })
        .collect())
}

/// seqeval's entity scores of (predicted, gold) tag rows.
pub fn scores(rows: &TagRows) -> EntityScores {
    fn as_str(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let pred: Vec<Vec<&str>> = rows.iter().map(|r| as_str(&r.0)).collect();
    let gold: Vec<Vec<&str>> = rows.iter().map(|r| as_str(&r.1)).collect();
    entity_scores(&pred, &gold)
}

/// The rows with every prediction `O`: the baseline a tagger must beat on the same data.
pub fn all_o_baseline(rows: &TagRows) -> TagRows {
    rows.iter()
        .map(|(_, g)| (vec!["O".to_string(); g.len()], g.clone()))
        .collect()
}

impl TrainTask<BertForTokenClassification, TokenClassificationBatch> for TokenClassificationTask {
    /// `eval_loss`, seqeval's `eval_precision`/`eval_recall`/`eval_f1` over entities, and
    /// `eval_accuracy` over labelled tokens (HF `run_ner.py`'s names).
    fn evaluate(&self, model: &BertForTokenClassification) -> Result<Option<Metrics>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let (loss, rows) = self.predict_eval(model)?;
        let s = scores(&rows);
        let correct = rows
            .iter()
            .flat_map(|(p, g)| p.iter().zip(g).map(|(a, b)| (a == b) as usize))
            .sum::<usize>();
        let total = rows.iter().map(|r| r.1.len()).sum::<usize>().max(1);
        Ok(eval_metrics([
            ("eval_loss", loss),
            ("eval_precision", s.precision),
            ("eval_recall", s.recall),
            ("eval_f1", s.f1),
            ("eval_accuracy", correct as f64 / total as f64),
        ]))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}

/// A text tagged word by word, and its entities.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaggedText {
    pub text: String,
    pub words: Vec<TaggedWord>,
    pub entities: Vec<Entity>,
}

/// The text, its words as `word/TAG`, then one line per entity.
impl std::fmt::Display for TaggedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self
            .words
            .iter()
            .map(|w| format!("{}/{}", w.word, w.tag))
            .collect();
        write!(f, "{}\n  {}", self.text, words.join(" "))?;
        for e in &self.entities {
            write!(f, "\n  {:<14} {}", e.entity, e.word)?;
        }
        Ok(())
    }
}

/// HF's `TokenClassificationPipeline` with `aggregation_strategy="first"`: each word takes its
/// first piece's tag; BIO runs of words become entities.
pub fn tag(
    model: &BertForTokenClassification,
    tokenizer: &BertTokenizer,
    text: &str,
    device: &Device,
) -> Result<TaggedText, TrainError> {
    let encoding = tokenizer.encode(text)?;
    let pad = tokenizer.special_ids()?.pad;
    let input = pad_texts(&[&TokenizedText::from(&encoding)], pad, device);
    let logits = model.valid().forward(input, None)?.logits;
    let [_, s, _] = logits.dims();
    let pred: Vec<i64> = logits
        .argmax(2)
        .reshape([s])
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .map_err(|e| TrainError::Evaluation(format!("{e:?}")))?;
    let tags: Vec<String> = pred
        .iter()
        .map(|&p| label_name(model.config(), p as usize))
        .collect();
    let (words, entities) = group_words(text, &encoding, &tags);
    Ok(TaggedText {
        text: text.to_string(),
        words,
        entities,
    })
}
