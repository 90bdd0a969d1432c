//! HF interop: `from_pretrained` and `save_pretrained` for every class.
//!
//! Module paths equal HF state-dict keys (the one rename: the Rust field `self_` is HF's
//! `self`). Loading goes through burn-store: `SafetensorsStore` (memory-mapped) or
//! `PytorchStore` (`pytorch_model.bin`, pickle parsed without running code) reads the file,
//! `PyTorchToBurnAdapter` transposes Linear weights (PyTorch `[out, in]`, Burn `[in, out]`),
//! `FloatCastAdapter` casts f16/bf16/f64 weights to the device's float type, and
//! `ModuleSnapshot::apply` loads them with its shape checks. What burn-store lacks stays here:
//! HF's key rules as a `KeyRemapper` (the `bert.` prefix of `base_model_prefix` both ways, the
//! old `gamma`/`beta` names, the MLM bias stored as the decoder's), and HF's report. Keys HF
//! itself ignores (the `position_ids` buffer, the tied decoder copies, a pooler the class has
//! no use for) are skipped quietly; anything else is reported as HF's warnings do. Head weights
//! absent from the checkpoint keep their fresh HF initialisation; an absent encoder or
//! embedding tensor is an error.
//!
//! Saving writes [`state_dict`], the same function the parity tool and the gradient checks
//! read, so what is saved is what those compare; it is f32 whatever the device's float type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::burn_pack::Tensor as StoredTensor;
use burn::store::{
    ApplyError, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::{DType, Device, Gradients, Tensor};

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

/// HF's hub cache folder (`huggingface_hub`'s rules, each variable read through `var`):
/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hf_cache_dir_with(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("HF_HUB_CACHE") {
        return dir;
    }
    let home = set("HF_HOME").unwrap_or_else(|| {
        let cache =
            set("XDG_CACHE_HOME").unwrap_or_else(|| set("HOME").unwrap_or_default().join(".cache"));
        cache.join("huggingface")
    });
    home.join("hub")
}

/// [`hf_cache_dir_with`] of this process's environment.
pub fn hf_cache_dir() -> PathBuf {
    hf_cache_dir_with(|name| std::env::var(name).ok())
}

/// A model directory, or a model id of the local HF cache, as HF's `from_pretrained` takes
/// either: `path` itself where it exists; else, for a hub id (`bert-base-uncased`,
/// `sentence-transformers/all-MiniLM-L6-v2`), the snapshot of `cache` that
/// `models--{org}--{name}/refs/main` names (or its only snapshot), as `huggingface_hub` lays
/// the cache out. Nothing is downloaded. A path that is neither is returned as it is, for the
/// reader to name what is missing; an id not in the cache is an error naming where it looked.
pub fn resolve_model_in(path: &Path, cache: &Path) -> Result<PathBuf> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let Some(name) = path.to_str().filter(|n| is_hub_id(n)) else {
        return Ok(path.to_path_buf());
    };
    let folder = name.replace('/', "--");
    let repo = cache.join(format!("models--{folder}"));
    let snapshots = repo.join("snapshots");
    let main = std::fs::read_to_string(repo.join("refs").join("main")).ok();
    let by_ref = main.map(|commit| snapshots.join(commit.trim()));
    let only = || {
        let mut all = std::fs::read_dir(&snapshots)
            .ok()?
            .flatten()
            .map(|e| e.path());
        let first = all.next()?;
        all.next().is_none().then_some(first)
    };
    by_ref
        .filter(|d| d.is_dir())
        .or_else(only)
        .ok_or_else(|| BertError::ModelNotFound {
            name: name.to_string(),
            folder,
            cache: cache.to_path_buf(),
        })
}

/// [`resolve_model_in`] the cache of [`hf_cache_dir`].
pub fn resolve_model(path: impl AsRef<Path>) -> Result<PathBuf> {
    resolve_model_in(path.as_ref(), &hf_cache_dir())
}

/// Whether `name` has the shape of a hub model id: `name` or `org/name`, of letters, digits,
/// `-`, `_` and `.`, not starting with `-` or `.`, with no `--` or `..` (`huggingface_hub`'s
/// `validate_repo_id`), and not the name of a file a model directory holds (`config.json`,
/// `model.safetensors`, `vocab.txt`, …: a missing file is named as such).
fn is_hub_id(name: &str) -> bool {
    let file_like = [".json", ".safetensors", ".bin", ".txt"];
    if file_like.iter().any(|ext| name.ends_with(ext)) {
        return false;
    }
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['-', '.'])
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = name.split('/').collect();
    name.len() <= 96
        && parts.len() <= 2
        && parts.iter().all(|p| part(p))
        && !name.contains("--")
        && !name.contains("..")
}

/// The weights files of a model directory, in HF's order of preference: one safetensors
/// file, its shards' index, one pickle file, its shards' index.
pub const WEIGHTS_FILES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// The weights file of a model directory: the first of [`WEIGHTS_FILES`] there (a sharded
/// checkpoint's index stands for its shards); a file path is itself.
pub fn weights_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    WEIGHTS_FILES
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| BertError::NoWeights(path.to_path_buf()))
}

/// Every tensor of a weights file by its key, not yet read: burn-store's `SafetensorsStore`
/// (memory-mapped) or `PytorchStore` (pickle parsed without running its code), or those of
/// every shard a shard index names.
fn stored_tensors(file: &Path) -> Result<Vec<StoredTensor>> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".index.json") {
        sharded_tensors(file)
    } else if file.extension().is_some_and(|e| e == "safetensors") {
        all_stored(SafetensorsStore::from_file(file), file)
    } else {
        all_stored(PytorchStore::from_file(file), file)
    }
}

/// The tensors of a sharded checkpoint (HF's `save_pretrained(max_shard_size=…)`): its index
/// (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) maps each key to the shard
/// file beside it that holds it (`weight_map`); each shard is read as a weights file, and the
/// keys the index places there are taken from it. A shard that is missing, outside the
/// directory or without a key the index places in it is an error naming it.
fn sharded_tensors(index: &Path) -> Result<Vec<StoredTensor>> {
    let text = std::fs::read_to_string(index).map_err(|e| BertError::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| weights_error(index, format!("not a shard index: {e}")))?;
    let map = (json.get("weight_map").and_then(|m| m.as_object()))
        .ok_or_else(|| weights_error(index, "a shard index without a `weight_map` object"))?;
    // Shard file → the keys the index places in it.
    let mut shards: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, shard) in map {
        let shard = (shard.as_str())
            .filter(|s| {
                let inside = Path::new(s).components().count() == 1;
                inside && !s.ends_with(".index.json") && !matches!(*s, "." | "..")
            })
            .ok_or_else(|| {
                weights_error(
                    index,
                    format!("`weight_map` places `{key}` in {shard}, not a shard file beside it"),
                )
            })?;
        shards.entry(shard).or_default().insert(key.as_str());
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut all = Vec::with_capacity(map.len());
    for (shard, keys) in shards {
        let file = dir.join(shard);
        if !file.is_file() {
            return Err(weights_error(
                index,
                format!("its shard {shard} is missing"),
            ));
        }
        let stored: Vec<StoredTensor> = (stored_tensors(&file)?.into_iter())
            .filter(|t| keys.contains(t.name.as_str()))
            .collect();
        if stored.len() != keys.len() {
            let found: BTreeSet<&str> = stored.iter().map(|t| t.name.as_str()).collect();
            let absent = keys.iter().find(|k| !found.contains(*k)).unwrap();
            return Err(weights_error(
                &file,
                format!("the shard index places `{absent}` in this shard, which does not hold it"),
            ));
        }
        all.extend(stored);
    }
    Ok(all)
}

/// Every tensor a store holds (`file` names it in errors).
fn all_stored<S: ModuleStore>(mut store: S, file: &Path) -> Result<Vec<StoredTensor>>
where
    S::Error: fmt::Display,
{
    let all = store
        .get_all_tensors()
        .map_err(|e| weights_error(file, e))?;
    Ok(all.values().cloned().collect())
}

/// The float tensors among `stored` as f32 (integer buffers such as `position_ids` are left
/// out); a tensor whose bytes cannot be read is an error naming it.
fn to_checkpoint_tensors(
    stored: Vec<StoredTensor>,
    file: &Path,
) -> Result<BTreeMap<String, CheckpointTensor>> {
    let mut out = BTreeMap::new();
    for t in stored {
        let dtype = match t.dtype {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            _ => continue,
        };
        let bytes = t.to_bytes().map_err(|e| weights_error(file, e))?;
        let data = to_f32(file, &t.name, dtype, &bytes)?;
        let shape = t.shape.to_vec();
        // The header names a shape and a byte range separately: a file where they disagree
        // would panic in `TensorData::new` later.
        if shape.iter().product::<usize>() != data.len() {
            return Err(weights_error(
                file,
                format!(
                    "tensor `{}` has shape {shape:?} but {} values of data",
                    t.name,
                    data.len()
                ),
            ));
        }
        out.insert(t.name, CheckpointTensor { shape, data });
    }
    Ok(out)
}

impl Checkpoint {
    /// Reads the float tensors of a model directory's weights ([`weights_file`]: one file or
    /// a sharded checkpoint's shards), or of the file itself when `path` is a file, as f32 host
    /// arrays (for tools and tests; loading a model reads through
    /// [`BertPretrained::from_weights`]).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let file = weights_file(path.as_ref())?;
        let tensors = to_checkpoint_tensors(stored_tensors(&file)?, &file)?;
        Ok(Self {
            path: file,
            tensors,
        })
    }

    /// The float tensors of safetensors bytes (`file` names them in errors): a malformed
    /// header, offsets outside the data or a non-float dtype is an error, never a panic.
    pub fn parse_safetensors(
        bytes: &[u8],
        file: &Path,
    ) -> Result<BTreeMap<String, CheckpointTensor>> {
        let store = SafetensorsStore::from_bytes(Some(bytes.to_vec()));
        to_checkpoint_tensors(all_stored(store, file)?, file)
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

/// The HF key of a Burn module path, given by its parts (`self_` is HF's `self`).
fn hf_key<'a>(path: impl IntoIterator<Item = &'a str>) -> String {
    path.into_iter()
        .map(|s| if s == "self_" { "self" } else { s })
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

/// HF's key rules, as renames of the checkpoint's keys into this crate's module paths (which
/// are HF's keys but for the Rust field `self_`). Kept here because burn-store has no notion
/// of them; the renames it applies, the Linear transposition, the float casts, the shape checks
/// and the loading itself are burn-store's.
fn key_rules(base_model: bool, keys: &BTreeSet<String>) -> KeyRemapper {
    let mut rules = vec![
        (r"(^|\.)self\.", "${1}self_."),
        // Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
        (r"LayerNorm\.gamma$", "LayerNorm.weight"),
        (r"LayerNorm\.beta$", "LayerNorm.bias"),
    ];
    // `base_model_prefix = "bert"`: a head checkpoint fills `BertModel`, and a `BertModel`
    // checkpoint fills a head model's `bert`.
    rules.push(match base_model {
        true => (r"^bert\.", ""),
        false => (r"^(embeddings|encoder|pooler)\.", "bert.${1}."),
    });
    // Older checkpoints hold the MLM output bias only as the decoder's.
    if !keys.iter().any(|k| k.ends_with("cls.predictions.bias")) {
        rules.push((r"cls\.predictions\.decoder\.bias$", "cls.predictions.bias"));
    }
    KeyRemapper::from_patterns(rules).expect("the key rules are valid patterns")
}

/// A float parameter of a module: the field names on its path (`encoder`, `layer`, `0`, …,
/// `weight`; Burn's names, which the HF key follows), its id and its number of values.
#[derive(Debug, Clone)]
pub struct FloatParam {
    pub path: Vec<String>,
    pub id: burn::module::ParamId,
    pub num_elements: usize,
}

/// The float parameters of `module`, in its order (HF's `state_dict` order, which its loading
/// warnings follow).
pub fn float_params<M: Module>(module: &M) -> Vec<FloatParam> {
    #[derive(Default)]
    struct Visitor {
        path: Vec<String>,
        params: Vec<FloatParam>,
    }
    impl ModuleVisitor for Visitor {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.params.push(FloatParam {
                path: self.path.clone(),
                id: param.id,
                num_elements: param.lazy_shape().num_elements(),
            });
        }
    }
    let mut visitor = Visitor::default();
    module.visit(&mut visitor);
    visitor.params
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
        self.tensors.insert(
            hf_key(self.path.iter().map(String::as_str)),
            HostTensor::from_float(value),
        );
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

    /// The config, to change along with the model ([`Self::resize_token_embeddings`]).
    fn config_mut(&mut self) -> &mut BertConfig;

    /// HF's `resize_token_embeddings(new_num_tokens)` (after new tokens were added to the
    /// tokenizer): the word embeddings, the MLM decoder's bias and an untied decoder weight
    /// take `new_num_tokens` rows, new embedding rows the mean of the old (HF's
    /// `mean_resizing`) and new bias entries zero, and `config.vocab_size` follows; see
    /// [`crate::resize`]. An empty vocabulary, or one that loses the padding token, is an error.
    fn resize_token_embeddings(self, new_num_tokens: usize) -> Result<Self> {
        crate::resize::check(new_num_tokens, self.config().pad_token_id)?;
        let mut model = self.map(&mut crate::resize::Resize::to(new_num_tokens));
        model.config_mut().vocab_size = new_num_tokens;
        Ok(model)
    }

    /// Loads an HF model directory, or a model id of the local HF cache (`bert-base-uncased`,
    /// [`resolve_model`]), printing HF's warnings (missing/unexpected keys) to stderr.
    fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let (model, report) = Self::from_pretrained_with_report(dir, device)?;
        for w in report.warnings() {
            eprintln!("warning: {w}");
        }
        Ok(model)
    }

    /// Loads an HF model directory (or HF-cache model id) and returns what happened to each key.
    fn from_pretrained_with_report(
        dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let dir = resolve_model(dir)?;
        let config = BertConfig::from_file(&dir)?;
        Self::from_weights(config, &weights_file(&dir)?, device)
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
        let dir = resolve_model(dir)?;
        let mut config = BertConfig::from_file(&dir)?;
        configure(&mut config);
        Self::from_weights(config, &weights_file(&dir)?, device)
    }

    /// Builds the model from a config and a weights file (`model.safetensors`,
    /// `pytorch_model.bin` or a shard index), loading through burn-store with HF's key rules;
    /// the report lists the missing and unexpected keys as HF's warnings do.
    fn from_weights(
        config: BertConfig,
        file: &Path,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        config.validate()?;
        let mut model = Self::init(&config, device);
        let stored = stored_tensors(file)?;
        let keys: BTreeSet<String> = stored.iter().map(|t| t.name.clone()).collect();
        let (tensors, renames) = key_rules(Self::CLASS == "BertModel", &keys).remap(stored);
        // Module path → the checkpoint key it was read from.
        let checkpoint_key: BTreeMap<String, String> = renames.into_iter().collect();
        let key_of = |p: &str| {
            checkpoint_key
                .get(p)
                .cloned()
                .unwrap_or_else(|| p.to_string())
        };
        // PyTorch's Linear weights are [out, in] (Burn's [in, out]); a file's f16/bf16/f64
        // tensors take the device's float type.
        let float: DType = device.settings().float_dtype.into();
        let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float));
        let result = model.apply(tensors, None, Some(Box::new(adapter)), false);
        if let Some(e) = result.errors.first() {
            return Err(match e {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => BertError::ShapeMismatch {
                    path: file.to_path_buf(),
                    key: key_of(path),
                    expected: expected.to_vec(),
                    found: found.to_vec(),
                },
                other => weights_error(file, other),
            });
        }
        // burn-store lists the missing paths sorted; HF names them in the model's order.
        let absent: BTreeSet<String> = result
            .missing
            .iter()
            .map(|(p, _)| hf_key(p.split('.')))
            .collect();
        let missing: Vec<String> = float_params(&model)
            .into_iter()
            .map(|p| hf_key(p.path.iter().map(String::as_str)))
            .filter(|k| absent.contains(k))
            .collect();
        if let Some(key) = missing.iter().find(|k| is_body(k)) {
            return Err(BertError::MissingTensor {
                path: file.to_path_buf(),
                key: key.clone(),
                model: Self::CLASS.into(),
            });
        }
        let used: BTreeSet<String> = result.applied.iter().map(|p| key_of(p)).collect();
        let has_pooler = missing.iter().chain(&used).any(|k| k.contains("pooler."));
        let tied = config.tie_word_embeddings;
        let unexpected = keys
            .iter()
            .filter(|k| !used.contains(*k) && !quietly_ignored(k, tied))
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
            checkpoint: file.to_path_buf(),
            missing,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Scratch;

    #[test]
    fn hf_cache_dir_follows_huggingface_hubs_rules() {
        let with = |vars: &[(&str, &str)]| {
            let vars: BTreeMap<String, String> = (vars.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            hf_cache_dir_with(|name| vars.get(name).cloned())
        };
        let all = [
            ("HF_HUB_CACHE", "/a"),
            ("HF_HOME", "/b"),
            ("XDG_CACHE_HOME", "/c"),
            ("HOME", "/d"),
        ];
        assert_eq!(with(&all), Path::new("/a"));
        assert_eq!(with(&all[1..]), Path::new("/b/hub"));
        assert_eq!(with(&all[2..]), Path::new("/c/huggingface/hub"));
        assert_eq!(with(&all[3..]), Path::new("/d/.cache/huggingface/hub"));
        // An empty variable counts as unset.
        assert_eq!(
            with(&[("HF_HUB_CACHE", ""), ("HOME", "/d")]),
            Path::new("/d/.cache/huggingface/hub")
        );
    }

    #[test]
    fn hub_ids_are_told_from_paths() {
        for id in [
            "bert-base-uncased",
            "sentence-transformers/all-MiniLM-L6-v2",
            "a_b.c",
        ] {
            assert!(is_hub_id(id), "{id}");
        }
        for path in [
            "output/pretrain/final_model",
            "./model",
            "../m",
            "-x",
            "a--b",
            "a b",
            "",
            "config.json",
            "my/model.safetensors",
        ] {
            assert!(!is_hub_id(path), "{path}");
        }
    }

    /// `huggingface_hub`'s layout: `models--org--name/refs/main` names the snapshot of the main
    /// branch; a model with one snapshot and no ref resolves to it; two and no ref, or none,
    /// is an error naming the cache; an existing directory is itself whatever its name.
    #[test]
    fn a_model_id_resolves_to_its_snapshot_in_the_hf_cache() {
        let cache = Scratch::dir("hf-cache");
        let repo = cache.join("models--org--tiny");
        for snapshot in ["0123abc", "fedcba9"] {
            let dir = repo.join("snapshots").join(snapshot);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.json"), "{}").unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "fedcba9\n").unwrap();
        let resolve = |name: &str| resolve_model_in(Path::new(name), &cache);
        assert_eq!(resolve("org/tiny").unwrap(), repo.join("snapshots/fedcba9"));
        std::fs::remove_file(repo.join("refs/main")).unwrap();
        let err = resolve("org/tiny").unwrap_err().to_string();
        assert!(
            err.contains("models--org--tiny") && err.contains("HF cache"),
            "{err}"
        );
        std::fs::remove_dir_all(repo.join("snapshots/0123abc")).unwrap();
        assert_eq!(resolve("org/tiny").unwrap(), repo.join("snapshots/fedcba9"));
        let err = resolve("bert-base-uncased").unwrap_err();
        assert!(matches!(err, BertError::ModelNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("bert-base-uncased: no such model directory"),
            "{text}"
        );
        assert!(text.contains(&*cache.to_string_lossy()), "{text}");
        // Paths: an existing directory, and a missing path that is no id, are themselves.
        assert_eq!(resolve(&cache.to_string_lossy()).unwrap(), *cache);
        let missing = "no/such/dir";
        assert_eq!(resolve(missing).unwrap(), Path::new(missing));
    }

    /// A model of the HF cache loads as its snapshot directory does.
    #[test]
    fn a_cached_model_loads_through_its_id() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/qa");
        let cache = Scratch::dir("hf-cache-load");
        let snapshot = cache.join("models--tiny-qa/snapshots/abc");
        std::fs::create_dir_all(&snapshot).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(case.join(f), snapshot.join(f)).unwrap();
        }
        let dir = resolve_model_in(Path::new("tiny-qa"), &cache).unwrap();
        let device = crate::backend::test_device();
        let config = BertConfig::from_file(&dir).unwrap();
        let (model, _) = crate::BertForQuestionAnswering::from_weights(
            config,
            &weights_file(&dir).unwrap(),
            &device,
        )
        .unwrap();
        let direct = crate::BertForQuestionAnswering::from_pretrained(&case, &device).unwrap();
        assert!(state_dict(&model) == state_dict(&direct));
    }
}
