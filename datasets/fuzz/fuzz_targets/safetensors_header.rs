#![no_main]

//! Safetensors bytes (`model.safetensors`): a header that lies (length, JSON, offsets, shapes,
//! dtypes) is an error, never a panic; every tensor read has as many values as its shape says.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tensors) = bert::Checkpoint::parse_safetensors(data, std::path::Path::new("fuzz")) {
        for t in tensors.values() {
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        }
    }
});
