//! The step-by-step generation the web surface runs (one token per call so
//! that JavaScript can yield) gives exactly what the runtime's
//! `wasm_chord_runtime::generate` gives, on tiny random-weight models:
//! same tokens, same streamed text, same stop reason, for greedy and seeded
//! sampling, stop texts, token limits and a full context.

use std::rc::Rc;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::sampler::SamplerConfig;
use wasm_chord_runtime::synth::{generate as synth, SynthSpec};
use wasm_chord_runtime::{generate, GenerateParams, Model, Session, SessionConfig};
use wasm_chord_web::engine::{Engine, Generation, Step};
use wasm_chord_web::options::GenerateOptions;

fn bytes(arch: &str, ty: &str) -> Vec<u8> {
    synth(&SynthSpec::new(Some(arch), "tiny", ty, 5).unwrap()).unwrap()
}

/// The runtime's generate on a fresh session: (pieces, text, tokens, stop).
fn reference(
    bytes: &[u8],
    prompt: &str,
    n_ctx: usize,
    params: &GenerateParams,
) -> (Vec<String>, Vec<u32>, String) {
    let file = Arc::new(GgufFile::from_bytes(bytes.to_vec()).unwrap());
    let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
    let model = Model::load(file, Arc::new(CpuBackend::new())).unwrap();
    let mut s = Session::new(
        &model,
        SessionConfig {
            n_ctx,
            n_batch: 512,
        },
    )
    .unwrap();
    let ids = tok.encode(prompt, true, false);
    let mut pieces = Vec::new();
    let g = generate(&mut s, &tok, &ids, params, None, &mut |t| {
        pieces.push(t.to_owned());
        true
    })
    .unwrap();
    assert_eq!(pieces.concat(), g.text);
    (pieces, g.tokens, format!("{:?}", g.stop))
}

fn stepped(
    engine: &Rc<Engine>,
    prompt: &str,
    opts: &GenerateOptions,
) -> (Vec<String>, Vec<u32>, String) {
    let ids = engine.tokenize(prompt, true, false);
    let mut g = Generation::new(Rc::clone(engine), ids, opts.clone()).unwrap();
    let clock = || 0.0;
    let mut pieces = Vec::new();
    let mut steps = 0;
    while let Step::Text(t) = g.step(&clock).unwrap() {
        steps += 1;
        if !t.is_empty() {
            pieces.push(t);
        }
    }
    // The prompt, then one step per token, plus at most one final step.
    assert!(steps <= g.tokens().len() + 2, "{steps} steps");
    assert_eq!(pieces.concat(), g.text());
    let stop = format!("{:?}", g.stop_reason().unwrap());
    (pieces, g.tokens().to_vec(), stop)
}

#[test]
fn same_tokens_text_and_stop_as_the_runtime() {
    let cases: &[(&str, &str, &str)] = &[
        ("llama", "q8_0", r#"{"maxTokens": 24, "temperature": 0}"#),
        ("gemma3", "q4_k_m", r#"{"maxTokens": 24, "greedy": true}"#),
        (
            "qwen2",
            "q8_0",
            r#"{"maxTokens": 30, "temperature": 0.9, "seed": 7, "topK": 20, "repeatPenalty": 1.1}"#,
        ),
    ];
    for &(arch, ty, json) in cases {
        let b = bytes(arch, ty);
        let opts = GenerateOptions::from_json(json).unwrap();
        let params = GenerateParams {
            max_tokens: opts.max_tokens,
            stop: opts.stop.clone(),
            sampler: opts.sampler.clone(),
        };
        let engine = Rc::new(Engine::load(b.clone(), 256, &mut |_| true).unwrap());
        let prompt = "Once upon a time";
        let (rp, rt, rs) = reference(&b, prompt, 256, &params);
        let (sp, st, ss) = stepped(&engine, prompt, &opts);
        assert!(!rt.is_empty(), "{arch}: generated nothing");
        assert_eq!(st, rt, "{arch} {json}: tokens");
        assert_eq!(sp.concat(), rp.concat(), "{arch} {json}: text");
        assert_eq!(ss, rs, "{arch} {json}: stop");
        // A second run on the same engine reuses the cached prompt and
        // gives the same result.
        let again = stepped(&engine, prompt, &opts);
        assert_eq!(again.1, rt, "{arch}: second run");
    }
}

#[test]
fn stop_texts_and_a_full_context_end_as_in_the_runtime() {
    let b = bytes("llama", "q8_0");
    // Stop at the second character of the greedy text (whatever it is), so
    // the stop text is sure to appear.
    let probe = GenerateOptions::from_json(r#"{"maxTokens": 16, "greedy": true}"#).unwrap();
    let engine = Rc::new(Engine::load(b.clone(), 256, &mut |_| true).unwrap());
    let (_, _, _) = stepped(&engine, "Hello", &probe);
    let text: String = {
        let ids = engine.tokenize("Hello", true, false);
        let mut g = Generation::new(Rc::clone(&engine), ids, probe.clone()).unwrap();
        while g.step(&|| 0.0).unwrap() != Step::Done {}
        g.text().to_owned()
    };
    let stop: String = text.chars().skip(2).take(2).collect();
    assert!(!stop.is_empty(), "greedy text too short: {text:?}");
    for (json, n_ctx) in [
        (
            format!(
                r#"{{"maxTokens": 16, "greedy": true, "stop": {}}}"#,
                serde_json::to_string(&stop).unwrap()
            ),
            256,
        ),
        (r#"{"maxTokens": 64, "greedy": true}"#.to_string(), 12),
    ] {
        let opts = GenerateOptions::from_json(&json).unwrap();
        let params = GenerateParams {
            max_tokens: opts.max_tokens,
            stop: opts.stop.clone(),
            sampler: opts.sampler.clone(),
        };
        let engine = Rc::new(Engine::load(b.clone(), n_ctx, &mut |_| true).unwrap());
        let r = reference(&b, "Hello", n_ctx, &params);
        let s = stepped(&engine, "Hello", &opts);
        assert_eq!(s.1, r.1, "{json}: tokens");
        assert_eq!(s.0.concat(), r.0.concat(), "{json}: text");
        assert_eq!(s.2, r.2, "{json}: stop");
    }
    let _ = SamplerConfig::greedy();
}

#[test]
fn a_new_generation_supersedes_the_old_one_and_errors_leave_the_engine_usable() {
    let b = bytes("qwen3", "q8_0");
    let engine = Rc::new(Engine::load(b, 64, &mut |_| true).unwrap());
    let opts = GenerateOptions::from_json(r#"{"maxTokens": 8, "greedy": true}"#).unwrap();
    let ids = engine.tokenize("abc", true, false);
    let mut first = Generation::new(Rc::clone(&engine), ids.clone(), opts.clone()).unwrap();
    first.step(&|| 0.0).unwrap();
    let mut second = Generation::new(Rc::clone(&engine), ids.clone(), opts.clone()).unwrap();
    assert_eq!(first.step(&|| 0.0).unwrap_err().code(), "SUPERSEDED");
    while second.step(&|| 0.0).unwrap() != Step::Done {}
    assert_eq!(second.tokens().len(), 8);
    // A prompt longer than the context, and a token outside the vocabulary.
    let long = vec![ids[0]; 100];
    let mut g = Generation::new(Rc::clone(&engine), long, opts.clone()).unwrap();
    assert_eq!(g.step(&|| 0.0).unwrap_err().code(), "CONTEXT_FULL");
    let e = Generation::new(Rc::clone(&engine), vec![1 << 30], opts.clone()).unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert_eq!(
        Engine::load(b"GGUF".to_vec(), 64, &mut |_| true)
            .unwrap_err()
            .code(),
        "BAD_MODEL"
    );
    // Still usable, and still the same greedy tokens.
    let mut g = Generation::new(Rc::clone(&engine), ids, opts).unwrap();
    while g.step(&|| 0.0).unwrap() != Step::Done {}
    assert_eq!(g.tokens(), second.tokens());
}
