//! The web surface's WebGPU path, natively (wgpu on any adapter: Mesa's
//! lavapipe in CI): a model streamed onto the GPU tensor by tensor
//! generates, with the asynchronous read-back of each step, the same greedy
//! tokens and text as the CPU engine; a step cancelled while its logits are
//! in flight ends cleanly. Skipped (with a note) where no adapter opens.
#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use wasm_chord_gpu::GpuBackend;
use wasm_chord_runtime::synth::{generate as synth, SynthSpec};
use wasm_chord_web::engine::{Engine, Generation, Recorded, Step};
use wasm_chord_web::options::GenerateOptions;
use wasm_chord_web::stream::StreamReceiver;

fn gpu() -> Option<Arc<GpuBackend>> {
    match GpuBackend::new() {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            eprintln!("skipped: no WebGPU adapter ({e})");
            None
        }
    }
}

fn gpu_engine(gpu: &Arc<GpuBackend>, bytes: &[u8]) -> Rc<Engine<GpuBackend>> {
    let mut rx = StreamReceiver::new(Arc::clone(gpu), Some(bytes.len() as u64));
    for c in bytes.chunks(12_345) {
        rx.push(c).unwrap();
    }
    let model = rx.finish(None).unwrap();
    Rc::new(Engine::new(model, 256, bytes.len() as u64).unwrap())
}

#[test]
fn streamed_webgpu_engine_generates_what_the_cpu_engine_does() {
    let Some(gpu) = gpu() else { return };
    for (arch, ty) in [("llama", "q8_0"), ("gemma3", "q4_k_m"), ("qwen3", "f16")] {
        let bytes = synth(&SynthSpec::new(Some(arch), "tiny", ty, 5).unwrap()).unwrap();
        let opts = GenerateOptions::from_json(r#"{"maxTokens": 20, "greedy": true}"#).unwrap();
        let cpu = Rc::new(Engine::load(bytes.clone(), 256, &mut |_| true).unwrap());
        let ids = cpu.tokenize("Once upon a time", true, false);
        let mut want = Generation::new(Rc::clone(&cpu), ids.clone(), opts.clone()).unwrap();
        while want.step(&|| 0.0).unwrap() != Step::Done {}

        let engine = gpu_engine(&gpu, &bytes);
        assert_eq!(engine.backend_name(), "webgpu");
        assert_eq!(engine.file_bytes(), bytes.len() as u64);
        let g = RefCell::new(Generation::new(Rc::clone(&engine), ids, opts).unwrap());
        let mut text = String::new();
        while let Step::Text(t) = pollster::block_on(Generation::step_async(&g, &|| 0.0)).unwrap() {
            text.push_str(&t);
        }
        let g = g.into_inner();
        assert!(!want.tokens().is_empty(), "{arch}: generated nothing");
        assert_eq!(g.tokens(), want.tokens(), "{arch} {ty}: tokens");
        assert_eq!(text, want.text(), "{arch} {ty}: text");
        assert_eq!(g.stop_reason(), want.stop_reason(), "{arch} {ty}: stop");
    }
}

#[test]
fn a_step_cancelled_in_flight_ends_and_the_engine_goes_on() {
    let Some(gpu) = gpu() else { return };
    let bytes = synth(&SynthSpec::new(Some("llama"), "tiny", "q8_0", 5).unwrap()).unwrap();
    let engine = gpu_engine(&gpu, &bytes);
    let opts = GenerateOptions::from_json(r#"{"maxTokens": 8, "greedy": true}"#).unwrap();
    let ids = engine.tokenize("Hello", true, false);
    let mut g = Generation::new(Rc::clone(&engine), ids.clone(), opts.clone()).unwrap();
    let Recorded::Pending(mut pending) = g.record(&|| 0.0).unwrap() else {
        panic!("the prompt needs the model");
    };
    // Another step while the logits are in flight is refused.
    assert_eq!(g.record(&|| 0.0).unwrap_err().code(), "INVALID_ARGUMENT");
    assert_eq!(g.stop_reason(), None);
    g.cancel();
    let logits = pollster::block_on(pending.read(engine.model().n_vocab())).unwrap();
    assert_eq!(logits.len(), engine.model().n_vocab());
    assert!(logits.iter().all(|v| v.is_finite()));
    assert_eq!(g.complete(pending, logits, &|| 0.0).unwrap(), Step::Done);
    assert_eq!(
        g.stop_reason(),
        Some(wasm_chord_runtime::StopReason::Cancelled)
    );
    // The session goes on: a new generation reuses the evaluated prompt.
    let again = RefCell::new(Generation::new(Rc::clone(&engine), ids, opts).unwrap());
    while pollster::block_on(Generation::step_async(&again, &|| 0.0)).unwrap() != Step::Done {}
    assert_eq!(again.borrow().stats().prompt_tokens, 1);
    assert_eq!(again.borrow().tokens().len(), 8);
}

#[test]
fn a_weight_type_webgpu_lacks_is_refused_with_the_header() {
    let Some(gpu) = gpu() else { return };
    let bytes = synth(&SynthSpec::new(Some("llama"), "tiny", "q4_1", 5).unwrap()).unwrap();
    let mut rx = StreamReceiver::new(Arc::clone(&gpu), Some(bytes.len() as u64));
    let err = bytes
        .chunks(65_536)
        .map(|c| rx.push(c))
        .find_map(Result::err)
        .expect("refused");
    assert_eq!(err.code(), "UNSUPPORTED_MODEL", "{err}");
    assert!(err.to_string().contains("q4_1"), "{err}");
    // Found with the header, not at the end of the file.
    assert!(rx.received() < bytes.len() as u64);
}
