//! Gradient checkpointing (`bert::checkpoint`: each encoder layer recomputed in the backward
//! pass) gives the gradients of the plain run, on the backend `$BERT_TEST_BACKEND`.
//!
//! A process of its own: the backends that draw dropout masks on the device do so from one
//! process-wide generator, which any test running beside these would draw from too (the tests
//! here take turns).

use std::sync::Mutex;

use bert::precision::{self, Autocast};
use bert::tensors_file::{HostTensor, NamedTensors};
use bert::{BertConfig, BertForMaskedLM, BertInput, BertLMHeadModel, BertModel};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

static TURN: Mutex<()> = Mutex::new(());

/// `shape` filled with fixed values (`salt` tells tensors apart) on `device`: the weights and
/// inputs, whatever the device's generator.
fn fixed<const D: usize>(shape: [usize; D], salt: usize, device: &Device) -> Tensor<D> {
    let n = shape.iter().product::<usize>();
    let values: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 10_007) as f32 / 10_007.0 - 0.5)
        .map(|x| x * 0.2)
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Every parameter [`fixed`] (half of the vectors, the LayerNorm weights among them, around
/// 1), requiring a gradient.
struct Fixed(usize);

impl ModuleMapper for Fixed {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.0 += 1;
        let salt = self.0;
        param.map(|t| {
            let v = fixed(t.dims(), salt, &t.device());
            let v = if D == 1 && salt.is_multiple_of(2) {
                v + 1.0
            } else {
                v
            };
            v.require_grad()
        })
    }
}

const B: usize = 2;
const S: usize = 12;

/// Token ids and an attention mask with the second sequence's last four positions padding.
fn batch(d: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids: Vec<i64> = (0..B * S).map(|i| (i * 7 % 97 + 1) as i64).collect();
    let attend: Vec<i64> = (0..B * S).map(|i| i64::from(i < S + 8)).collect();
    let int = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [B, S]), d);
    (int(ids), int(attend))
}

fn config(dropout: f64) -> BertConfig {
    let mut config = BertConfig::tiny(99, 32, 2, 4);
    config.hidden_dropout_prob = dropout;
    config.attention_probs_dropout_prob = dropout;
    config
}

/// Each tensor of `a` and `b` (same names) bit for bit, but those `close` names: within 1e-6 of
/// the largest value.
fn assert_same(a: &NamedTensors, b: &NamedTensors, close: &[&str], what: &str) {
    assert_eq!(a.len(), b.len());
    for (name, t) in a {
        let (x, y) = (t.to_f32(), b[name].to_f32());
        if close.contains(&name.as_str()) {
            let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = x
                .iter()
                .zip(&y)
                .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                scale > 0.0 && worst <= 1e-6 * scale,
                "{what}: {name} {worst} of {scale}"
            );
            continue;
        }
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert!(
            bits(x) == bits(y),
            "{what}: {name} differs when checkpointed"
        );
    }
}

/// The checkpointed run's loss and every gradient (the parameters' and, for a decoder with
/// cross-attention, the encoder states') are the plain run's, bit for bit: an encoder (masked
/// LM, with padding), a decoder with cross-attention (causal LM), and the encoder under bf16
/// mixed precision where the backend takes it (recomputed in the mode it ran in). On flex,
/// ndarray and the CubeCL backends with dropout 0.1 everywhere (the recomputed layers draw the
/// same masks from the host stream's keys); on tch, which draws masks with the device's own
/// generator, without (a checkpointed layer seeds that generator, so its masks are not the plain
/// run's: the next test). The encoder
/// states feed both layers: their four gradients are summed in another order, each layer's
/// two first, so they agree to rounding.
#[test]
fn checkpointed_layers_give_the_plain_gradients() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let device = bert::backend::test_device();
    let dropout = match bert::dropout::draws_on_host(&device) {
        true => 0.1,
        false => 0.0,
    };
    let backend = std::env::var("BERT_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
    let half = matches!(backend.as_str(), "flex" | "tch" | "tch-cuda" | "cuda");
    let (b, enc, h) = (B, 5, 32);
    let mut cases = vec![(false, Autocast::Off), (true, Autocast::Off)];
    if half {
        cases.push((false, Autocast::Bf16));
    }
    for (cross, autocast) in cases {
        let mut config = config(dropout);
        config.is_decoder = cross;
        config.add_cross_attention = cross;
        let run = |d: Device| -> NamedTensors {
            d.seed(11);
            bert::dropout::seed(11);
            let (ids, attend) = batch(&d);
            let input = BertInput::new(ids.clone()).with_attention_mask(attend);
            let states = fixed([b, enc, h], 0, &d).require_grad();
            // The forward pass in the mode, the backward pass outside it (as the trainer runs
            // them).
            let (loss, mut named) = if cross {
                let m = BertLMHeadModel::new(&config, &d).map(&mut Fixed(0));
                let input = input.with_encoder(states.clone(), None);
                let out = precision::autocast(autocast, || m.forward(input, Some(ids)));
                let loss = out.unwrap().loss.unwrap();
                let grads = loss.backward();
                let mut named = bert::hub::grad_dict(&m, &grads);
                let g = states.grad(&grads).expect("the encoder states' gradient");
                named.insert("encoder_hidden_states".into(), HostTensor::from_float(g));
                (loss, named)
            } else {
                let m = BertForMaskedLM::new(&config, &d).map(&mut Fixed(0));
                let out = precision::autocast(autocast, || m.forward(input, Some(ids)));
                let loss = out.unwrap().loss.unwrap();
                let named = bert::hub::grad_dict(&m, &loss.backward());
                (loss, named)
            };
            named.insert("loss".into(), HostTensor::from_float(loss.inner()));
            named
        };
        let plain = run(device.clone().autodiff());
        let checkpointed = run(device.clone().autodiff().gradient_checkpointing());
        assert!(plain.len() > 2 + 16 * 2, "{}", plain.len());
        let what = format!("cross-attention {cross}, {autocast:?}, dropout {dropout}");
        assert_same(&plain, &checkpointed, &["encoder_hidden_states"], &what);
    }
}

/// On every backend, dropout 0.1 everywhere: `BertModel` checkpointed gives the gradients of a
/// plain run whose layers, run one by one, draw their masks where the checkpointed layers draw
/// theirs (on tch, whose generator is the device's, seeded from the host stream before each
/// layer; elsewhere the host stream itself), bit for bit: the recomputed layers drew the
/// forward pass's masks.
#[test]
fn checkpointed_layers_redraw_their_dropout_masks() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let device = bert::backend::test_device();
    let config = config(0.1);
    let run = |d: Device, checkpointed: bool| -> NamedTensors {
        let model = BertModel::new(&config, false, &d).map(&mut Fixed(0));
        let (ids, attend) = batch(&d);
        d.seed(11);
        bert::dropout::seed(11);
        let last = if checkpointed {
            let input = BertInput::new(ids).with_attention_mask(attend);
            model.forward(input).unwrap().last_hidden_state
        } else {
            let mask = bert::model::extended_attention_mask(Some(attend), B, S, 0, false, &d);
            let mut hidden = model.embeddings.forward(ids, None, None, 0);
            for layer in &model.encoder.layer {
                if !bert::dropout::draws_on_host(&d) {
                    d.seed(bert::dropout::next_seed());
                }
                hidden = layer.forward(hidden, mask.clone(), None, None).0;
            }
            hidden
        };
        let total = (last.clone() * fixed(last.dims(), 1, &d)).sum();
        let mut named = bert::hub::grad_dict(&model, &total.backward());
        named.insert("total".into(), HostTensor::from_float(total.inner()));
        named
    };
    let plain = run(device.clone().autodiff(), false);
    let checkpointed = run(device.autodiff().gradient_checkpointing(), true);
    assert!(plain.len() > 2 * 16, "{}", plain.len());
    assert_same(&plain, &checkpointed, &[], "dropout 0.1");
}
