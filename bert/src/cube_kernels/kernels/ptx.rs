//! Every kernel of [`super`] compiled for an H100 (`sm_90a`) by the compiler Burn's `cuda`
//! backend runs (CubeCL's LLVM backend to PTX), here on the host: no GPU, no driver. Each kernel
//! is defined as its launch defines it (the same arguments, vector widths, element types and
//! comptime row layouts a GPU gets, unchecked), then compiled with the options the runtime sets
//! for an H100 on a CUDA 13.0 driver; the PTX must be version 9.0 for `sm_90a`, name its entry
//! point, call nothing left undefined (libdevice's math linked in), and, for the row kernels
//! with several threads a row, reduce through shared memory with barriers.
//!
//! Each kernel's PTX is then assembled for `sm_90a` by NVIDIA's ptxas (CUDA 13.0's, as the GPU
//! machines' driver is 13.0), as the driver assembles a module when it loads it: PTX it would
//! reject fails here, not on a GPU. (gpu/rehearse-cuda.sh does the same for every kernel Burn
//! compiles in a training step, through a stand-in driver.)
//!
//! Needs NVIDIA's libdevice, as the `cuda` backend does at run time: in `$CUDA_PATH`
//! (`export CUDA_PATH=$(gpu/libdevice.sh)` fetches it) or a CUDA toolkit; and ptxas in `$PTXAS`
//! (`export PTXAS=$(gpu/ptxas.sh)` fetches it).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::DType;
use burn_cubecl::cubecl::__private::Runtime;
use burn_cubecl::cubecl::cuda::compiler::CudaBackend;
use burn_cubecl::cubecl::cuda::{
    CudaCompilationOptions, CudaCompiler, CudaRepresentation, CudaRuntime,
};
use burn_cubecl::cubecl::ir::features::{Plane, TypeUsage};
use burn_cubecl::cubecl::ir::nvidia::SmArch;
use burn_cubecl::cubecl::ir::{
    AddressType, DeviceIdentity, DeviceProperties, ElemType, FloatKind, HardwareProperties,
    IntKind, MemoryDeviceProperties, TargetProperties, UIntKind,
};
use burn_cubecl::cubecl::server::Handle;
use burn_cubecl::cubecl::{Compiler, ExecutionMode, define_kernel};
use cubecl_llvm::nvptx::ptx_version::PtxVersion;

use super::*;

/// What CubeCL's CUDA runtime reads from an H100 that the kernels' definitions see: warps of
/// 32, 1,024 threads a cube, f16/bf16/f32 and the integer types.
fn h100() -> (Arc<DeviceProperties>, Arc<TargetProperties>) {
    let hardware = HardwareProperties {
        load_width: 128,
        vector_register_count: None,
        plane_size_min: 32,
        plane_size_max: 32,
        max_bindings: 1024,
        max_shared_memory_size: 227 * 1024,
        max_cube_count: (i32::MAX as u32, 65_535, 65_535),
        max_units_per_cube: 1024,
        max_cube_dim: (1024, 1024, 64),
        num_streaming_multiprocessors: Some(132),
        num_cpu_cores: None,
        last_level_cache_size: None,
        num_tensor_cores: Some(4),
        min_tensor_cores_dim: Some(8),
        max_vector_size: 16,
        cube_mma_reserved_shared_memory: 0,
    };
    let mut props = DeviceProperties::new(
        Default::default(),
        MemoryDeviceProperties::new(20 << 30, 512),
        hardware,
        burn_cubecl::cubecl::benchmark::TimingMethod::Device,
        DeviceIdentity {
            name: "NVIDIA H100 (compile only)".into(),
            fingerprint: "ptx_sm90".into(),
            physical: None,
        },
    );
    props.register_address_type(AddressType::U32);
    props.register_address_type(AddressType::U64);
    for ty in [
        ElemType::UInt(UIntKind::U32),
        ElemType::UInt(UIntKind::U64),
        ElemType::Int(IntKind::I32),
        ElemType::Int(IntKind::I64),
        ElemType::Float(FloatKind::F16),
        ElemType::Float(FloatKind::BF16),
        ElemType::Float(FloatKind::F32),
        ElemType::Bool,
    ] {
        props.register_type_usage(ty, TypeUsage::all());
    }
    props.features.plane.insert(Plane::Ops);
    (
        Arc::new(props),
        Arc::new(<CudaRuntime as Runtime>::target_properties()),
    )
}

/// A contiguous tensor argument of `shape` and elements of `bytes` bytes, on no device (a
/// definition reads shapes and types, not memory).
fn tensor(shape: &[usize], bytes: usize) -> TensorArg {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let nowhere = cubecl_common::device::DeviceId {
        type_id: 0,
        index_id: 0,
    };
    let handle = Handle::new(
        cubecl_common::device::ServiceId::of::<()>(nowhere),
        cubecl_environment::stream::StreamId { value: 0 },
        (shape.iter().product::<usize>() * bytes) as u64,
    );
    // SAFETY: nothing is launched: the handle addresses no memory and is never bound.
    unsafe { TensorArg::from_raw_parts(handle, strides.into(), shape.into()) }
}

/// A dropout mask's key (keeping 90%).
fn key() -> DropoutKeyLaunch {
    dropout_key(Some(HostDraw {
        key: 0x0123_4567_89ab_cdef,
        threshold: (0.9 * 2f64.powi(32)) as u32,
        scale_bits: (1.0f32 / 0.9).to_bits(),
    }))
}

fn f32s(shape: &[usize]) -> TensorArg {
    tensor(shape, 4)
}

fn storage(dtype: DType) -> ElemType {
    burn::backend::cubecl::dtype_to_storage_type(dtype)
}

/// `kernel` compiled as the `cuda` backend compiles it for an H100 (launches are unchecked),
/// checked as the module's comment says; its PTX.
fn ptx(kernel: &dyn CubeKernel) -> String {
    let found = std::env::var_os("CUDA_PATH")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"].map(Into::into))
        .any(|root| root.join("nvvm/libdevice/libdevice.10.bc").is_file());
    assert!(
        found,
        "NVIDIA's libdevice is not in $CUDA_PATH or a CUDA toolkit: \
         `export CUDA_PATH=$(gpu/libdevice.sh)` fetches it"
    );
    let mut definition = define_kernel(kernel).expect("the kernel is defined");
    definition.settings.execution_mode = ExecutionMode::Unchecked;
    let name = definition.settings.kernel_name.clone();
    // As the runtime sets them for an H100 on a CUDA 13.0 driver (the GPU machines'): the
    // newest PTX that driver loads.
    let options = CudaCompilationOptions {
        arch: Some(SmArch::new(90, true)),
        ptx_version: PtxVersion::for_driver(13_000),
        ..Default::default()
    };
    let text = match CudaCompiler::new(CudaBackend::Llvm).compile(definition, &options) {
        Ok(CudaRepresentation::Llvm(module)) => {
            let bytes: Vec<u8> = module.ptx.iter().map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes)
                .trim_end_matches('\0')
                .to_string()
        }
        Ok(other) => panic!("{name}: {other:?}, not the LLVM backend's PTX"),
        Err(e) => panic!("{name} does not compile for sm_90a: {e}"),
    };
    assert!(
        text.contains(".version 9.0") && text.contains(".target sm_90a"),
        "{name}: {text}"
    );
    assert!(
        text.contains(&format!(".entry {name}(")),
        "{name}: no entry point"
    );
    assert!(
        !text.contains(".extern .func"),
        "{name} calls something left undefined:\n{text}"
    );
    assemble(&name, &text);
    text
}

/// `text` assembled for `sm_90a` by NVIDIA's PTX assembler, as the driver assembles a module
/// when it loads it: PTX it rejects would fail the `cuda` backend on the GPU, not here.
fn assemble(name: &str, text: &str) {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let ptxas = std::env::var_os("PTXAS").expect(
        "$PTXAS names no PTX assembler: `export PTXAS=$(gpu/ptxas.sh)` fetches CUDA 13.0's",
    );
    let file = std::env::temp_dir().join(format!(
        "bert-ptx-{}-{}.ptx",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, text).expect("the PTX is written to a temporary file");
    let out = std::process::Command::new(&ptxas)
        .args(["-arch=sm_90a", "-o", "/dev/null"])
        .arg(&file)
        .output();
    std::fs::remove_file(&file).ok();
    let out = out.unwrap_or_else(|e| panic!("$PTXAS ({}): {e}", ptxas.to_string_lossy()));
    assert!(
        out.status.success(),
        "ptxas rejects {name}:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The row kernels' PTX: with several threads a row, a shared-memory reduction with barriers;
/// with one (the CubeCL CPU layout), neither.
fn assert_row_reduction(text: &str, threads: usize) {
    let shared = text.contains(".shared") && text.contains("bar.sync");
    assert_eq!(shared, threads > 1, "{threads} threads a row:\n{text}");
}

/// Rows of the widths BERT's configurations give the row kernels (hidden sizes 128–1,024,
/// attention rows of 128 and 512 keys, the vocabulary's 30,522 logits) and every GPU row
/// layout they get (32–256 threads).
const WIDTHS: [usize; 5] = [128, 256, 384, 768, 1024];

#[test]
fn the_row_kernels_compile_for_sm90() {
    let (props, target) = h100();
    let rows = 1000;
    let mut layouts = Vec::new();
    for len in WIDTHS.into_iter().chain([512, 30_522]) {
        let (threads, per_cube) = row_layout(32, len);
        assert_eq!(threads * per_cube, 256);
        layouts.push(threads);
        let grid = row_grid(rows, per_cube);
        let dim = CubeDim::new_2d(threads as u32, per_cube as u32);
        let x = || f32s(&[rows, len]);
        let text = ptx(&layer_norm_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            grid.clone(),
            dim,
            x(),
            f32s(&[len]),
            f32s(&[len]),
            x(),
            f32s(&[rows, 2]),
            rows,
            len,
            1e-12,
            threads,
            per_cube,
        ));
        assert_row_reduction(&text, threads);
        for dropout in [true, false] {
            let text = ptx(&add_layer_norm_kernel::create_dummy_kernel(
                props.clone(),
                target.clone(),
                grid.clone(),
                dim,
                x(),
                x(),
                f32s(&[len]),
                f32s(&[len]),
                x(),
                x(),
                f32s(&[rows, 2]),
                rows,
                len,
                1e-12,
                key(),
                dropout,
                threads,
                per_cube,
            ));
            assert_row_reduction(&text, threads);
        }
        let text = ptx(&layer_norm_backward_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            grid.clone(),
            dim,
            x(),
            f32s(&[len]),
            f32s(&[rows, 2]),
            x(),
            x(),
            rows,
            len,
            threads,
            per_cube,
        ));
        assert_row_reduction(&text, threads);
        let text = ptx(&softmax_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            grid.clone(),
            dim,
            x(),
            x(),
            rows,
            len,
            threads,
            per_cube,
        ));
        assert_row_reduction(&text, threads);
        for dropout in [true, false] {
            // Scores [2, 4, rows / 8, len] with BERT's mask, [2, 1, rows / 8, len].
            let text = ptx(&attention_softmax_kernel::create_dummy_kernel(
                props.clone(),
                target.clone(),
                grid.clone(),
                dim,
                x(),
                f32s(&[2, 1, rows / 8, len]),
                x(),
                dropout.then(x).into(),
                rows,
                len,
                4,
                rows / 8,
                2,
                1,
                rows / 8,
                len,
                8.0,
                key(),
                threads,
                per_cube,
            ));
            assert_row_reduction(&text, threads);
            let text = ptx(&softmax_backward_kernel::create_dummy_kernel(
                props.clone(),
                target.clone(),
                grid.clone(),
                dim,
                x(),
                x(),
                x(),
                rows,
                len,
                8.0,
                key(),
                dropout,
                threads,
                per_cube,
            ));
            assert_row_reduction(&text, threads);
        }
        for labels in [DType::I32, DType::I64] {
            let text = ptx(&log_softmax_pick_kernel::create_dummy_kernel(
                props.clone(),
                target.clone(),
                grid.clone(),
                dim,
                x(),
                tensor(&[rows], labels.size()),
                f32s(&[rows]),
                rows,
                len,
                f32::NAN,
                threads,
                per_cube,
                storage(labels),
            ));
            assert_row_reduction(&text, threads);
            let text = ptx(&log_softmax_pick_backward_kernel::create_dummy_kernel(
                props.clone(),
                target.clone(),
                grid.clone(),
                dim,
                x(),
                f32s(&[rows]),
                tensor(&[rows], labels.size()),
                x(),
                rows,
                len,
                threads,
                per_cube,
                storage(labels),
            ));
            assert_row_reduction(&text, threads);
        }
    }
    layouts.sort();
    layouts.dedup();
    assert_eq!(layouts, [32, 64, 128, 256], "every GPU row layout compiled");
    // The CubeCL CPU runtime's layout (a thread a row) compiles too, without the tree.
    let (threads, per_cube) = row_layout(1, 768);
    assert_eq!((threads, per_cube), (1, 64));
    let text = ptx(&softmax_kernel::create_dummy_kernel(
        props.clone(),
        target.clone(),
        row_grid(rows, per_cube),
        CubeDim::new_2d(1, 64),
        f32s(&[rows, 768]),
        f32s(&[rows, 768]),
        rows,
        768,
        threads,
        per_cube,
    ));
    assert_row_reduction(&text, threads);
    // LayerNorm's weight and bias gradients.
    let (h, chunks) = (768, 32);
    ptx(&layer_norm_columns_kernel::create_dummy_kernel(
        props,
        target,
        CubeCount::Static(h.div_ceil(COLUMN_CUBE_DIM) as u32, chunks, 1),
        CubeDim::new_1d(COLUMN_CUBE_DIM as u32),
        f32s(&[rows, h]),
        f32s(&[rows, 2]),
        f32s(&[rows, h]),
        f32s(&[chunks as usize, h]),
        f32s(&[chunks as usize, h]),
        rows,
        h,
        rows.div_ceil(chunks as usize),
    ));
}

#[test]
fn the_element_wise_kernels_compile_for_sm90() {
    let (props, target) = h100();
    let dim = CubeDim::new_1d(256);
    let count = CubeCount::Static(64, 1, 1);
    // GELU both ways, vectorised (4 f32, as an H100 loads 128 bits) and not.
    for vector in [4, 1] {
        let len = 3 * 1024 * 4 / vector;
        let text = ptx(&gelu_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            count.clone(),
            dim,
            vector,
            f32s(&[len, vector]),
            f32s(&[len, vector]),
            len,
        ));
        // erf comes from libdevice or LLVM's own expansion, never an unresolved call.
        assert!(!text.contains("call"), "GELU calls out:\n{text}");
        ptx(&gelu_backward_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            count.clone(),
            dim,
            vector,
            f32s(&[len, vector]),
            f32s(&[len, vector]),
            f32s(&[len, vector]),
            len,
        ));
    }
    // Dropout, AdamW and the gradient norm in every float type the model runs in.
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let bytes = dtype.size();
        let len = 4096;
        ptx(&dropout_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            count.clone(),
            dim,
            tensor(&[len], bytes),
            tensor(&[len], bytes),
            len,
            key(),
            storage(dtype),
        ));
        let vector = 16 / bytes;
        let p = || tensor(&[len / vector, vector], bytes);
        ptx(&adamw_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            count.clone(),
            dim,
            vector,
            p(),
            p(),
            p(),
            p(),
            tensor(&[1], bytes),
            AdamWScalarsLaunch::new(0.99, 0.1, 0.999, 0.001, 0.9, 1e-8, 1e-3),
            len / vector,
            storage(dtype),
        ));
        ptx(&sum_squares_kernel::create_dummy_kernel(
            props.clone(),
            target.clone(),
            CubeCount::Static(2, 1, 1),
            CubeDim::new_1d(NORM_CUBE_DIM as u32),
            tensor(&[len], bytes),
            f32s(&[4 * NORM_CUBE_DIM]),
            len,
            NORM_CUBE_DIM,
            storage(dtype),
        ));
    }
}

/// The assembler check is not a formality: GELU's PTX with one instruction on a register it
/// never declared (as a wrong type or a missing declaration would be) is refused.
#[test]
fn ptxas_refuses_what_the_driver_would() {
    let (props, target) = h100();
    let text = ptx(&gelu_kernel::create_dummy_kernel(
        props,
        target,
        CubeCount::Static(64, 1, 1),
        CubeDim::new_1d(256),
        1,
        f32s(&[1024, 1]),
        f32s(&[1024, 1]),
        1024,
    ));
    let broken = text.replacen("\tret;", "\tmov.u32 \t%undeclared, 1;\n\tret;", 1);
    assert_ne!(broken, text, "GELU's PTX has a `ret`:\n{text}");
    let refused = std::panic::catch_unwind(|| assemble("gelu_broken", &broken))
        .expect_err("ptxas assembles an undeclared register");
    let message = refused.downcast_ref::<String>().map_or("", String::as_str);
    assert!(message.contains("ptxas rejects gelu_broken"), "{message}");
}
