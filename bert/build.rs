//! Sets `cfg(cube)` when a CubeCL backend feature is on. With `tch`: compiles
//! `csrc/torch_multi_tensor.cpp` (torch's `_foreach_norm`, `_fused_adamw_` and `autograd::grad`
//! with a given output gradient, which the tch crate does not expose) against the libtorch
//! torch-sys links, with torch-sys's flags.

fn main() {
    // `cfg(cube)`: a CubeCL backend is compiled in (`cube_kernels.rs`).
    println!("cargo::rustc-check-cfg=cfg(cube)");
    let cube = ["WGPU", "VULKAN", "CUDA", "CPU"];
    if cube
        .iter()
        .any(|f| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some())
    {
        println!("cargo::rustc-cfg=cube");
    }
    println!("cargo:rerun-if-changed=csrc/torch_multi_tensor.cpp");
    for var in [
        "LIBTORCH_CXX11_ABI",
        "LIBTORCH_INCLUDE",
        "LIBTORCH_USE_PYTORCH",
        "VIRTUAL_ENV",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    // torch-sys (`links = "tch"`) hands its dependents libtorch's lib/ folder (Linux and
    // macOS builds: the only ones that compile its C++ either).
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB): the `tch` feature \
         builds on Linux and macOS",
    );
    let root = std::path::Path::new(&lib)
        .parent()
        .expect("libtorch's lib/ has a parent");
    let include = std::env::var("LIBTORCH_INCLUDE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.to_path_buf())
        .join("include");
    // As torch-sys decides it (its build.rs): Python's torch says with `LIBTORCH_USE_PYTORCH`,
    // else `LIBTORCH_CXX11_ABI`, default 1.
    let abi = if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        // torch-sys's interpreter: `python` in a virtualenv, else `python3`.
        let python = match std::env::var_os("VIRTUAL_ENV") {
            Some(_) => "python",
            None => "python3",
        };
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output()
            .unwrap_or_else(|e| panic!("{python}: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned())
    };
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/torch_multi_tensor.cpp")
        .compile("bert_torch_multi_tensor");
}
