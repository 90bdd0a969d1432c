//! HF interop: `from_pretrained` and `save_pretrained` for every class.
//!
//! Module paths equal HF state-dict keys, so loading is one walk over the model's parameters:
//! the path names the key (the one rename: the Rust field `self_` is HF's `self`), Linear
//! weights are transposed (PyTorch `[out, in]`, Burn `[in, out]`), and the `bert.` prefix rule
//! of `base_model_prefix` lets a base checkpoint fill a head model and a head checkpoint fill
//! `BertModel`. Keys HF itself ignores (the `position_ids` buffer, the tied decoder copies,
//! a pooler the class has no use for) are skipped quietly; anything else is reported as HF's
//! warnings do. Head weights absent from the checkpoint keep their fresh HF initialisation;
//! an absent encoder or embedding tensor is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::config::BertConfig;
use crate::error::{BertError, Result};
use crate::tensors_file::{HostTensor, NamedTensors, write_tensors};

/// A float tensor read from a checkpoint, as f32, in PyTorch layout.
#[derive(Debug, Clone)]
pub struct CheckpointTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All tensors of a checkpoint file, by HF key.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, CheckpointTensor>,
}

fn weights_error(path: &Path, message: impl fmt::Display) -> BertError {
    BertError::Weights {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Little-endian float bytes of `dtype` (F32, F64, F16, BF16) as f32.
pub(crate) fn to_f32(path: &Path, key: &str, dtype: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        "F32" => chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        "F64" => chunks(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        "F16" => chunks(2)
            .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
            .collect(),
        "BF16" => chunks(2)
            .map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32())
            .collect(),
        other => {
            return Err(weights_error(
                path,
                format!("tensor `{key}` has dtype {other}; expected a float type"),
            ));
        }
    })
}

impl Checkpoint {
    /// Reads `model.safetensors`, or `pytorch_model.bin` (read without running pickle code),
    /// from a model directory, or the file itself when `path` is a file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = if path.is_dir() {
            ["model.safetensors", "pytorch_model.bin"]
                .iter()
                .map(|f| path.join(f))
                .find(|p| p.is_file())
                .ok_or_else(|| BertError::NoWeights(path.to_path_buf()))?
        } else {
            path.to_path_buf()
        };
        let is_safetensors = file.extension().is_some_and(|e| e == "safetensors");
        let tensors = if is_safetensors {
            Self::read_safetensors(&file)?
        } else {
            Self::read_pytorch(&file)?
        };
        Ok(Self {
            path: file,
            tensors,
        })
    }

    fn read_safetensors(file: &Path) -> Result<BTreeMap<String, CheckpointTensor>> {
        let bytes = std::fs::read(file).map_err(|e| BertError::io(file, e))?;
        Self::parse_safetensors(&bytes, file)
    }

    /// The float tensors of safetensors bytes (`file` names them in errors): a malformed
    /// header, offsets outside the data or a non-float dtype is an error, never a panic.
    pub fn parse_safetensors(
        bytes: &[u8],
        file: &Path,
    ) -> Result<BTreeMap<String, CheckpointTensor>> {
        let st =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| weights_error(file, e))?;
        let mut out = BTreeMap::new();
        for (key, view) in st.tensors() {
            let dtype = format!("{:?}", view.dtype());
            if matches!(dtype.as_str(), "I64" | "I32" | "U8" | "BOOL") {
                continue; // integer buffers such as `position_ids`
            }
            let data = to_f32(file, &key, &dtype, view.data())?;
            out.insert(
                key,
                CheckpointTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(out)
    }

    fn read_pytorch(file: &Path) -> Result<BTreeMap<String, CheckpointTensor>> {
        use pytorch_reader::DType;
        let reader =
            pytorch_reader::PytorchReader::new(file).map_err(|e| weights_error(file, e))?;
        let mut out = BTreeMap::new();
        for (key, t) in reader.into_tensors() {
            let dtype = match t.dtype() {
                DType::F32 => "F32",
                DType::F64 => "F64",
                DType::F16 => "F16",
                DType::BF16 => "BF16",
                _ => continue,
            };
            let bytes = t.read().map_err(|e| weights_error(file, e))?;
            let data = to_f32(file, &key, dtype, &bytes)?;
            // The pickle names a shape and a storage separately: a file where they disagree
            // would panic in `TensorData::new` later.
            let elements: usize = t.shape().iter().product();
            if elements != data.len() {
                return Err(weights_error(
                    file,
                    format!(
                        "tensor `{key}` has shape {:?} ({elements} values) but {} values of data",
                        t.shape(),
                        data.len()
                    ),
                ));
            }
            out.insert(
                key,
                CheckpointTensor {
                    shape: t.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(out)
    }
}

/// What `from_pretrained` did with the checkpoint's keys (HF's loading warnings).
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub class: String,
    pub checkpoint: PathBuf,
    /// Model keys absent from the checkpoint, left newly initialised.
    pub missing: Vec<String>,
    /// Checkpoint keys the model has no use for.
    pub unexpected: Vec<String>,
    /// Other notes (e.g. a decoder class loaded from an encoder config).
    pub notes: Vec<String>,
}

impl LoadReport {
    /// HF's wording for the same situations.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.unexpected.is_empty() {
            w.push(format!(
                "Some weights of the model checkpoint at {} were not used when initializing {}: {:?}",
                self.checkpoint.display(),
                self.class,
                self.unexpected
            ));
        }
        if !self.missing.is_empty() {
            w.push(format!(
                "Some weights of {} were not initialized from the model checkpoint at {} and are newly initialized: {:?}\n\
                 You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.",
                self.class,
                self.checkpoint.display(),
                self.missing
            ));
        }
        w.extend(self.notes.iter().cloned());
        w
    }
}

/// The HF key of a Burn module path (`self_` is HF's `self`).
fn hf_key(path: &[String]) -> String {
    path.iter()
        .map(|s| if s == "self_" { "self" } else { s.as_str() })
        .collect::<Vec<_>>()
        .join(".")
}

/// Keys HF never reports: buffers and the tied copies of the MLM decoder.
fn quietly_ignored(key: &str, tied: bool) -> bool {
    key.ends_with("embeddings.position_ids")
        || key.ends_with("embeddings.token_type_ids")
        || (tied && key.ends_with("cls.predictions.decoder.weight"))
        || key.ends_with("cls.predictions.decoder.bias")
}

/// A model key is optional (newly initialised when absent) unless it belongs to the
/// embeddings or the encoder.
fn is_body(key: &str) -> bool {
    let key = key.strip_prefix("bert.").unwrap_or(key);
    key.starts_with("embeddings.") || key.starts_with("encoder.")
}

/// Walks the module; the path stack gives each parameter its HF key.
struct Loader<'a> {
    path: Vec<String>,
    types: Vec<String>,
    checkpoint: &'a BTreeMap<String, CheckpointTensor>,
    base_model: bool,
    missing: Vec<String>,
    used: BTreeSet<String>,
    error: Option<BertError>,
    file: PathBuf,
}

impl Loader<'_> {
    /// The checkpoint key holding model key `key`, trying HF's prefix and legacy-name rules.
    fn find(&self, key: &str) -> Option<String> {
        let mut candidates = vec![key.to_string()];
        if self.base_model {
            candidates.push(format!("bert.{key}"));
        } else if let Some(stripped) = key.strip_prefix("bert.") {
            candidates.push(stripped.to_string());
        }
        for c in candidates.clone() {
            // Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
            if c.contains("LayerNorm.") {
                candidates.push(
                    c.replace("LayerNorm.weight", "LayerNorm.gamma")
                        .replace("LayerNorm.bias", "LayerNorm.beta"),
                );
            }
            if c.ends_with("cls.predictions.bias") {
                candidates.push(c.replace("predictions.bias", "predictions.decoder.bias"));
            }
        }
        candidates
            .into_iter()
            .find(|c| self.checkpoint.contains_key(c))
    }
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.types.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.types.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let key = hf_key(&self.path);
        let Some(found) = self.find(&key) else {
            self.missing.push(key);
            return param;
        };
        let transposed = is_linear_weight(&self.path, &self.types);
        let t = &self.checkpoint[&found];
        let expected: Vec<usize> = param.lazy_shape().dims::<D>().to_vec();
        let mut expected_torch = expected.clone();
        if transposed {
            expected_torch.reverse();
        }
        if t.shape != expected_torch {
            self.error = Some(BertError::ShapeMismatch {
                path: self.file.clone(),
                key: found,
                expected: expected_torch,
                found: t.shape.clone(),
            });
            return param;
        }
        let device = param.lazy_device();
        let data = TensorData::new(t.data.clone(), t.shape.clone());
        let mut value: Tensor<D> = Tensor::from_data(data, &device);
        if transposed {
            value = value.transpose();
        }
        self.used.insert(found);
        let id: ParamId = param.id;
        param.transform_for_load(value, id)
    }
}

/// `types[i]` is the type of the struct that holds field `path[i]`.
fn is_linear_weight(path: &[String], types: &[String]) -> bool {
    path.last().is_some_and(|p| p == "weight") && types.last().is_some_and(|t| t == "Struct:Linear")
}

/// Collects every float parameter (or its gradient) with its HF key, in PyTorch layout.
struct Saver<'a> {
    path: Vec<String>,
    types: Vec<String>,
    tensors: NamedTensors,
    grads: Option<&'a Gradients>,
}

impl ModuleVisitor for Saver<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.types.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.types.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut value = param.val();
        if let Some(grads) = self.grads {
            match value.grad(grads) {
                Some(g) => value = g,
                None => return,
            }
        }
        if is_linear_weight(&self.path, &self.types) {
            value = value.transpose();
        }
        self.tensors
            .insert(hf_key(&self.path), HostTensor::from_float(value));
    }
}

/// HF's `model.state_dict()`: every parameter by HF key, in PyTorch layout, on the host.
pub fn state_dict<M: Module>(module: &M) -> NamedTensors {
    let mut saver = Saver {
        path: Vec::new(),
        types: Vec::new(),
        tensors: NamedTensors::new(),
        grads: None,
    };
    module.visit(&mut saver);
    saver.tensors
}

/// The gradient of every parameter that has one, by HF key, in PyTorch layout (`p.grad`).
pub fn grad_dict<M: Module>(module: &M, grads: &Gradients) -> NamedTensors {
    let mut saver = Saver {
        path: Vec::new(),
        types: Vec::new(),
        tensors: NamedTensors::new(),
        grads: Some(grads),
    };
    module.visit(&mut saver);
    saver.tensors
}

/// A class of the HF BERT family that can be loaded from and saved to an HF model directory.
pub trait BertPretrained: Module + Sized {
    /// The HF class name (`architectures[0]` in `config.json`).
    const CLASS: &'static str;

    /// A newly initialised model, as HF's `Class(config)`.
    fn init(config: &BertConfig, device: &Device) -> Self;

    /// The config the model was built from.
    fn config(&self) -> &BertConfig;

    /// Loads an HF model directory, printing HF's warnings (missing/unexpected keys) to stderr.
    fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let (model, report) = Self::from_pretrained_with_report(dir, device)?;
        for w in report.warnings() {
            eprintln!("warning: {w}");
        }
        Ok(model)
    }

    /// Loads an HF model directory and returns what happened to each key.
    fn from_pretrained_with_report(
        dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir)?;
        let checkpoint = Checkpoint::read(dir)?;
        Self::from_checkpoint(config, checkpoint, device)
    }

    /// Loads an HF model directory after `configure` adapts its config, as HF's
    /// `from_pretrained(dir, num_labels=…, id2label=…, hidden_dropout_prob=…)`: a head the
    /// checkpoint lacks (a `BertModel` checkpoint under a classifier) is newly initialised and
    /// named in the report's warnings.
    fn from_pretrained_with_config(
        dir: impl AsRef<Path>,
        configure: impl FnOnce(&mut BertConfig),
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let mut config = BertConfig::from_file(dir)?;
        configure(&mut config);
        Self::from_checkpoint(config, Checkpoint::read(dir)?, device)
    }

    /// Builds the model from a config and the tensors of a checkpoint.
    fn from_checkpoint(
        config: BertConfig,
        checkpoint: Checkpoint,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        config.validate()?;
        let model = Self::init(&config, device);
        let Checkpoint { path, tensors } = checkpoint;
        let mut loader = Loader {
            path: Vec::new(),
            types: Vec::new(),
            checkpoint: &tensors,
            base_model: Self::CLASS == "BertModel",
            missing: Vec::new(),
            used: BTreeSet::new(),
            error: None,
            file: path.clone(),
        };
        let model = model.map(&mut loader);
        if let Some(e) = loader.error {
            return Err(e);
        }
        if let Some(key) = loader.missing.iter().find(|k| is_body(k)) {
            return Err(BertError::MissingTensor {
                path,
                key: key.clone(),
                model: Self::CLASS.into(),
            });
        }
        let has_pooler = loader.missing.iter().any(|k| k.contains("pooler."))
            || loader.used.iter().any(|k| k.contains("pooler."));
        let tied = config.tie_word_embeddings;
        let unexpected = tensors
            .keys()
            .filter(|k| !loader.used.contains(*k) && !quietly_ignored(k, tied))
            // HF's `_keys_to_ignore_on_load_unexpected = [r"pooler"]` for classes without one.
            .filter(|k| has_pooler || !k.contains("pooler."))
            .cloned()
            .collect();
        let mut notes = Vec::new();
        if Self::CLASS == "BertLMHeadModel" && !config.is_decoder {
            notes.push(
                "If you want to use `BertLMHeadModel` as a standalone, add `is_decoder=True.`"
                    .into(),
            );
        }
        let report = LoadReport {
            class: Self::CLASS.into(),
            checkpoint: path,
            missing: loader.missing,
            unexpected,
            notes,
        };
        Ok((model, report))
    }

    /// Writes `config.json` (with `architectures = [CLASS]`) and `model.safetensors` that HF
    /// `from_pretrained` loads with no missing or unexpected keys. The tied decoder is not
    /// written, as HF does not write it either.
    fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| BertError::io(dir, e))?;
        let mut config = self.config().clone();
        config.architectures = Some(vec![Self::CLASS.to_string()]);
        write_tensors(
            dir.join("model.safetensors"),
            &state_dict(self),
            &[("format", "pt")],
        )?;
        config.save(dir)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place, so
/// that `path` is never half-written.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        BertError::io(path, e)
    })
}
