//! Generation on the default model: greedy equals llama.cpp's continuation,
//! seeded sampling is reproducible, stop texts, cancellation, prefix reuse
//! and a full context behave as documented.

use serde_json::Value;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::sampler::SamplerConfig;
use wasm_chord_runtime::{
    generate, CancelToken, GenerateParams, Model, Session, SessionConfig, StopReason,
};

fn load() -> Option<(Model<CpuBackend>, Tokenizer)> {
    let path = wasm_chord_cli::models::default_model_for_test()?;
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
    Some((Model::load(file, Arc::new(CpuBackend::new())).unwrap(), tok))
}

fn params(n: usize, sampler: SamplerConfig) -> GenerateParams {
    GenerateParams {
        max_tokens: n,
        stop: Vec::new(),
        sampler,
    }
}

fn cfg() -> SessionConfig {
    SessionConfig {
        n_ctx: 256,
        n_batch: 64,
    }
}

#[test]
fn generation_behaviour_on_the_default_model() {
    let Some((model, tok)) = load() else { return };

    // Greedy: llama.cpp's continuation of the fixture prompt, up to its first
    // low-margin step.
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/parity/gemma3-270m-q4_k_m.json")).unwrap();
    let r = &fixture["results"][1];
    let prompt = tok.encode(r["prompt"].as_str().unwrap(), true, false);
    let confident = r["greedy_margins"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|m| m.as_f64().unwrap() >= 0.5)
        .count();
    assert!(confident >= 1);
    let want: Vec<u32> = r["greedy_tokens"].as_array().unwrap()[..confident]
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let mut s = Session::new(&model, cfg()).unwrap();
    let mut streamed = String::new();
    let g = generate(
        &mut s,
        &tok,
        &prompt,
        &params(confident, SamplerConfig::greedy()),
        None,
        &mut |t| {
            streamed.push_str(t);
            true
        },
    )
    .unwrap();
    assert_eq!(g.tokens, want);
    assert_eq!(streamed, g.text);
    assert_eq!(g.text, tok.decode(&g.tokens, false, false).unwrap());

    // Seeded sampling: same seed, same tokens; another seed, other tokens.
    let sampled = |seed: u64| {
        let mut s = Session::new(&model, cfg()).unwrap();
        let p = params(
            12,
            SamplerConfig {
                seed,
                temperature: 1.2,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..SamplerConfig::default()
            },
        );
        generate(&mut s, &tok, &prompt, &p, None, &mut |_| true)
            .unwrap()
            .tokens
    };
    let a = sampled(7);
    assert_eq!(a, sampled(7));
    assert_ne!(a, sampled(8));

    // Stop text: generation ends and the stop text is not part of the output.
    let stop_at = tok.decode(&g.tokens[..2], false, false).unwrap();
    let stop_text: String = stop_at.chars().skip(1).collect();
    let mut s = Session::new(&model, cfg()).unwrap();
    let mut p = params(16, SamplerConfig::greedy());
    p.stop = vec![stop_text.clone()];
    let g2 = generate(&mut s, &tok, &prompt, &p, None, &mut |_| true).unwrap();
    assert_eq!(g2.stop, StopReason::StopText);
    assert!(!g2.text.contains(&stop_text), "{:?}", g2.text);

    // Multi-turn: a follow-up that extends the cached sequence only
    // evaluates the new tokens.
    let mut follow = s.history().to_vec();
    follow.extend(tok.encode(" And then", false, false));
    let g3 = generate(
        &mut s,
        &tok,
        &follow,
        &params(2, SamplerConfig::greedy()),
        None,
        &mut |_| true,
    )
    .unwrap();
    assert!(
        g3.prompt_eval_tokens <= follow.len() - prompt.len(),
        "re-evaluated {} of {} tokens",
        g3.prompt_eval_tokens,
        follow.len()
    );

    // Cancellation from another thread (set before the first token here, so
    // the outcome does not depend on timing), and from the callback.
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || c2.cancel()).join().unwrap();
    let mut s = Session::new(&model, cfg()).unwrap();
    let g4 = generate(
        &mut s,
        &tok,
        &prompt,
        &params(8, SamplerConfig::greedy()),
        Some(&cancel),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(g4.stop, StopReason::Cancelled);
    assert!(g4.tokens.is_empty());
    let mut s = Session::new(&model, cfg()).unwrap();
    let g5 = generate(
        &mut s,
        &tok,
        &prompt,
        &params(8, SamplerConfig::greedy()),
        None,
        &mut |_| false,
    )
    .unwrap();
    assert_eq!(g5.stop, StopReason::Cancelled);
    assert_eq!(g5.tokens.len(), 1);

    // A full context is reported, not a crash.
    let small = SessionConfig {
        n_ctx: prompt.len() + 3,
        n_batch: 64,
    };
    let mut s = Session::new(&model, small).unwrap();
    let g6 = generate(
        &mut s,
        &tok,
        &prompt,
        &params(50, SamplerConfig::greedy()),
        None,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(g6.stop, StopReason::ContextFull);
    assert!(g6.tokens.len() <= 4);
    let mut s = Session::new(
        &model,
        SessionConfig {
            n_ctx: 4,
            n_batch: 64,
        },
    )
    .unwrap();
    let e = generate(
        &mut s,
        &tok,
        &prompt,
        &params(1, SamplerConfig::greedy()),
        None,
        &mut |_| true,
    )
    .unwrap_err();
    assert!(
        matches!(e, wasm_chord_runtime::RuntimeError::ContextFull { .. }),
        "{e}"
    );
}
