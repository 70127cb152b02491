//! Perplexity of the default model against `llama-perplexity` on the same
//! text (fixture: `fixtures/perplexity/`, see its README).
//!
//! The whole text: 11,314 tokens, 22 chunks of 512, 5,610 tokens scored. The
//! running estimate after every chunk is also compared, more loosely, so a
//! drift shows where it starts.

use serde_json::Value;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::{perplexity, Model};

#[test]
fn perplexity_matches_llama_perplexity_within_half_a_percent() {
    let Some(path) = wasm_chord_cli::models::default_model_for_test() else {
        return;
    };
    let reference: Value =
        serde_json::from_str(include_str!("fixtures/perplexity/llama-perplexity.json")).unwrap();
    let text = include_str!("fixtures/perplexity/python-reference.txt");
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
    let tokens = tok.encode(text, true, false);
    assert_eq!(tokens.len() as u64, reference["n_tokens"].as_u64().unwrap());
    let model = Model::load(file, Arc::new(CpuBackend::new())).unwrap();
    let ctx = reference["ctx"].as_u64().unwrap() as usize;
    let r = perplexity(&model, &tokens, ctx, tok.bos(), None, &mut |_, _| true).unwrap();
    let running: Vec<f64> = reference["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(r.running.len(), running.len());
    assert_eq!(r.count, running.len() * (ctx - 1 - ctx / 2));
    for (k, (ours, want)) in r.running.iter().zip(&running).enumerate() {
        let rel = (ours - want) / want;
        assert!(
            rel.abs() < 0.02,
            "after chunk {}: ours {ours} vs llama.cpp {want}",
            k + 1
        );
    }
    let want = reference["ppl"].as_f64().unwrap();
    let rel = (r.ppl - want) / want;
    eprintln!(
        "ppl: ours {:.4}, llama.cpp {want:.4} ({:+.3}%)",
        r.ppl,
        rel * 100.0
    );
    assert!(rel.abs() < 0.005, "ours {} vs llama.cpp {want}", r.ppl);
}
