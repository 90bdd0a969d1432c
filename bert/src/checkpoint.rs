//! Gradient checkpointing as HF's (`model.gradient_checkpointing_enable()`,
//! `--gradient_checkpointing`): each encoder layer keeps only its inputs for the backward pass
//! and runs again there, the layers' activations alive one layer at a time.
//!
//! It is on where the device is (`Device::gradient_checkpointing()`, what the examples'
//! `--gradient-checkpointing` and the benchmark's rows `/ckpt` ask for), on every backend.
//! Forward: the layer runs on detached copies of its inputs and parameters, so nothing of it is
//! recorded, and one autodiff node stands for it, with the layer's input (and the encoder's
//! states, for cross-attention) and its parameters as parents. Backward: the node runs the layer
//! again on fresh leaves of the same values, with the same dropout masks (below), calls a
//! nested `backward()` from `Σ output · incoming gradient` (whose gradient for the output is the
//! incoming gradient, bit for bit) and hands each leaf's gradient to its parent. The nested run
//! records on a device without Burn's own checkpointing: inside one layer it would recompute for
//! nothing. Burn's autodiff allows the nested pass: the outer backward holds only its own graph's
//! lock while steps run (`GraphMutexClient`), and the fresh leaves start graphs of their own.
//!
//! Dropout draws the same masks the second time. On flex, ndarray and the CubeCL backends the
//! masks' keys come from this thread's host stream ([`crate::dropout::draws_on_host`]): the node
//! keeps the stream's state at the layer's start and puts it back for the recomputation (and
//! afterwards the state it found), so the gradients are the plain run's, bit for bit, dropout
//! included (a test). tch draws on the device, from a generator with no state to read back:
//! there a checkpointed layer that draws masks (training, dropout above 0) seeds the device's
//! generator from the host stream before it runs, and again with the same seed before it runs
//! again (a plain run is left as it was). The masks then differ from a plain run's, and so do
//! the values of parameters Burn initialises lazily after the first seed (a model's first
//! forward pass); without dropout nothing is seeded. The tests
//! (`bert/tests/checkpointing.rs`) compare there with a plain run whose layers are seeded the
//! same way, bit for bit.
// Burn 0.22 deprecates ndarray and tch in favour of flex and CubeCL; both are backends here.
#![cfg_attr(any(feature = "ndarray", feature = "tch"), allow(deprecated))]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, BackendTensor, DispatchKindConversion, DispatchTensor,
};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, GradientCheckpointingStrategy, Tensor};

use crate::layer::BertLayer;
use crate::precision::Autocast;

/// The autodiff backend of a checkpointing device (`Device::gradient_checkpointing()`) over the
/// backend `B`, where the model's tensors are recorded.
type Outer<B> = Autodiff<B, BalancedCheckpointing>;
/// The autodiff backend the recomputation records on.
type Nested<B> = Autodiff<B, NoCheckpointing>;

/// The most tensors a checkpointed layer takes gradients for: its input, the encoder's states
/// and its parameters (16, 26 with cross-attention); the rest of the node's parents are
/// untracked.
const MAX_PARENTS: usize = 32;

/// Whether an encoder layer given `hidden` is checkpointed: on a checkpointing device.
pub(crate) fn applies(hidden: &Tensor<3>) -> bool {
    hidden.gradient_checkpointing_strategy() == Some(GradientCheckpointingStrategy::Balanced)
}

/// A layer's inputs besides its parameters.
#[derive(Clone, Debug)]
pub(crate) struct LayerInputs {
    pub hidden: Tensor<3>,
    pub mask: Option<Tensor<4>>,
    /// Cross-attention: the encoder's states and their mask.
    pub encoder: Option<(Tensor<3>, Option<Tensor<4>>)>,
}

impl LayerInputs {
    fn run(self, layer: &BertLayer) -> Tensor<3> {
        layer.forward(self.hidden, self.mask, self.encoder, None).0
    }

    /// The tensors that take gradients: the input and the encoder's states.
    fn tracked(&self) -> Vec<Tensor<3>> {
        let encoder = self.encoder.as_ref().map(|(states, _)| states.clone());
        std::iter::once(self.hidden.clone())
            .chain(encoder)
            .collect()
    }

    /// Every tensor through `f`: the tracked ones ([`LayerInputs::tracked`]'s order) with
    /// `tracked`, the masks with `mask`.
    fn map(
        self,
        mut tracked: impl FnMut(Tensor<3>) -> Tensor<3>,
        mask: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> Self {
        Self {
            hidden: tracked(self.hidden),
            mask: self.mask.map(&mask),
            encoder: self
                .encoder
                .map(|(states, m)| (tracked(states), m.map(&mask))),
        }
    }
}

/// `layer` on `inputs`, checkpointed where [`applies`], otherwise the plain forward pass.
pub(crate) fn layer_forward(layer: &BertLayer, inputs: LayerInputs) -> Tensor<3> {
    if !applies(&inputs.hidden) {
        return inputs.run(layer);
    }
    let dispatch = inputs.hidden.clone().into_dispatch();
    macro_rules! on {
        ($backend:ty) => {
            if <DispatchTensor as DispatchKindConversion<Outer<$backend>>>::try_into_backend(
                dispatch.clone(),
            )
            .is_ok()
            {
                return record::<$backend>(layer, inputs);
            }
        };
    }
    #[cfg(feature = "flex")]
    on!(burn::backend::Flex);
    #[cfg(feature = "ndarray")]
    on!(burn::backend::NdArray);
    #[cfg(feature = "tch")]
    on!(burn::backend::LibTorch);
    #[cfg(any(
        feature = "wgpu",
        feature = "vulkan",
        feature = "cuda",
        feature = "cpu"
    ))]
    on!(burn::backend::Cube);
    let _ = dispatch;
    unreachable!("a checkpointing device of a backend this crate was not built with")
}

/// Where a layer's dropout masks come from, kept to draw them again.
#[derive(Clone, Debug)]
enum DropoutReplay {
    /// The layer draws no masks.
    None,
    /// flex, ndarray, CubeCL: the host stream's state at the layer's start.
    Host((u64, u64)),
    /// tch: the seed of the device's generator at the layer's start.
    Device(Device, u64),
}

impl DropoutReplay {
    /// Notes, or on a device that draws its own masks sets, where the masks to come are drawn
    /// (if the layer `draws` any).
    fn start(device: &Device, draws: bool) -> Self {
        if !draws {
            Self::None
        } else if crate::dropout::draws_on_host(device) {
            Self::Host(crate::dropout::stream())
        } else {
            let seed = crate::dropout::next_seed();
            device.seed(seed);
            Self::Device(device.clone(), seed)
        }
    }

    /// Draws from where [`DropoutReplay::start`] noted until `f` returns; the host stream is
    /// then as it was before.
    fn again<T>(&self, f: impl FnOnce() -> T) -> T {
        match self {
            Self::None => f(),
            Self::Host(state) => {
                let now = crate::dropout::stream();
                crate::dropout::set_stream(*state);
                let out = f();
                crate::dropout::set_stream(now);
                out
            }
            Self::Device(device, seed) => {
                device.seed(*seed);
                f()
            }
        }
    }
}

/// Whether `layer` draws dropout masks: training, with a probability above 0 somewhere. (A
/// layer that draws none leaves the device's generator alone, so that a checkpointed run
/// without dropout draws what a plain run draws, lazily initialised parameters included.)
fn draws_dropout(layer: &BertLayer) -> bool {
    let draws = |d: &burn::nn::Dropout| d.training.is_enabled() && d.prob > 0.0;
    let attention =
        |a: &crate::attention::BertAttention| draws(&a.self_.dropout) || draws(&a.output.dropout);
    attention(&layer.attention)
        || layer.crossattention.as_ref().is_some_and(attention)
        || draws(&layer.output.dropout)
}

/// The float parameters of a module, as they are.
struct Parameters(Vec<DispatchTensor>);

impl ModuleVisitor for Parameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().into_dispatch());
    }
}

/// Every float parameter detached and untracked: the module runs unrecorded.
struct Detach;

impl ModuleMapper for Detach {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(untracked)
    }
}

fn untracked<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.detach().set_require_grad(false)
}

/// Every float parameter a new leaf of the same value on the nested device; the leaves in
/// visiting order.
struct FreshLeaves<B: Backend> {
    leaves: Vec<FloatTensor<Nested<B>>>,
}

impl<B: Backend> FreshLeaves<B>
where
    DispatchTensor: DispatchKindConversion<Outer<B>> + DispatchKindConversion<Nested<B>>,
{
    /// The value of `t` (a tensor of the checkpointing device) as a new leaf of the nested
    /// device that takes a gradient, noted in `leaves`.
    fn leaf<const D: usize>(&mut self, t: Tensor<D>) -> Tensor<D> {
        let value = Outer::<B>::inner(primitive::<B, D>(t));
        let leaf = Nested::<B>::float_set_require_grad(Nested::<B>::from_inner(value), true);
        self.leaves.push(leaf.clone());
        Tensor::from_primitive::<Nested<B>>(leaf)
    }
}

impl<B: Backend> ModuleMapper for FreshLeaves<B>
where
    DispatchTensor: DispatchKindConversion<Outer<B>> + DispatchKindConversion<Nested<B>>,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| self.leaf(t))
    }
}

fn primitive<B: Backend, const D: usize>(t: Tensor<D>) -> FloatTensor<Outer<B>>
where
    DispatchTensor: DispatchKindConversion<Outer<B>>,
{
    outer::<B>(t.into_dispatch())
}

/// A float tensor of the checkpointing device (any rank) as the backend's own.
fn outer<B: Backend>(t: DispatchTensor) -> FloatTensor<Outer<B>>
where
    DispatchTensor: DispatchKindConversion<Outer<B>>,
{
    match <DispatchTensor as DispatchKindConversion<Outer<B>>>::try_into_backend(t) {
        Ok(BackendTensor::Float(t)) => t,
        _ => panic!("a float tensor of a checkpointed layer on another device than its input"),
    }
}

/// The forward pass of a checkpointed layer on the backend `B`: unrecorded, then one node.
fn record<B: Backend>(layer: &BertLayer, inputs: LayerInputs) -> Tensor<3>
where
    DispatchTensor: DispatchKindConversion<Outer<B>> + DispatchKindConversion<Nested<B>>,
{
    // Detached first: a parameter not yet drawn (Burn initialises them lazily) is drawn here,
    // before any seeding, where a plain run draws it.
    let detached_layer = layer.clone().map(&mut Detach);
    let dropout = DropoutReplay::start(&inputs.hidden.device(), draws_dropout(layer));
    let autocast = crate::precision::current();
    let detached = inputs.clone().map(untracked, |m| m.detach());
    let output = detached.clone().run(&detached_layer);
    let output = Outer::<B>::inner(primitive::<B, 3>(output));

    let mut parents = Parameters(Vec::new());
    layer.visit(&mut parents);
    let tracked: Vec<DispatchTensor> = inputs
        .tracked()
        .into_iter()
        .map(Tensor::into_dispatch)
        .chain(parents.0)
        .collect();
    let count = tracked.len();
    assert!(
        count <= MAX_PARENTS,
        "a checkpointed layer of {count} tensors (at most {MAX_PARENTS})"
    );
    let mut guards: Vec<_> = (tracked.into_iter())
        .map(|t| outer::<B>(t).into_parts().1)
        .collect();
    guards.resize_with(MAX_PARENTS, || {
        Outer::<B>::from_inner(output.clone()).into_parts().1
    });
    let Ok(guards) = <[_; MAX_PARENTS]>::try_from(guards) else {
        unreachable!()
    };
    let out = match (LayerBackward { count })
        .prepare::<BalancedCheckpointing>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            Saved {
                layer: detached_layer,
                inputs: detached,
                dropout,
                autocast,
            },
            output,
        ),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Tensor::from_primitive::<Outer<B>>(out)
}

/// What a checkpointed layer keeps for its backward pass: its inputs and parameters, detached
/// (the input is the previous layer's output: no new memory), its dropout masks' source and
/// the mixed-precision mode it ran in (the backward pass runs outside `precision::autocast`).
#[derive(Clone, Debug)]
struct Saved {
    layer: BertLayer,
    inputs: LayerInputs,
    dropout: DropoutReplay,
    autocast: Autocast,
}

/// The backward step of a checkpointed layer, whose first `count` parents take gradients.
#[derive(Debug)]
struct LayerBackward {
    count: usize,
}

impl<B: Backend> Backward<B, MAX_PARENTS> for LayerBackward
where
    DispatchTensor: DispatchKindConversion<Outer<B>> + DispatchKindConversion<Nested<B>>,
{
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, MAX_PARENTS>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let Saved {
            layer,
            inputs,
            dropout,
            autocast,
        } = ops.state;
        let nested = GradientCheckpointingStrategy::Disabled;
        let mut fresh = FreshLeaves::<B> {
            leaves: Vec::with_capacity(self.count),
        };
        let inputs = inputs.map(
            |t| fresh.leaf(t),
            |m| m.with_gradient_checkpointing_strategy(nested),
        );
        let layer = layer.map(&mut fresh);
        let output = crate::precision::autocast(autocast, || dropout.again(|| inputs.run(&layer)));
        let output = output
            .try_into_primitive::<Nested<B>>()
            .expect("a float tensor of the nested device");
        // Σ output · grad: the gradient it seeds for the output is `grad` itself.
        let seed = Nested::<B>::from_inner(grad);
        let total = Nested::<B>::float_sum(Nested::<B>::float_mul(output, seed));
        let mut nested_grads = Nested::<B>::backward(total);
        debug_assert_eq!(fresh.leaves.len(), self.count);
        for (parent, leaf) in ops.parents.iter().zip(&fresh.leaves) {
            if let (Some(parent), Some(g)) =
                (parent, Nested::<B>::grad_remove(leaf, &mut nested_grads))
            {
                grads.register::<B>(parent.id, g);
            }
        }
    }
}
