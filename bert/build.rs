//! With `tch`: compiles `csrc/torch_multi_tensor.cpp` (torch's `_foreach_norm` and
//! `_fused_adamw_`, which the tch crate does not expose) against the libtorch torch-sys links,
//! with torch-sys's flags.

fn main() {
    println!("cargo:rerun-if-changed=csrc/torch_multi_tensor.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    // torch-sys (`links = "tch"`) hands its dependents libtorch's lib/ folder.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB)");
    let root = std::path::Path::new(&lib)
        .parent()
        .expect("libtorch's lib/ has a parent");
    // As torch-sys decides it (build.rs: `LIBTORCH_CXX11_ABI`, default 1).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/torch_multi_tensor.cpp")
        .compile("bert_torch_multi_tensor");
}
