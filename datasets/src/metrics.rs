//! Task metrics: accuracy, F1 (binary and macro), Matthews correlation, Pearson and Spearman
//! correlation, seqeval-style entity precision/recall/F1 (BIO, strict spans), and SQuAD exact
//! match and F1 with the official answer normalisation.

use std::collections::{BTreeMap, HashMap};

use crate::tasks::classification::Label;
use crate::tasks::squad::SquadExample;

/// Fraction of equal pairs.
pub fn accuracy<T: PartialEq>(pred: &[T], gold: &[T]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

fn f1_from(tp: f64, fp: f64, fn_: f64) -> (f64, f64, f64) {
    let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let r = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

/// F1 of class `positive` (sklearn's binary F1).
pub fn f1_binary(pred: &[usize], gold: &[usize], positive: usize) -> f64 {
    let tp = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| p == positive && g == positive)
        .count() as f64;
    let fp = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| p == positive && g != positive)
        .count() as f64;
    let fn_ = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| p != positive && g == positive)
        .count() as f64;
    f1_from(tp, fp, fn_).2
}

/// Unweighted mean of the per-class F1 over the classes present in `gold` or `pred`.
pub fn f1_macro(pred: &[usize], gold: &[usize]) -> f64 {
    let mut classes: Vec<usize> = pred.iter().chain(gold).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        return 0.0;
    }
    classes
        .iter()
        .map(|&c| f1_binary(pred, gold, c))
        .sum::<f64>()
        / classes.len() as f64
}

/// Matthews correlation coefficient (multi-class form, as sklearn).
pub fn matthews_corrcoef(pred: &[usize], gold: &[usize]) -> f64 {
    let k = pred.iter().chain(gold).copied().max().map_or(0, |m| m + 1);
    let mut c = vec![vec![0f64; k]; k];
    for (&p, &g) in pred.iter().zip(gold) {
        c[g][p] += 1.0;
    }
    let s: f64 = c.iter().flatten().sum();
    let correct: f64 = (0..k).map(|i| c[i][i]).sum();
    let t: Vec<f64> = (0..k).map(|i| c[i].iter().sum()).collect();
    let p: Vec<f64> = (0..k).map(|j| (0..k).map(|i| c[i][j]).sum()).collect();
    let cov_ytyp = correct * s - t.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
    let cov_ypyp = s * s - p.iter().map(|x| x * x).sum::<f64>();
    let cov_ytyt = s * s - t.iter().map(|x| x * x).sum::<f64>();
    if cov_ypyp == 0.0 || cov_ytyt == 0.0 {
        return 0.0;
    }
    cov_ytyp / (cov_ytyt * cov_ypyp).sqrt()
}

/// Pearson correlation.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// Ranks with ties averaged (1-based).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation (Pearson of the ranks, ties averaged).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Entity spans `(type, start, end)` of a BIO sequence, strict IOB2: an entity starts with
/// `B-T` and continues with `I-T`; an `I-` without its `B-` starts no entity.
pub fn bio_entities(tags: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for (i, tag) in tags.iter().chain(std::iter::once(&"O")).enumerate() {
        let (prefix, ty) = tag.split_once('-').unwrap_or((tag, ""));
        let continues = prefix == "I" && current.as_ref().is_some_and(|(t, _)| t == ty);
        if !continues {
            if let Some((t, s)) = current.take() {
                out.push((t, s, i));
            }
            if prefix == "B" {
                current = Some((ty.to_string(), i));
            }
        }
    }
    out
}

/// Entity-level scores (seqeval, strict IOB2): overall and per type.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct EntityScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Type → (precision, recall, f1, support).
    pub per_type: BTreeMap<String, (f64, f64, f64, usize)>,
}

/// The overall F1, then a table of precision, recall, F1 and support per entity type (as
/// seqeval's `classification_report`).
impl std::fmt::Display for EntityScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entities: precision {:.4} recall {:.4} F1 {:.4}\n  {:<14} {:>9} {:>9} {:>9} {:>7}",
            self.precision, self.recall, self.f1, "type", "precision", "recall", "f1", "number"
        )?;
        for (t, (p, r, f1, n)) in &self.per_type {
            write!(f, "\n  {t:<14} {p:>9.4} {r:>9.4} {f1:>9.4} {n:>7}")?;
        }
        Ok(())
    }
}

pub fn entity_scores(pred: &[Vec<&str>], gold: &[Vec<&str>]) -> EntityScores {
    let mut counts: HashMap<String, (f64, f64, f64)> = HashMap::new(); // tp, n_pred, n_gold
    for (p, g) in pred.iter().zip(gold) {
        let pe = bio_entities(p);
        let ge = bio_entities(g);
        for e in &pe {
            let c = counts.entry(e.0.clone()).or_default();
            c.1 += 1.0;
            if ge.contains(e) {
                c.0 += 1.0;
            }
        }
        for e in &ge {
            counts.entry(e.0.clone()).or_default().2 += 1.0;
        }
    }
    let (tp, np, ng) = counts
        .values()
        .fold((0.0, 0.0, 0.0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let (precision, recall, f1) = f1_from(tp, np - tp, ng - tp);
    let per_type = counts
        .into_iter()
        .map(|(t, (tp, np, ng))| {
            let (p, r, f) = f1_from(tp, np - tp, ng - tp);
            (t, (p, r, f, ng as usize))
        })
        .collect();
    EntityScores {
        precision,
        recall,
        f1,
        per_type,
    }
}

/// The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// SQuAD exact match against the best of the gold answers (0 or 1).
pub fn squad_exact_match(prediction: &str, golds: &[&str]) -> f64 {
    let p = normalize_answer(prediction);
    f64::from(golds.iter().any(|g| normalize_answer(g) == p))
}

/// SQuAD token F1 against the best of the gold answers.
pub fn squad_f1(prediction: &str, golds: &[&str]) -> f64 {
    let p = normalize_answer(prediction);
    let pt: Vec<&str> = p.split_whitespace().collect();
    golds
        .iter()
        .map(|g| {
            let g = normalize_answer(g);
            let gt: Vec<&str> = g.split_whitespace().collect();
            if pt.is_empty() || gt.is_empty() {
                return f64::from(pt == gt);
            }
            let mut counts: HashMap<&str, i64> = HashMap::new();
            for t in &gt {
                *counts.entry(t).or_default() += 1;
            }
            let mut same = 0.0;
            for t in &pt {
                if let Some(c) = counts.get_mut(t)
                    && *c > 0
                {
                    *c -= 1;
                    same += 1.0;
                }
            }
            if same == 0.0 {
                return 0.0;
            }
            let (precision, recall) = (same / pt.len() as f64, same / gt.len() as f64);
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// The metrics of HF's GLUE/`run_glue.py` for a problem type, named as HF names them (no
/// `eval_` prefix): single-label → accuracy, F1 (binary for two classes, else macro) and
/// Matthews correlation; regression → Pearson and Spearman (`spearmanr`); multi-label →
/// subset accuracy and micro F1 (a logit above 0 is a predicted label). `logits[i]` is the
/// model's row for the example labelled `labels[i]`.
pub fn classification_metrics(
    problem_type: bert::ProblemType,
    logits: &[Vec<f32>],
    labels: &[Label],
) -> BTreeMap<String, f64> {
    use bert::ProblemType::*;
    let mut m = BTreeMap::new();
    match problem_type {
        SingleLabelClassification => {
            let pred: Vec<usize> = logits.iter().map(|r| argmax(r)).collect();
            let gold: Vec<usize> = labels.iter().map(|g| g.value() as usize).collect();
            let classes = logits.first().map_or(2, Vec::len);
            m.insert("accuracy".into(), accuracy(&pred, &gold));
            let f1 = if classes == 2 {
                f1_binary(&pred, &gold, 1)
            } else {
                f1_macro(&pred, &gold)
            };
            m.insert("f1".into(), f1);
            m.insert(
                "matthews_correlation".into(),
                matthews_corrcoef(&pred, &gold),
            );
        }
        Regression => {
            let pred: Vec<f64> = logits.iter().map(|r| r[0] as f64).collect();
            let gold: Vec<f64> = labels.iter().map(|g| g.value() as f64).collect();
            m.insert("pearson".into(), pearson(&pred, &gold));
            m.insert("spearmanr".into(), spearman(&pred, &gold));
        }
        MultiLabelClassification => {
            let pred: Vec<Vec<bool>> = logits
                .iter()
                .map(|r| r.iter().map(|&x| x > 0.0).collect())
                .collect();
            let gold: Vec<Vec<bool>> = labels
                .iter()
                .map(|l| match l {
                    Label::MultiHot(r) => r.iter().map(|&x| x > 0.5).collect(),
                    other => vec![other.value() > 0.5],
                })
                .collect();
            m.insert("subset_accuracy".into(), accuracy(&pred, &gold));
            let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
            for (p, g) in pred.iter().flatten().zip(gold.iter().flatten()) {
                match (p, g) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fn_ += 1.0,
                    _ => {}
                }
            }
            m.insert("f1_micro".into(), f1_from(tp, fp, fn_).2);
        }
    }
    m
}

/// The official SQuAD script's exact match and F1 over `examples`, in percent:
/// `predictions[i]` is the answer text for `examples[i]`; a question without answers (v2)
/// has the empty answer as its gold.
pub fn squad_scores(examples: &[SquadExample], predictions: &[String]) -> (f64, f64) {
    let (mut em, mut f1) = (0.0, 0.0);
    for (ex, pred) in examples.iter().zip(predictions) {
        let golds: Vec<&str> = if ex.answers.is_empty() {
            vec![""]
        } else {
            ex.answers.iter().map(|a| a.0.as_str()).collect()
        };
        em += squad_exact_match(pred, &golds);
        f1 += squad_f1(pred, &golds);
    }
    let n = examples.len().max(1) as f64;
    (100.0 * em / n, 100.0 * f1 / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// seqeval's README example: precision = recall = f1 = 0.5.
    #[test]
    fn seqeval_documented_example() {
        let gold = vec![
            vec!["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"],
            vec!["B-PER", "I-PER", "O"],
        ];
        let pred = vec![
            vec!["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"],
            vec!["B-PER", "I-PER", "O"],
        ];
        let s = entity_scores(&pred, &gold);
        assert!(
            close(s.precision, 0.5) && close(s.recall, 0.5) && close(s.f1, 0.5),
            "{s:?}"
        );
        assert_eq!(s.per_type["PER"], (1.0, 1.0, 1.0, 1));
        assert_eq!(s.per_type["MISC"], (0.0, 0.0, 0.0, 1));
        // Strict IOB2: an I- without B- is no entity.
        assert!(bio_entities(&["I-PER", "I-PER", "O"]).is_empty());
    }

    /// The official evaluation script's normalisation and token F1.
    #[test]
    fn squad_em_and_f1() {
        assert_eq!(normalize_answer("The  Denver Broncos!"), "denver broncos");
        assert_eq!(
            squad_exact_match("Denver Broncos", &["The Denver Broncos", "Broncos"]),
            1.0
        );
        assert_eq!(squad_exact_match("Denver", &["The Denver Broncos"]), 0.0);
        // pred {denver}, gold {denver, broncos}: P = 1, R = 1/2, F1 = 2/3.
        assert!(close(
            squad_f1("Denver", &["The Denver Broncos"]),
            2.0 / 3.0
        ));
        assert!(close(
            squad_f1("Carolina Panthers", &["Denver Broncos", "Carolina"]),
            2.0 / 3.0
        ));
        assert_eq!(squad_f1("", &[""]), 1.0);
    }

    /// Expected values computed independently (numpy, sklearn's definitions) on the same inputs.
    #[test]
    fn classification_and_correlation_metrics() {
        let gold = [0, 1, 1, 0, 1, 2, 2, 0];
        let pred = [0, 1, 0, 0, 1, 2, 1, 2];
        assert!(close(accuracy(&pred, &gold), 5.0 / 8.0));
        // macro F1 = mean(2/3, 2/3, 1/2) = 0.6111111
        assert!((f1_macro(&pred, &gold) - 0.611_111_111).abs() < 1e-6);
        // MCC from the confusion matrix = 0.4285714
        assert!((matthews_corrcoef(&pred, &gold) - 0.428_571_43).abs() < 1e-6);
        // binary: sklearn f1_score([1,0,1,1,0], [1,1,1,0,0]) = 0.6666667
        assert!(close(
            f1_binary(&[1, 1, 1, 0, 0], &[1, 0, 1, 1, 0], 1),
            2.0 / 3.0
        ));
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 1.0, 4.0, 3.0, 7.0];
        // numpy corrcoef = 0.8241634; Spearman = 1 - 6·Σd²/(n(n²-1)) = 0.8
        assert!((pearson(&x, &y) - 0.824_163_4).abs() < 1e-6);
        assert!(close(spearman(&x, &y), 0.8));
    }
}
