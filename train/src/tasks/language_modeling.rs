//! `BertForPreTraining` (masked LM + next sentence prediction, BERT's pretraining),
//! `BertForMaskedLM` (masked LM alone, HF `run_mlm.py`) and `BertLMHeadModel` (next-token
//! prediction, HF `run_clm.py`).

use bert::{BertForMaskedLM, BertForPreTraining, BertLMHeadModel, MaskedPositions};
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{CausalLmBatch, MaskedLmBatch, PretrainingBatch, PretrainingCollator};
use bert_datasets::pretraining::{Corpus, NspOptions, PretrainingPair};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::keyed_eval_batches;
use crate::{ItemStream, Metrics, StreamedBatches, TrainError, TrainTask, eval_metrics};

/// A language-modelling task: its held-out batches and the tokenizer saved beside the model.
/// [`PretrainingTask`], [`MaskedLmTask`] and [`CausalLmTask`] are its kinds.
pub struct LmTask<B> {
    pub eval: Vec<B>,
    pub tokenizer: BertTokenizer,
}

/// Pretraining (MLM + NSP) with evaluation on held-out pairs (fixed masks, so numbers compare
/// across steps).
pub type PretrainingTask = LmTask<PretrainingBatch>;

/// Masked-LM training (HF `run_mlm.py`) with evaluation on held-out blocks masked once
/// ([`LmTask::masked_once`] with `PretrainingCollator::collate_blocks`).
pub type MaskedLmTask = LmTask<MaskedLmBatch>;

/// Next-token training with held-out loss and perplexity per predicted token.
pub type CausalLmTask = LmTask<CausalLmBatch>;

impl<B> LmTask<B> {
    /// The sums of `f` over the held-out batches with the model in inference mode; none without
    /// held-out batches.
    fn eval_sums<M: Module, const N: usize>(
        &self,
        model: &M,
        f: impl Fn(&M, &B) -> Result<[f64; N], TrainError>,
    ) -> Result<Option<[f64; N]>, TrainError> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let model = model.valid();
        let mut sums = [0.0; N];
        for b in &self.eval {
            sums.iter_mut()
                .zip(f(&model, b)?)
                .for_each(|(s, v)| *s += v);
        }
        Ok(Some(sums))
    }
}

impl<B> LmTask<B> {
    /// Held-out `items` in batches of `batch_size`, masked once by `collator` (checked first)
    /// through `collate`, with keys from the end of the `u64` range (apart from the training
    /// keys), so the numbers compare across evaluations. For masked LM (HF `run_mlm.py`'s
    /// held-out blocks): `MaskedLmTask::masked_once(&blocks, &collator, batch_size, tokenizer,
    /// |c, key| collator.collate_blocks(c, key, &device))`.
    pub fn masked_once<T>(
        items: &[T],
        collator: &PretrainingCollator,
        batch_size: usize,
        tokenizer: BertTokenizer,
        collate: impl Fn(&[T], u64) -> B,
    ) -> Result<Self, TrainError> {
        collator.check()?;
        let eval = keyed_eval_batches(items, batch_size, collate)?;
        Ok(Self { eval, tokenizer })
    }
}

impl PretrainingTask {
    /// Evaluates on `eval_pairs` in batches of `batch_size` on `device`, masked once by
    /// `collator`.
    pub fn new(
        eval_pairs: &[PretrainingPair],
        collator: &PretrainingCollator,
        batch_size: usize,
        tokenizer: BertTokenizer,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Self::masked_once(eval_pairs, collator, batch_size, tokenizer, |c, key| {
            collator.collate(c, key, device)
        })
    }
}

/// Sums over the masked rows of a batch: the negative log-likelihood of the labels, and how many
/// of them the logits' argmax gets right (padding rows, labelled -100, count in neither).
fn mlm_sums(logits: Tensor<2>, masked: &MaskedPositions) -> (f64, i64) {
    let labels = masked.labels.clone();
    let rows = labels.dims()[0];
    let keep = labels.clone().greater_equal_elem(0);
    let logp = burn::tensor::activation::log_softmax(logits.clone(), 1);
    let picked = logp
        .gather(1, labels.clone().clamp_min(0).reshape([rows, 1]))
        .reshape([rows]);
    let nll: f32 = (picked.neg() * keep.clone().float()).sum().into_scalar();
    let right: i64 = (logits.argmax(1).reshape([rows]).equal(labels))
        .bool_and(keep)
        .int()
        .sum()
        .into_scalar();
    (nll as f64, right)
}

impl TrainTask<BertForMaskedLM, MaskedLmBatch> for MaskedLmTask {
    /// `eval_loss`, `eval_perplexity` (`exp(eval_loss)`, as `run_mlm.py`) and `eval_accuracy`,
    /// per masked token.
    fn evaluate(&self, model: &BertForMaskedLM) -> Result<Option<Metrics>, TrainError> {
        let sums = self.eval_sums(model, |model, b| {
            let out = model.forward_masked(b.input.clone(), &b.masked)?;
            let (nll, right) = mlm_sums(out.logits, &b.masked);
            Ok([nll, right as f64, b.masked.num_labelled as f64])
        })?;
        let Some([nll, right, masked]) = sums else {
            return Ok(None);
        };
        let loss = nll / masked.max(1.0);
        Ok(eval_metrics([
            ("eval_loss", loss),
            ("eval_perplexity", loss.exp()),
            ("eval_accuracy", right / masked.max(1.0)),
        ]))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}

/// HF `--streaming` pretraining data: the NSP pairs of the corpus's training documents, read,
/// tokenized and paired as training goes (memory bounded by the buffers, whatever the corpus
/// size), shuffled through `shuffle_buffer` pairs by the corpus's seed, and masked anew for
/// every batch by `collator` on `device`. Every epoch re-opens the stream, and a resumed run
/// re-opens it at its batch ([`StreamedBatches`]).
pub fn streamed_pretraining_batches(
    corpus: Corpus,
    tokenizer: BertTokenizer,
    options: NspOptions,
    collator: PretrainingCollator,
    batch_size: usize,
    shuffle_buffer: usize,
    device: &Device,
) -> Result<StreamedBatches<PretrainingPair, PretrainingBatch>, TrainError> {
    collator.check()?;
    let seed = corpus.seed;
    let open = move || -> Result<ItemStream<PretrainingPair>, TrainError> {
        let pairs = corpus.stream_pairs(false, &tokenizer, &options)?;
        Ok(Box::new(pairs.map(|p| p.map_err(TrainError::from))))
    };
    let device = device.clone();
    StreamedBatches::new(open, batch_size, shuffle_buffer, seed, move |items, key| {
        collator.collate(&items, key, &device)
    })
}

impl TrainTask<BertForPreTraining, PretrainingBatch> for PretrainingTask {
    /// `eval_loss` (MLM + NSP), `eval_mlm_loss` and `eval_mlm_accuracy` per masked token,
    /// `eval_nsp_accuracy` per pair.
    fn evaluate(&self, model: &BertForPreTraining) -> Result<Option<Metrics>, TrainError> {
        let sums = self.eval_sums(model, |model, b| {
            let nsp_labels = b.next_sentence_label.clone();
            let out = model.forward_masked(b.input.clone(), &b.masked, nsp_labels.clone())?;
            let n = nsp_labels.dims()[0];
            let loss: f32 = out.loss.into_scalar();
            // Token-level MLM loss and accuracy over the masked rows.
            let (nll, right) = mlm_sums(out.prediction_logits, &b.masked);
            let nsp_right: i64 = (out.seq_relationship_logits.argmax(1).reshape([n]))
                .equal(nsp_labels)
                .int()
                .sum()
                .into_scalar();
            let masked = b.masked.num_labelled as f64;
            Ok([
                loss as f64 * n as f64,
                n as f64,
                nll,
                right as f64,
                masked,
                nsp_right as f64,
            ])
        })?;
        let Some([loss, pairs, nll, right, masked, nsp_right]) = sums else {
            return Ok(None);
        };
        let (pairs, masked) = (pairs.max(1.0), masked.max(1.0));
        Ok(eval_metrics([
            ("eval_loss", loss / pairs),
            ("eval_mlm_loss", nll / masked),
            ("eval_mlm_accuracy", right / masked),
            ("eval_nsp_accuracy", nsp_right / pairs),
        ]))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}

impl TrainTask<BertLMHeadModel, CausalLmBatch> for CausalLmTask {
    /// `eval_loss` and `eval_perplexity` over the predicted tokens.
    fn evaluate(&self, model: &BertLMHeadModel) -> Result<Option<Metrics>, TrainError> {
        let sums = self.eval_sums(model, |model, b| {
            // Predicted tokens: every label after the first of a row that is not padding.
            let [n, s] = b.labels.dims();
            let count: i64 = b
                .labels
                .clone()
                .slice([0..n, 1..s])
                .greater_equal_elem(0)
                .int()
                .sum()
                .into_scalar();
            let loss: f32 = model
                .forward(b.input.clone(), Some(b.labels.clone()))?
                .loss
                .expect("labels")
                .into_scalar();
            Ok([loss as f64 * count as f64, count as f64])
        })?;
        let Some([sum, tokens]) = sums else {
            return Ok(None);
        };
        let loss = sum / tokens.max(1.0);
        Ok(eval_metrics([
            ("eval_loss", loss),
            ("eval_perplexity", loss.exp()),
        ]))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}

/// One `[MASK]`'s candidates, best first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskFill {
    /// Token index of the mask in the encoded text.
    pub position: usize,
    pub candidates: Vec<MaskCandidate>,
}

/// HF `FillMaskPipeline`'s fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskCandidate {
    pub score: f32,
    pub token: u32,
    pub token_str: String,
    /// The text with this token in the mask's place.
    pub sequence: String,
}

/// HF's `FillMaskPipeline`: the `top_k` tokens for each `[MASK]` of `text`, with their
/// probabilities. `mlm_logits` runs the model (`BertForMaskedLM` or `BertForPreTraining`) on
/// the encoded text and returns its `[1, seq, vocab]` logits. A text without `[MASK]` is an
/// error.
pub fn fill_mask(
    mlm_logits: impl Fn(bert::BertInput) -> Result<Tensor<3>, bert::BertError>,
    tokenizer: &BertTokenizer,
    text: &str,
    top_k: usize,
    device: &Device,
) -> Result<Vec<MaskFill>, TrainError> {
    use bert_datasets::collate::{TokenizedText, pad_texts};
    let special = tokenizer.special_ids()?;
    let t = TokenizedText::from(&tokenizer.encode(text)?);
    let positions: Vec<usize> = (0..t.len())
        .filter(|&i| t.input_ids[i] == special.mask)
        .collect();
    if positions.is_empty() {
        return Err(bert::BertError::Input(format!("no [MASK] token in {text:?}")).into());
    }
    // HF decodes a filled-in text without special tokens when it has one mask, with them
    // (the other masks, `[CLS]`, `[SEP]`) when it has several.
    let single = positions.len() == 1;
    let logits = mlm_logits(pad_texts(&[&t], special.pad, device))?;
    let [_, s, v] = logits.dims();
    let all = super::rows(logits.reshape([s, v]))?;
    Ok(positions
        .iter()
        .map(|&p| {
            let probs = super::softmax(&all[p]);
            let mut idx: Vec<usize> = (0..v).collect();
            idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let candidates = idx
                .iter()
                .take(top_k)
                .map(|&i| {
                    let mut ids = t.input_ids.clone();
                    ids[p] = i as u32;
                    MaskCandidate {
                        score: probs[i],
                        token: i as u32,
                        token_str: tokenizer.inner.id_to_token(i as u32).unwrap_or_default(),
                        sequence: tokenizer.inner.decode(&ids, single).unwrap_or_default(),
                    }
                })
                .collect();
            MaskFill {
                position: p,
                candidates,
            }
        })
        .collect())
}
