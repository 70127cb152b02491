//! Tiny random-weight models of every architecture, loaded on the WebGPU and
//! the CPU backends: the same tokens (a 12-token prompt through the tiled
//! matmul, then 4 single tokens through the matrix-vector kernels) give the
//! same logits at every position.

mod common;

use common::*;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::synth::{generate, SynthSpec};
use wasm_chord_runtime::{Logits, Model, Session, SessionConfig};

const ARCHS: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
];

/// Runs `tokens` (a prompt, then one at a time) and returns all logits.
fn run<B: wasm_chord_core::backend::Backend>(model: &Model<B>, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(
        model,
        SessionConfig {
            n_ctx: 64,
            n_batch: 16,
        },
    )
    .unwrap();
    let mut all = s.forward(&tokens[..12], Logits::All).unwrap();
    for &t in &tokens[12..] {
        all.extend(s.forward(&[t], Logits::All).unwrap());
    }
    // The last row only (the device-side row copy before the output).
    s.truncate(12).unwrap();
    all.extend(s.forward(&tokens[12..], Logits::Last).unwrap());
    all
}

fn compare(arch: &str, mix: &str, tol: f32) {
    let Some(g) = gpu() else { return };
    let spec = SynthSpec::new(Some(arch), "tiny", mix, 5).unwrap();
    let file = Arc::new(GgufFile::from_bytes(generate(&spec).unwrap()).unwrap());
    let mg = Model::load(file.clone(), g).unwrap();
    let mc = Model::load(file, Arc::new(CpuBackend::new())).unwrap();
    let v = mc.n_vocab();
    let tokens: Vec<u32> = (0..16u32).map(|i| (i * 7919 + 11) % v as u32).collect();
    let (a, b) = (run(&mg, &tokens), run(&mc, &tokens));
    let mut worst = 0.0f32;
    for (pos, (ra, rb)) in a.chunks_exact(v).zip(b.chunks_exact(v)).enumerate() {
        let e = rel_l2(ra, rb);
        if std::env::var("GPU_TEST_VERBOSE").is_ok() {
            eprintln!("{arch} {mix} {pos}: {e:.2e}");
            continue;
        }
        worst = worst.max(e);
        assert!(e < tol, "{arch} {mix} position {pos}: relative L2 {e}");
        // Top-1 must agree wherever the CPU's top two are clearly apart.
        let mut sorted: Vec<(usize, f32)> = rb.iter().copied().enumerate().collect();
        sorted.sort_by(|x, y| y.1.total_cmp(&x.1));
        let margin = sorted[0].1 - sorted[1].1;
        let top_a = wasm_chord_core::backend::host_argmax(ra) as usize;
        if margin > 0.1 {
            assert_eq!(
                top_a, sorted[0].0,
                "{arch} {mix} position {pos} (margin {margin})"
            );
        }
    }
    eprintln!("{arch} {mix}: worst relative L2 {worst:.2e}");
}

#[test]
fn q4_k_m_models_match_cpu() {
    for arch in ARCHS {
        compare(arch, "q4_k_m", 3e-2);
    }
}

#[test]
fn q8_0_models_match_cpu() {
    for arch in ARCHS {
        compare(arch, "q8_0", 3e-2);
    }
}

#[test]
fn f16_model_matches_cpu() {
    compare("llama", "f16", 2e-3);
    compare("gemma3", "f16", 2e-3);
}

#[test]
fn sessions_on_several_threads_share_one_backend() {
    // Ops of different sessions interleave in one command encoder; each
    // op's use of the shared scratch buffers must stay whole. The kernels
    // are deterministic, so every thread must get the one-thread logits.
    let Some(g) = gpu() else { return };
    let spec = SynthSpec::new(Some("qwen3"), "tiny", "q4_k_m", 9).unwrap();
    let file = Arc::new(GgufFile::from_bytes(generate(&spec).unwrap()).unwrap());
    let model = Model::load(file, g).unwrap();
    let v = model.n_vocab() as u32;
    let tokens: Vec<u32> = (0..16u32).map(|i| (i * 31 + 7) % v).collect();
    let want = run(&model, &tokens);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| run(&model, &tokens))).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    });
}
