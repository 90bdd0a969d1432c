//! `BertForQuestionAnswering` (HF `run_qa.py`, `QuestionAnsweringPipeline`): long contexts in
//! windows, the n-best spans over all windows, SQuAD exact match and F1.

use bert::BertForQuestionAnswering;
use bert_datasets::BertTokenizer;
use bert_datasets::collate::{
    QuestionAnsweringBatch, QuestionAnsweringBatcher, QuestionAnsweringItem,
};
use bert_datasets::metrics::squad_scores;
use bert_datasets::tasks::squad::{
    AnswerCandidate, Postprocess, SquadExample, SquadFeature, postprocess_qa_predictions,
    prepare_features,
};
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;

use super::{WeightedMean, rows};
use crate::{Metrics, TrainError, TrainTask, eval_metrics};

/// Fine-tuning with SQuAD evaluation on held-out questions.
pub struct QuestionAnsweringTask {
    pub examples: Vec<SquadExample>,
    /// The examples' windows (`prepare_features`).
    pub features: Vec<SquadFeature>,
    pub batch_size: usize,
    pub postprocess: Postprocess,
    pub tokenizer: BertTokenizer,
    /// Where evaluation runs.
    pub device: Device,
}

/// Start and end logits of one window, trimmed to its tokens.
type SpanLogits = (Vec<f32>, Vec<f32>);

/// A question's answer and its score (start + end logit).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Answer {
    pub question: String,
    pub answer: String,
    pub score: f32,
    /// The first reference answer, for a held-out question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold: Option<String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n  answer: {:?} (score {:.2})",
            self.question, self.answer, self.score
        )?;
        match &self.gold {
            Some(g) => write!(f, ", gold {g:?}"),
            None => Ok(()),
        }
    }
}

/// Each window's start and end logits, and with `with_loss` the mean loss over the windows
/// (0 without: inference has no answer positions).
fn window_logits(
    model: &BertForQuestionAnswering,
    features: &[SquadFeature],
    batch_size: usize,
    pad_id: u32,
    with_loss: bool,
    device: &Device,
) -> Result<(Vec<SpanLogits>, f64), TrainError> {
    let batcher = QuestionAnsweringBatcher { pad_id };
    let mut out = Vec::new();
    let mut loss = WeightedMean::default();
    for chunk in features.chunks(batch_size.max(1)) {
        let items: Vec<QuestionAnsweringItem> = chunk.iter().map(Into::into).collect();
        let lens: Vec<usize> = items.iter().map(|i| i.text.len()).collect();
        let b = batcher.batch(items, device);
        let o = if with_loss {
            let o = model.forward(b.input, Some(b.start_positions), Some(b.end_positions))?;
            loss.add(o.loss.clone().expect("positions"), chunk.len());
            o
        } else {
            model.forward(b.input, None, None)?
        };
        let (start, end) = (rows(o.start_logits)?, rows(o.end_logits)?);
        for ((s, e), len) in start.into_iter().zip(end).zip(lens) {
            out.push((s[..len].to_vec(), e[..len].to_vec()));
        }
    }
    Ok((out, loss.mean()))
}

impl QuestionAnsweringTask {
    /// The best answer of every evaluation question and the mean loss over its windows.
    pub fn predict_eval(
        &self,
        model: &BertForQuestionAnswering,
    ) -> Result<(Vec<AnswerCandidate>, f64), TrainError> {
        let pad = self.tokenizer.special_ids()?.pad;
        let (logits, loss) = window_logits(
            &model.valid(),
            &self.features,
            self.batch_size,
            pad,
            true,
            &self.device,
        )?;
        let answers =
            postprocess_qa_predictions(&self.examples, &self.features, &logits, &self.postprocess);
        Ok((answers, loss))
    }

    /// The first `n` evaluation questions with the model's answers and their reference
    /// answers.
    pub fn held_out_answers(
        &self,
        model: &BertForQuestionAnswering,
        n: usize,
    ) -> Result<Vec<Answer>, TrainError> {
        let (predicted, _) = self.predict_eval(model)?;
        Ok(self
            .examples
            .iter()
            .zip(predicted)
            .take(n)
            .map(|(e, a)| Answer {
                question: e.question.clone(),
                answer: a.text,
                score: a.score,
                gold: e.answers.first().map(|g| g.0.clone()),
            })
            .collect())
    }
}

impl TrainTask<BertForQuestionAnswering, QuestionAnsweringBatch> for QuestionAnsweringTask {
    /// `eval_loss`, `eval_exact_match` and `eval_f1` (percent, as the SQuAD script).
    fn evaluate(&self, model: &BertForQuestionAnswering) -> Result<Option<Metrics>, TrainError> {
        if self.examples.is_empty() {
            return Ok(None);
        }
        let (answers, loss) = self.predict_eval(model)?;
        let texts: Vec<String> = answers.into_iter().map(|a| a.text).collect();
        let (em, f1) = squad_scores(&self.examples, &texts);
        Ok(eval_metrics([
            ("eval_loss", loss),
            ("eval_exact_match", em),
            ("eval_f1", f1),
        ]))
    }

    fn tokenizer(&self) -> Option<&BertTokenizer> {
        Some(&self.tokenizer)
    }
}

/// HF's `QuestionAnsweringPipeline`: answers each question over `context` (windows of
/// `max_length` tokens sharing `doc_stride`, the best span over all of them).
pub fn answer_questions(
    model: &BertForQuestionAnswering,
    tokenizer: &BertTokenizer,
    questions: &[String],
    context: &str,
    (max_length, doc_stride): (usize, usize),
    postprocess: &Postprocess,
    device: &Device,
) -> Result<Vec<Answer>, TrainError> {
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
    let features = prepare_features(tokenizer, &examples, max_length, doc_stride)?;
    let pad = tokenizer.special_ids()?.pad;
    let (logits, _) = window_logits(&model.valid(), &features, 1, pad, false, device)?;
    Ok(
        postprocess_qa_predictions(&examples, &features, &logits, postprocess)
            .into_iter()
            .zip(questions)
            .map(|(a, q)| Answer {
                question: q.clone(),
                answer: a.text,
                score: a.score,
                gold: None,
            })
            .collect(),
    )
}
