//! Sessions on tiny random-weight models (made by the project's generator):
//! load progress and cancellation, invalid tokens, a full context, batch
//! splitting, prefix reuse and the sliding-window ring cache all behave as
//! documented, and agree with a plain run where they should.

use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::synth::{generate, SynthSpec};
use wasm_chord_runtime::{Logits, Model, Prefilled, RuntimeError, Session, SessionConfig};

fn tiny(arch: &str) -> Arc<GgufFile> {
    let spec = SynthSpec::new(Some(arch), "tiny", "q8_0", 11).unwrap();
    Arc::new(GgufFile::from_bytes(generate(&spec).unwrap()).unwrap())
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn load_reports_progress_and_can_be_cancelled() {
    let file = tiny("llama");
    let mut seen = Vec::new();
    let m = Model::load_with_progress(file.clone(), Arc::new(CpuBackend::new()), &mut |p| {
        seen.push(p);
        true
    })
    .unwrap();
    assert_eq!(seen.len(), m.config.n_layer + 1);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 1.0);
    let mut calls = 0;
    let e = Model::load_with_progress(file, Arc::new(CpuBackend::new()), &mut |_| {
        calls += 1;
        calls < 2
    })
    .unwrap_err();
    assert!(matches!(e, RuntimeError::Cancelled), "{e}");
}

#[test]
fn errors_leave_the_session_usable_and_unchanged() {
    let model = Model::load(tiny("qwen3"), Arc::new(CpuBackend::new())).unwrap();
    let n_vocab = model.n_vocab() as u32;
    let mut s = Session::new(
        &model,
        SessionConfig {
            n_ctx: 8,
            n_batch: 4,
        },
    )
    .unwrap();
    s.forward(&[1, 2, 3], Logits::Last).unwrap();
    let e = s.forward(&[4, n_vocab], Logits::Last).unwrap_err();
    assert!(
        matches!(e, RuntimeError::InvalidToken { id, .. } if id == n_vocab),
        "{e}"
    );
    assert_eq!(s.n_past(), 3);
    let e = s.forward(&[4, 5, 6, 7, 8, 9], Logits::Last).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::ContextFull {
                needed: 9,
                capacity: 8
            }
        ),
        "{e}"
    );
    assert_eq!(s.n_past(), 3);
    assert!(matches!(
        s.forward(&[], Logits::Last),
        Err(RuntimeError::BadBatch { .. })
    ));
    s.forward(&[4, 5, 6, 7, 8], Logits::Last).unwrap();
    assert_eq!(s.n_past(), 8);
}

#[test]
fn batches_prefix_reuse_and_ring_cache_agree_with_a_plain_run() {
    // gemma3's tiny preset has sliding-window layers; a window smaller than
    // the sequence exercises the ring buffer.
    let model = Model::load(tiny("gemma3"), Arc::new(CpuBackend::new())).unwrap();
    let window = model.config.sliding_window.expect("tiny gemma3 slides") as usize;
    let n = window * 3 + 5;
    let tokens: Vec<u32> = (0..n as u32)
        .map(|i| (i * 7919 + 3) % model.n_vocab() as u32)
        .collect();
    let v = model.n_vocab();

    // Reference: one batch, all logits, cache large enough for everything.
    let mut a = Session::new(
        &model,
        SessionConfig {
            n_ctx: n,
            n_batch: n,
        },
    )
    .unwrap();
    let all = a.forward(&tokens, Logits::All).unwrap();

    // Token by token with small batches (ring cache much smaller than n).
    let mut b = Session::new(
        &model,
        SessionConfig {
            n_ctx: n,
            n_batch: 2,
        },
    )
    .unwrap();
    assert!(
        b.cache().rows_per_layer().iter().any(|&r| r < n),
        "some layer keeps only its window"
    );
    for (i, &t) in tokens.iter().enumerate() {
        let row = b.forward(&[t], Logits::Last).unwrap();
        let d = max_rel_diff(&row, &all[i * v..(i + 1) * v]);
        assert!(d < 1e-5, "position {i}: {d}");
    }
    // Tail logits are the last rows of All, across batch boundaries.
    let mut c = Session::new(
        &model,
        SessionConfig {
            n_ctx: n,
            n_batch: 3,
        },
    )
    .unwrap();
    let tail = c.forward(&tokens, Logits::Tail(4)).unwrap();
    assert_eq!(tail.len(), 4 * v);
    assert!(max_rel_diff(&tail, &all[(n - 4) * v..]) < 1e-5);

    // prefill reuses the cached prefix and gives the same logits.
    let mut d = Session::new(
        &model,
        SessionConfig {
            n_ctx: n,
            n_batch: n,
        },
    )
    .unwrap();
    d.prefill(&tokens[..n - 3]).unwrap();
    let before = d.n_past();
    let Prefilled {
        logits: last,
        evaluated,
    } = d.prefill(&tokens).unwrap();
    assert_eq!(evaluated, 3, "only the new tokens are evaluated");
    assert_eq!(before, n - 3);
    assert_eq!(d.history(), &tokens[..]);
    assert!(max_rel_diff(&last, &all[(n - 1) * v..]) < 1e-5);
}

#[test]
fn one_model_serves_sessions_on_several_threads() {
    let model = Model::load(tiny("llama"), Arc::new(CpuBackend::new())).unwrap();
    let tokens: Vec<u32> = (1..20).collect();
    let mut solo = Session::new(
        &model,
        SessionConfig {
            n_ctx: 32,
            n_batch: 8,
        },
    )
    .unwrap();
    let want = solo.forward(&tokens, Logits::Last).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut sess = Session::new(
                        &model,
                        SessionConfig {
                            n_ctx: 32,
                            n_batch: 8,
                        },
                    )
                    .unwrap();
                    sess.forward(&tokens, Logits::Last).unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    });
}
