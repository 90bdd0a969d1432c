//! Next sentence prediction learns a relation between the two segments and generalises to
//! held-out pairs: `BertForPreTraining` (MLM + NSP loss, as the `pretrain` example trains it)
//! on synthetic pairs where "B follows A" means "B is about A's topic". A bug anywhere on the
//! NSP path (segment ids, the pooler's `[CLS]`, the label convention, the loss) keeps the
//! held-out accuracy at chance; so does a model that only memorises its training pairs.

mod common;

use bert::{BertConfig, BertForPreTraining, BertInput};
use bert_train::{HeadLoss, InMemoryBatches, TrainError, TrainTask, TrainingArguments, train};
use burn::tensor::{Device, Int, Tensor, TensorData};

const PAD: i64 = 0;
const CLS: i64 = 1;
const SEP: i64 = 2;
const MASK: i64 = 3;
const TOPICS: u64 = 4;
const TOPIC_WORDS: u64 = 12;
const SEGMENT: usize = 6;
const SEQ: usize = 2 * SEGMENT + 3;

#[derive(Clone)]
struct Batch {
    input: BertInput,
    labels: Tensor<2, Int>,
    next_sentence_label: Tensor<1, Int>,
}

/// SplitMix64: the test's own deterministic stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// `[CLS] A [SEP] B [SEP]`: A is six words of one topic; B six words of the same topic
/// (label 0, "is next") or of another (label 1). The first word of A is masked for MLM.
fn batch(rng: &mut Rng, size: usize, device: &Device) -> Batch {
    let word =
        |rng: &mut Rng, topic: u64| (4 + topic * TOPIC_WORDS + rng.below(TOPIC_WORDS)) as i64;
    let (mut ids, mut types, mut labels, mut nsp) = (vec![], vec![], vec![], vec![]);
    for _ in 0..size {
        let topic = rng.below(TOPICS);
        let random = rng.below(2);
        let topic_b = if random == 1 {
            (topic + 1 + rng.below(TOPICS - 1)) % TOPICS
        } else {
            topic
        };
        let a: Vec<i64> = (0..SEGMENT).map(|_| word(rng, topic)).collect();
        let b: Vec<i64> = (0..SEGMENT).map(|_| word(rng, topic_b)).collect();
        let mut row = vec![CLS, MASK];
        row.extend(&a[1..]);
        row.push(SEP);
        row.extend(&b);
        row.push(SEP);
        let mut label = vec![-100; SEQ];
        label[1] = a[0];
        types.extend((0..SEQ).map(|i| i64::from(i > SEGMENT + 1)));
        ids.extend(row);
        labels.extend(label);
        nsp.push(random as i64);
    }
    let int2 = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [size, SEQ]), device);
    Batch {
        input: BertInput::new(int2(ids))
            .with_attention_mask(int2(vec![1; size * SEQ]))
            .with_token_type_ids(int2(types)),
        labels: int2(labels),
        next_sentence_label: Tensor::from_data(TensorData::new(nsp, [size]), device),
    }
}

/// The loss over every position's labels (`forward`, not the masked rows of `forward_masked`).
impl HeadLoss<Batch> for BertForPreTraining {
    fn head_loss(&self, b: Batch) -> Result<Tensor<1>, TrainError> {
        let out = self.forward(b.input, Some(b.labels), Some(b.next_sentence_label))?;
        Ok(out.loss.expect("labels given"))
    }
}

struct Task;

impl TrainTask<BertForPreTraining, Batch> for Task {}

/// Share of `batches` whose NSP prediction (argmax of the seq-relationship logits) is right.
fn nsp_accuracy(model: &BertForPreTraining, batches: &[Batch]) -> f64 {
    let (mut right, mut total) = (0i64, 0usize);
    for b in batches {
        let logits = model
            .forward(b.input.clone(), None, None)
            .unwrap()
            .seq_relationship_logits;
        right += logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(b.next_sentence_label.clone())
            .int()
            .sum()
            .into_scalar::<i64>();
        total += b.next_sentence_label.dims()[0];
    }
    right as f64 / total as f64
}

#[test]
fn next_sentence_prediction_generalises_to_held_out_pairs() {
    let device = bert::backend::test_device().autodiff();
    let mut config = BertConfig::tiny(4 + (TOPICS * TOPIC_WORDS) as usize, 64, 2, 4);
    config.max_position_embeddings = 32;
    config.pad_token_id = Some(PAD as usize);
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    device.seed(7);
    let model = BertForPreTraining::new(&config, &device);

    let mut rng = Rng(1);
    let train_batches: Vec<Batch> = (0..16).map(|_| batch(&mut rng, 32, &device)).collect();
    let held_out: Vec<Batch> = (0..4).map(|_| batch(&mut rng, 64, &device)).collect();
    let before = nsp_accuracy(&model, &held_out);

    let dir = bert::fixtures::Scratch::dir("nsp-learns");
    // 300 steps: at 200, 1 of 9 initialisations tried on flex (seed 1) and the one CubeCL's
    // RNG draws on `cpu` ended under the thresholds below (0.93/0.91, 0.92/0.90); at 300 all 12
    // seeds tried on flex reach 1.0 on the training pairs and >= 0.99 held out.
    let args = TrainingArguments {
        warmup: 0.1,
        logging_steps: 1000,
        ..common::run_args(&dir, 300, 3e-3)
    };
    let data = InMemoryBatches::new(train_batches.clone(), true, 3);
    let out = train(&args, model, &data, &Task, &device).unwrap();

    let seen = nsp_accuracy(&out.model, &train_batches);
    let after = nsp_accuracy(&out.model, &held_out);
    eprintln!("NSP accuracy: {before} before, {seen} on the training pairs, {after} held out");
    assert!(
        before < 0.7,
        "an untrained model should be near chance, got {before}"
    );
    assert!(
        seen > 0.95 && after > 0.9,
        "NSP accuracy after training: {seen} on the training pairs, {after} held out (before: {before})"
    );
}
