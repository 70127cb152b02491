//! Perplexity of the default model against `llama-perplexity` on the same
//! text (fixture: `fixtures/perplexity/`, see its README).
//!
//! The whole 22-chunk text takes the scalar CPU backend ~15 minutes, too long
//! for every CI run; the test scores the first 4 chunks (1,020 tokens) and
//! compares with llama.cpp's running estimate after the same 4 chunks. The
//! full-text comparison is recorded in docs/performance.md.

use serde_json::Value;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::{perplexity, Model};

const CHUNKS: usize = 4;

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
    let r = perplexity(
        &model,
        &tokens,
        ctx,
        tok.bos(),
        Some(CHUNKS),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(r.running.len(), CHUNKS);
    assert_eq!(r.count, CHUNKS * (ctx - 1 - ctx / 2));
    let want = reference["running"][CHUNKS - 1].as_f64().unwrap();
    let rel = (r.ppl - want) / want;
    eprintln!(
        "ppl after {CHUNKS} chunks: ours {:.4}, llama.cpp {want:.4} ({:+.3}%)",
        r.ppl,
        rel * 100.0
    );
    assert!(rel.abs() < 0.005, "ours {} vs llama.cpp {want}", r.ppl);
}
