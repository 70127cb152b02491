//! The backends the project's parity tests run on.
//!
//! Every parity test (default model, tiny models of every architecture) runs
//! once per backend returned by [`backends_under_test`]: the CPU always, and
//! each device compiled into this build (`--features webgpu`, `candle`,
//! `cuda`, `metal`). `WASMCHORD_TEST_BACKENDS=cuda,cpu` picks the list
//! explicitly (how the suite runs on a GPU machine).
//!
//! A compiled-in device that does not open fails the test under `CI=true`
//! (CI installs Mesa's lavapipe so WebGPU always has an adapter) and is
//! skipped with a message otherwise.

use wasm_chord_runtime::{AnyBackend, Device};

/// Devices to test, from `WASMCHORD_TEST_BACKENDS` or the build's features.
pub fn devices_under_test() -> Vec<Device> {
    if let Ok(list) = std::env::var("WASMCHORD_TEST_BACKENDS") {
        return list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|e| panic!("WASMCHORD_TEST_BACKENDS: {e}"))
            })
            .collect();
    }
    let mut v = vec![Device::Cpu];
    if cfg!(feature = "webgpu") {
        v.push(Device::WebGpu);
    }
    if cfg!(feature = "candle") {
        v.push(Device::CandleCpu);
    }
    if cfg!(feature = "cuda") {
        v.push(Device::Cuda(0));
    }
    if cfg!(feature = "metal") {
        v.push(Device::Metal(0));
    }
    v
}

/// The opened backends to test, each with its device.
///
/// # Panics
/// When a device does not open and `CI=true`.
pub fn backends_under_test() -> Vec<(Device, AnyBackend)> {
    let mut out = Vec::new();
    for dev in devices_under_test() {
        match AnyBackend::open(dev) {
            Ok(b) => {
                eprintln!("testing on {dev}: {}", b.summary());
                out.push((dev, b));
            }
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("backend {dev} does not open in CI: {e}")
            }
            Err(e) => eprintln!("skipping backend {dev}: {e}"),
        }
    }
    out
}
