//! Shared helpers of the GPU tests: the adapter (skip or fail when there is
//! none), random data, in-memory GGUF weights and comparisons.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use wasm_chord_core::backend::{Backend, TensorBytes};
use wasm_chord_core::gguf::{GgufFile, GgufWriter};
use wasm_chord_core::GgmlType;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_gpu::GpuBackend;

/// The shared WebGPU backend, or `None` (with a message) when no adapter is
/// present. Under CI (`CI=true`) a missing adapter fails the test instead.
pub fn gpu() -> Option<Arc<GpuBackend>> {
    static GPU: OnceLock<Option<Arc<GpuBackend>>> = OnceLock::new();
    GPU.get_or_init(|| match GpuBackend::new() {
        Ok(b) => {
            eprintln!("adapter: {}", b.adapter_summary());
            Some(Arc::new(b))
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no WebGPU adapter: {e} (install mesa-vulkan-drivers)");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    })
    .clone()
}

/// Deterministic values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A GGUF file in memory holding `(name, cols, rows, type, values)` tensors
/// (values quantized with core's reference quantizers).
pub fn gguf(tensors: &[(&str, usize, usize, GgmlType, Vec<f32>)]) -> Arc<GgufFile> {
    let mut w = GgufWriter::new();
    for (name, cols, rows, ty, values) in tensors {
        let bytes = ty.row_bytes(*cols as u64).unwrap() as usize * rows;
        let mut data = vec![0u8; bytes];
        wasm_chord_core::quant::quantize(*ty, values, &mut data).unwrap();
        let dims: Vec<u64> = if *rows == 1 {
            vec![*cols as u64]
        } else {
            vec![*cols as u64, *rows as u64]
        };
        w.add_tensor(*name, &dims, *ty, data).unwrap();
    }
    Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())
}

/// Uploads tensor `name` of `file` to `backend`.
pub fn weight<B: Backend>(backend: &B, file: &Arc<GgufFile>, name: &str) -> B::Weight {
    let info = file.tensor(name).unwrap().clone();
    let bytes = TensorBytes::new(file, &info).unwrap();
    backend.upload_weight(&info, bytes).unwrap()
}

/// Reads a whole buffer.
pub fn read<B: Backend>(backend: &B, buf: &B::Buffer) -> Vec<f32> {
    let mut v = vec![0.0; backend.len(buf)];
    backend.download(buf, &mut v).unwrap();
    v
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt() as f32
}

/// Largest |a − b|.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

pub fn cpu() -> CpuBackend {
    CpuBackend::new()
}
