//! HF's `PreTrainedModel.resize_token_embeddings(new_num_tokens)` for every class: after
//! `tokenizer.add_tokens(...)`, the word embeddings `[vocab, hidden]` and whatever the model
//! has of a vocabulary-sized head (the MLM decoder's bias, an untied decoder weight) take the
//! new size, and `config.vocab_size` with them. The first `min(old, new)` rows are kept; new
//! embedding (and untied decoder) rows are the mean of the old ones, as HF's default
//! `mean_resizing=True` makes them (HF then adds noise of covariance `1e-9·Σ`, a ~1e-6
//! perturbation left out here); new MLM bias entries are zero, as HF's `_adjust_bias` pads the
//! decoder's bias when it ties the weights again (tied or not: transformers 5 ties the bias).

use burn::module::{ModuleMapper, Param};
use burn::tensor::Tensor;

use crate::error::{BertError, Result};

/// How a parameter indexed by the vocabulary in its first dimension grows.
#[derive(Clone, Copy)]
enum Grow {
    /// Rows of the old rows' mean: the word embeddings and an untied decoder weight.
    Mean,
    /// Zeros: the MLM decoder's bias.
    Zeros,
}

/// How the parameter at `path` grows, if the vocabulary indexes it.
fn by_vocabulary(path: &[String]) -> Option<Grow> {
    let path = path.join(".");
    let ends = |end: &str| path.ends_with(end);
    if ends("embeddings.word_embeddings.weight") || ends("predictions.decoder.weight") {
        Some(Grow::Mean)
    } else if ends("predictions.bias") {
        Some(Grow::Zeros)
    } else {
        None
    }
}

/// `t`'s first `new` rows, or all of them then `grow` rows up to `new`.
fn resize_rows<const D: usize>(t: Tensor<D>, new: usize, grow: Grow) -> Tensor<D> {
    let mut dims = t.dims();
    let old = dims[0];
    if new <= old {
        return t.narrow(0, 0, new);
    }
    dims[0] = new - old;
    let added = match grow {
        Grow::Mean => t.clone().mean_dim(0).expand(dims),
        Grow::Zeros => Tensor::zeros(dims, &t.device()),
    };
    Tensor::cat(vec![t, added], 0)
}

/// Resizes every vocabulary-indexed parameter to `new` rows, keeping its id and whether it
/// requires a gradient.
pub(crate) struct Resize {
    new: usize,
    path: Vec<String>,
}

impl Resize {
    pub(crate) fn to(new: usize) -> Self {
        Self {
            new,
            path: Vec::new(),
        }
    }
}

impl ModuleMapper for Resize {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grow) = by_vocabulary(&self.path) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let grad = tensor.is_require_grad();
        let mut value = resize_rows(tensor.detach(), self.new, grow);
        if grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

/// The checks HF leaves to the first forward pass: a vocabulary of at least one token that
/// still holds the padding token.
pub(crate) fn check(new: usize, pad_token_id: Option<usize>) -> Result<()> {
    if new == 0 {
        return Err(BertError::InvalidConfig(
            "resize_token_embeddings: the new vocabulary is empty".into(),
        ));
    }
    if let Some(pad) = pad_token_id.filter(|&p| p >= new) {
        return Err(BertError::InvalidConfig(format!(
            "resize_token_embeddings: pad_token_id {pad} is not below the new vocabulary size {new}"
        )));
    }
    Ok(())
}
