//! The one place that maps backend names to Burn devices. Everything else takes a `Device`.
//!
//! [`BACKENDS`] is the list: names, aliases, Cargo features, device indices and what each
//! runs on. Parsing (`--backend`), display, `--help` texts ([`names`]), [`compiled`] and the
//! test backend all read it; [`Backend::device`] is the one `match` that builds the devices
//! (each behind its feature).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::BertError;

/// A backend and device index, parsed from `--backend` (`flex`, `cuda:1`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Flex,
    NdArray,
    Cpu,
    Wgpu(usize),
    Vulkan(usize),
    Tch,
    TchCuda(usize),
    Cuda(usize),
}

/// One backend: its `--backend` name, other accepted names, the Cargo feature that compiles
/// it in, whether it takes a device index (`cuda:1`), and what it runs on.
#[derive(Debug)]
pub struct BackendSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub feature: &'static str,
    pub compiled: bool,
    pub indexed: bool,
    /// Runs on a GPU (MFU is reported for it).
    pub gpu: bool,
    pub runs_on: &'static str,
    make: fn(usize) -> Backend,
}

/// Every backend, once: name, aliases, Cargo feature (and whether it is compiled in), CPU or
/// GPU (GPUs take a device index), the [`Backend`] it makes, what it runs on.
#[rustfmt::skip]
pub const BACKENDS: [BackendSpec; 8] = [
    row("flex", &[], "flex", cfg!(feature = "flex"), CPU, |_| Backend::Flex,
        "CPU, pure Rust (`Device::flex()`; the default)"),
    row("ndarray", &[], "ndarray", cfg!(feature = "ndarray"), CPU, |_| Backend::NdArray,
        "CPU (`Device::ndarray()`)"),
    row("cpu", &[], "cpu", cfg!(feature = "cpu"), CPU, |_| Backend::Cpu,
        "CPU, CubeCL JIT-compiled through LLVM (`Device::cpu()`)"),
    row("wgpu", &[], "wgpu", cfg!(feature = "wgpu"), GPU, Backend::Wgpu,
        "GPU through wgpu, any graphics API (`wgpu:N`: the N-th discrete GPU)"),
    row("vulkan", &[], "vulkan", cfg!(feature = "vulkan"), GPU, Backend::Vulkan,
        "GPU through Vulkan (CubeCL SPIR-V)"),
    row("tch", &["libtorch"], "tch", cfg!(feature = "tch"), CPU, |_| Backend::Tch,
        "CPU through libtorch (`Device::libtorch()`)"),
    row("tch-cuda", &["libtorch-cuda"], "tch", cfg!(feature = "tch"), GPU, Backend::TchCuda,
        "NVIDIA GPU through libtorch (`Device::libtorch_cuda(N)`)"),
    row("cuda", &[], "cuda", cfg!(feature = "cuda"), GPU, Backend::Cuda,
        "NVIDIA GPU, CubeCL CUDA (`Device::cuda(N)`)"),
];

const CPU: bool = false;
const GPU: bool = true;

/// A row of [`BACKENDS`]: GPUs take a device index (`cuda:1`); CPUs do not.
#[allow(clippy::too_many_arguments)]
const fn row(
    name: &'static str,
    aliases: &'static [&'static str],
    feature: &'static str,
    compiled: bool,
    gpu: bool,
    make: fn(usize) -> Backend,
    runs_on: &'static str,
) -> BackendSpec {
    BackendSpec {
        name,
        aliases,
        feature,
        compiled,
        indexed: gpu,
        gpu,
        runs_on,
        make,
    }
}

/// The backend names for help texts: `flex, ndarray, …, cuda`.
pub fn names() -> String {
    BACKENDS.map(|b| b.name).join(", ")
}

impl Backend {
    /// This backend's row of [`BACKENDS`].
    pub fn spec(self) -> &'static BackendSpec {
        let kind = std::mem::discriminant(&self);
        BACKENDS
            .iter()
            .find(|b| std::mem::discriminant(&(b.make)(0)) == kind)
            .expect("every backend has a row in BACKENDS")
    }

    /// The name without index.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The Cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        self.spec().feature
    }

    /// The device index (0 for backends without one).
    pub fn index(self) -> usize {
        match self {
            Self::Wgpu(i) | Self::Vulkan(i) | Self::TchCuda(i) | Self::Cuda(i) => i,
            Self::Flex | Self::NdArray | Self::Cpu | Self::Tch => 0,
        }
    }

    /// Whether this build has the backend's feature.
    pub fn is_compiled(self) -> bool {
        self.spec().compiled
    }

    /// The Burn device, or an error saying which feature to enable.
    #[allow(deprecated, unused_variables)] // ndarray and tch are deprecated upstream
    pub fn device(self) -> Result<Device, BertError> {
        keep_freed_memory();
        let missing = || {
            BertError::Backend(format!(
                "backend `{}` is not compiled in: rebuild with `--features {}` (this build has: {})",
                self.name(),
                self.feature(),
                compiled().join(", ")
            ))
        };
        // `Ok(device)` where the build has the feature, else the error naming it.
        macro_rules! when_compiled {
            ($feature:literal, $device:expr) => {{
                #[cfg(feature = $feature)]
                return Ok($device);
                #[cfg(not(feature = $feature))]
                return Err(missing());
            }};
        }
        match self {
            Self::Flex => when_compiled!("flex", Device::flex()),
            Self::NdArray => when_compiled!("ndarray", Device::ndarray()),
            Self::Cpu => when_compiled!("cpu", Device::cpu()),
            Self::Wgpu(i) => when_compiled!("wgpu", Device::wgpu(gpu_kind(i))),
            Self::Vulkan(i) => when_compiled!("vulkan", Device::vulkan(gpu_kind(i))),
            Self::Tch => when_compiled!("tch", Device::libtorch()),
            Self::TchCuda(i) => when_compiled!("tch", {
                nvidia_driver(self)?;
                Device::libtorch_cuda(i)
            }),
            Self::Cuda(i) => when_compiled!("cuda", {
                nvidia_driver(self)?;
                cuda_libdevice(std::env::var_os("CUDA_PATH"))?;
                Device::cuda(i)
            }),
        }
    }
}

/// The float precision of a device's tensors, parsed from `--dtype` (`f32`, `f16`, `bf16`).
/// Anything but `f32` makes every float tensor (weights, activations, gradients, optimizer
/// state) that precision: Burn's `Device::configure`, not PyTorch-style autocast with f32
/// master weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    F16,
    BF16,
}

impl FromStr for Precision {
    type Err = BertError;

    fn from_str(s: &str) -> Result<Self, BertError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            o => Err(BertError::Backend(format!(
                "unknown dtype `{o}`; expected f32, f16 or bf16"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        })
    }
}

impl Backend {
    /// The device with its float tensors in `precision`, or an error naming a backend that
    /// does not take it. Call before any tensor is made on the device: Burn fixes a device's
    /// dtypes at its first tensor.
    pub fn device_with(self, precision: Precision) -> Result<Device, BertError> {
        let mut device = self.device()?;
        let dtype = match precision {
            Precision::F32 => return Ok(device),
            Precision::F16 => burn::tensor::FloatDType::F16,
            Precision::BF16 => burn::tensor::FloatDType::BF16,
        };
        device.configure(dtype).map_err(|e| {
            BertError::Backend(format!("backend `{self}` cannot run in {precision}: {e:?}"))
        })?;
        Ok(device)
    }
}

/// CubeCL CUDA and libtorch's CUDA open the NVIDIA driver library at run time, and panic when
/// it is missing (CubeCL in its device thread, burn-tch on the first tensor): check first, and
/// name what is missing.
#[cfg(any(feature = "cuda", feature = "tch"))]
fn nvidia_driver(backend: Backend) -> Result<(), BertError> {
    const NAMES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which cudarc would run
    // anyway when the device starts.
    let found = NAMES
        .iter()
        .any(|n| unsafe { libloading::Library::new(n) }.is_ok());
    if found {
        Ok(())
    } else {
        Err(BertError::Backend(format!(
            "backend `{backend}`: the NVIDIA driver library ({}) is not found on this machine; \
             install the driver or add its folder to LD_LIBRARY_PATH",
            NAMES.join(" or ")
        )))
    }
}

/// Where CubeCL's CUDA compiler looks for NVIDIA's libdevice, the CUDA math library it links
/// into every kernel that calls exp, erf, tanh, log, ... (softmax, GELU, the losses): the
/// toolkit in `CUDA_PATH`, else the first of these with one.
#[cfg(any(feature = "cuda", test))]
const CUDA_ROOTS: [&str; 4] = ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];

/// The libdevice the `cuda` backend will link (see [`CUDA_ROOTS`]; `cuda_path` is
/// `$CUDA_PATH`), or an error naming the way to get it: without it the model's first softmax
/// fails to compile, deep in CubeCL.
#[cfg(any(feature = "cuda", test))]
fn cuda_libdevice(cuda_path: Option<std::ffi::OsString>) -> Result<std::path::PathBuf, BertError> {
    const FILE: &str = "nvvm/libdevice/libdevice.10.bc";
    let root = match &cuda_path {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => CUDA_ROOTS
            .iter()
            .map(std::path::PathBuf::from)
            .find(|r| r.join("nvvm/libdevice").is_dir()),
    };
    match root.map(|r| r.join(FILE)) {
        Some(file) if file.is_file() => Ok(file),
        found => Err(BertError::Backend(format!(
            "backend `cuda`: NVIDIA's libdevice ({FILE}), which CubeCL links into every kernel \
             that calls exp, erf, tanh or log, is not {}; install the CUDA toolkit, or run \
             `export CUDA_PATH=$(gpu/libdevice.sh)` (it fetches the file from PyPI)",
            match (found, cuda_path) {
                (Some(file), Some(_)) => format!("at {} (CUDA_PATH)", file.display()),
                _ => format!(
                    "in CUDA_PATH (unset) or a CUDA toolkit under {}",
                    CUDA_ROOTS.join(", ")
                ),
            }
        ))),
    }
}

/// The backend the tests run on: `$BERT_TEST_BACKEND` (default `flex`), so that one test
/// binary runs on every compiled-in backend. Panics with the reason when it is unknown or not
/// compiled in.
pub fn test_device() -> Device {
    let name = std::env::var("BERT_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
    device_from_name(&name).unwrap_or_else(|e| panic!("BERT_TEST_BACKEND: {e}"))
}

/// wgpu and vulkan: index 0 is the default adapter; `wgpu:N` (`vulkan:N`) the N-th discrete GPU.
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
fn gpu_kind(index: usize) -> burn::tensor::DeviceKind {
    match index {
        0 => burn::tensor::DeviceKind::DefaultDevice,
        n => burn::tensor::DeviceKind::DiscreteGpu(n),
    }
}

/// The backend features this build was compiled with.
pub fn compiled() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = BACKENDS
        .iter()
        .filter(|b| b.compiled)
        .map(|b| b.feature)
        .collect();
    v.dedup();
    v
}

impl FromStr for Backend {
    type Err = BertError;

    fn from_str(s: &str) -> Result<Self, BertError> {
        let s = s.trim().to_ascii_lowercase();
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => {
                let i = i.parse::<usize>().map_err(|_| {
                    BertError::Backend(format!("bad device index `{i}` in backend `{s}`"))
                })?;
                (n.to_string(), Some(i))
            }
            None => (s.clone(), None),
        };
        let spec = BACKENDS
            .iter()
            .find(|b| b.name == name || b.aliases.contains(&name.as_str()))
            .ok_or_else(|| {
                BertError::Backend(format!(
                    "unknown backend `{name}`; expected one of: {}",
                    names()
                ))
            })?;
        if index.is_some() && !spec.indexed {
            return Err(BertError::Backend(format!(
                "backend `{name}` takes no device index"
            )));
        }
        let backend = (spec.make)(index.unwrap_or(0));
        Ok(backend)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index() {
            0 => f.write_str(self.name()),
            i => write!(f, "{}:{i}", self.name()),
        }
    }
}

/// Parses a `--backend` value and returns its device.
pub fn device_from_name(name: &str) -> Result<Device, BertError> {
    name.parse::<Backend>()?.device()
}

/// Tunes glibc's `malloc` for tensor-sized blocks, once per process (called by
/// [`Backend::device`]). By default glibc serves every block over 128 KiB with its own `mmap`
/// and returns freed memory to the OS, so each op's fresh output of a few MiB is faulted in
/// and zeroed by the kernel page by page. Here blocks up to 32 MiB come from the heap and freed
/// memory stays for the next op. Measured on 2 cores, flex, BERT-tiny training s128 b8: 87–90 →
/// 70–75 ms per step (the same run, alternating). mimalloc was measured too and lost at
/// BERT-base (5.5 → 7.7 s per step). No effect on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets allocator parameters; valid at any time.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}

/// The database file where CubeCL keeps autotune's choices and its memory-bandwidth probe from
/// one run to the next, and, with its compilation cache on (the repository's `cubecl.toml`), the
/// kernels `cuda` and `vulkan` compiled; `None` in a build without the `persistence` feature (on
/// with `cpu` and `cuda`). By default `target/environment/default.db` of the outermost cargo
/// workspace above the working directory, the user cache directory (`~/.cache/cubecl/`) elsewhere;
/// `cubecl.toml`'s `[environment]` section and `CUBECL_ENVIRONMENT=NAME` choose others (this
/// reads CubeCL's configuration first, so it names the file a device will use). Deleting its
/// folder is always safe: the next run tunes anew. Its entries are keyed by CubeCL's version and
/// the device, not by our patches of it (`third_party/`): delete it after changing them.
#[allow(unreachable_code)] // `None` when the feature is on
pub fn cubecl_cache_file() -> Option<std::path::PathBuf> {
    #[cfg(feature = "persistence")]
    {
        use burn_cubecl::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        // Loading the configuration activates the environment it names.
        CubeClRuntimeConfig::get();
        return Some(cubecl_environment::environment::path());
    }
    None
}

/// Whether `device` (plain or autodiff) keeps its tensors in host memory: flex and ndarray. A
/// host-drawn dropout mask costs no transfer there, and the fused CPU kernels run there.
#[allow(deprecated)] // Device::ndarray: burn-ndarray is deprecated upstream, still a backend here
pub fn host_memory(device: &Device) -> bool {
    let inner = device.clone().inner();
    #[cfg(feature = "flex")]
    if inner == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    if inner == Device::ndarray() {
        return true;
    }
    let _ = inner;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_indices() {
        assert_eq!("cuda:1".parse::<Backend>().unwrap(), Backend::Cuda(1));
        assert_eq!("tch-cuda".parse::<Backend>().unwrap(), Backend::TchCuda(0));
        assert_eq!("FLEX".parse::<Backend>().unwrap(), Backend::Flex);
        assert_eq!(Backend::Cuda(2).to_string(), "cuda:2");
    }

    /// `cpu` and `cuda` builds keep CubeCL's caches where the README says: `target/environment/
    /// default.db` of the outermost cargo workspace above the working directory (a test's is its
    /// crate's folder, so this one's or one around it).
    #[test]
    fn cubecl_cache_file_is_under_the_workspace_target() {
        let file = cubecl_cache_file();
        if !cfg!(feature = "persistence") {
            assert_eq!(file, None);
        }
        if cfg!(any(feature = "cpu", feature = "cuda")) {
            assert!(
                file.is_some(),
                "cpu and cuda turn on the persistence feature"
            );
        }
        if let Some(file) = file.filter(|_| std::env::var_os("CUBECL_ENVIRONMENT").is_none()) {
            assert!(file.ends_with("target/environment/default.db"), "{file:?}");
            let workspace = file.ancestors().nth(3).unwrap();
            assert!(workspace.join("Cargo.toml").is_file(), "{file:?}");
            assert!(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).starts_with(workspace),
                "{file:?}"
            );
        }
    }

    /// Every row parses back to its own backend, by name and by alias, and names are unique.
    #[test]
    fn the_table_round_trips() {
        for spec in &BACKENDS {
            let b: Backend = spec.name.parse().unwrap();
            assert_eq!(b.spec().name, spec.name);
            assert_eq!(b.to_string(), spec.name);
            for alias in spec.aliases {
                assert_eq!(alias.parse::<Backend>().unwrap(), b);
            }
            if spec.indexed {
                assert_eq!(
                    format!("{}:3", spec.name)
                        .parse::<Backend>()
                        .unwrap()
                        .index(),
                    3
                );
            }
        }
        let mut all: Vec<_> = BACKENDS
            .iter()
            .flat_map(|b| std::iter::once(&b.name).chain(b.aliases))
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a name or alias used twice");
    }

    #[test]
    fn precisions_parse() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::BF16);
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!(Precision::default().to_string(), "f32");
        let e = "f8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("unknown dtype `f8`"), "{e}");
    }

    #[test]
    fn unknown_backend_lists_the_known_ones() {
        let e = "metal9".parse::<Backend>().unwrap_err().to_string();
        assert!(
            e.contains("unknown backend `metal9`") && e.contains("tch-cuda"),
            "{e}"
        );
        assert!("flex:1".parse::<Backend>().is_err());
        assert!(
            "cuda:x"
                .parse::<Backend>()
                .unwrap_err()
                .to_string()
                .contains("bad device index")
        );
    }

    #[test]
    fn a_missing_nvidia_driver_is_named() {
        #[cfg(any(feature = "cuda", feature = "tch"))]
        if nvidia_driver(Backend::Cuda(0)).is_err() {
            for b in [Backend::Cuda(0), Backend::TchCuda(1)]
                .into_iter()
                .filter(|b| b.is_compiled())
            {
                let e = b.device().unwrap_err().to_string();
                assert!(
                    e.contains(&format!("backend `{b}`: the NVIDIA driver library")),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_missing_libdevice_is_named() {
        let dir = std::env::temp_dir().join(format!("bert-libdevice-{}", std::process::id()));
        let e = cuda_libdevice(Some(dir.clone().into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("libdevice (nvvm/libdevice/libdevice.10.bc)")
                && e.contains(&format!("at {}/nvvm", dir.display()))
                && e.contains("gpu/libdevice.sh"),
            "{e}"
        );
        let file = dir.join("nvvm/libdevice/libdevice.10.bc");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"BC\xc0\xde").unwrap();
        assert_eq!(cuda_libdevice(Some(dir.clone().into())).unwrap(), file);
        std::fs::remove_dir_all(&dir).unwrap();
        // Unset, the toolkits' places are named (or the one found there is taken).
        match cuda_libdevice(None) {
            Ok(file) => assert!(CUDA_ROOTS.iter().any(|r| file.starts_with(r))),
            Err(e) => assert!(e.to_string().contains("CUDA_PATH (unset)"), "{e}"),
        }
    }

    #[test]
    fn missing_feature_is_named() {
        let not_built = [
            Backend::Cuda(0),
            Backend::Tch,
            Backend::Wgpu(0),
            Backend::NdArray,
        ]
        .into_iter()
        .find(|b| !b.is_compiled());
        if let Some(b) = not_built {
            let e = b.device().unwrap_err().to_string();
            assert!(e.contains(&format!("--features {}", b.feature())), "{e}");
        }
        assert!(Backend::Flex.is_compiled() == cfg!(feature = "flex"));
    }
}
