//! Peak memory of one workload: the process's peak resident set (Linux `VmHWM`, reset through
//! `/proc/self/clear_refs` before each workload) and, on backends whose allocator reports it,
//! the device memory its pools reserve after the workload (they keep the pages of its peak;
//! the pages of earlier workloads are released first, `Device::memory_cleanup`).

use burn::tensor::Device;

/// Resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0); false elsewhere. The
/// counter restarts from the resident set of the moment, so the pages earlier workloads freed
/// but the allocator still holds (glibc keeps them in its arenas) are first given back: without
/// that, a tiny workload after BERT-base reported BERT-base's 4.5 GB.
pub fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// glibc: releases free memory at the top of the heap and in every arena.
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: no arguments to get wrong; glibc locks its arenas while it trims.
        unsafe { malloc_trim(0) };
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size in MiB since the last reset (or process start).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Bytes the device allocator holds, in MiB, where the backend reports it.
pub fn device_reserved_mib(device: &Device) -> Option<f64> {
    device
        .memory_pool_usage()
        .map(|u| u.bytes_reserved as f64 / (1024.0 * 1024.0))
}
