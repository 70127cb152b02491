//! The wasm-bindgen API in Node (`wasm-bindgen-test`), on tiny
//! random-weight models that `scripts/web/test.sh` writes with
//! `wasmchord synth` into `$WASMCHORD_WEB_MODELS` (the runtime's `synth`
//! spreads its work over `std::thread::scope`, which wasm32 cannot spawn,
//! so the models are made natively): chunked loading with
//! progress, greedy generation against a plain argmax loop over the
//! runtime's session (which also shows that rayon runs on the calling
//! thread in wasm32), chat prompts, and errors as `Error`s with a `code`
//! that leave the instance usable.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::{Logits, Model as RtModel, Session, SessionConfig};
use wasm_chord_web::api::{backends, build_info, panic_message, Model, ModelLoader};
use wasm_chord_web::stream::StreamReceiver;

#[wasm_bindgen(inline_js = r#"
export function read_model(name) {
  const proc = globalThis.process;
  const fs = proc.getBuiltinModule ? proc.getBuiltinModule("fs") : require("fs");
  const dir = proc.env.WASMCHORD_WEB_MODELS;
  if (!dir) throw new Error("WASMCHORD_WEB_MODELS is not set (scripts/web/test.sh sets it)");
  return new Uint8Array(fs.readFileSync(dir + "/" + name));
}
"#)]
extern "C" {
    fn read_model(name: &str) -> Vec<u8>;
}

/// `wasmchord synth --arch ARCH --preset tiny --type TY --seed 9`.
fn tiny(arch: &str, ty: &str) -> Vec<u8> {
    read_model(&format!("{arch}-{ty}.gguf"))
}

fn load(bytes: &[u8], progress: Option<js_sys::Function>) -> Result<Model, JsValue> {
    let mut l = ModelLoader::new(Some(bytes.len() as f64), None)?;
    for c in bytes.chunks(65_536) {
        l.push(&js_sys::Uint8Array::from(c))?;
    }
    l.finish(None, Some(128), progress)
}

fn code(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

/// Greedy tokens from a plain loop: forward, take the largest logit.
fn argmax_loop(bytes: &[u8], prompt: &str, n: usize) -> Vec<u32> {
    let file = Arc::new(GgufFile::from_bytes(bytes.to_vec()).unwrap());
    let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
    let model = RtModel::load(file, Arc::new(CpuBackend::new())).unwrap();
    let mut s = Session::new(
        &model,
        SessionConfig {
            n_ctx: 128,
            n_batch: 512,
        },
    )
    .unwrap();
    let mut logits = s
        .forward(&tok.encode(prompt, true, false), Logits::Last)
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let best = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0 as u32;
        if tok.is_eog(best) {
            break;
        }
        out.push(best);
        logits = s.forward(&[best], Logits::Last).unwrap();
    }
    out
}

#[wasm_bindgen_test]
fn build_reports_its_backends_and_simd128() {
    assert_eq!(backends(), ["webgpu", "cpu"]);
    let info = build_info();
    let get = |k: &str| js_sys::Reflect::get(&info, &k.into()).unwrap();
    let listed: Vec<String> = js_sys::Array::from(&get("backends"))
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(listed, ["webgpu", "cpu"]);
    assert_eq!(
        get("simd128").as_bool(),
        Some(cfg!(target_feature = "simd128"))
    );
}

#[wasm_bindgen_test]
fn greedy_generation_matches_an_argmax_loop() {
    for (arch, ty) in [("llama", "q8_0"), ("gemma3", "q4_k_m"), ("qwen3", "f16")] {
        let bytes = tiny(arch, ty);
        let seen = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
        let seen2 = Arc::clone(&seen);
        let cb = Closure::<dyn FnMut(f64) -> bool>::new(move |f: f64| {
            seen2.lock().unwrap().push(f);
            true
        });
        let model = load(
            &bytes,
            Some(cb.as_ref().unchecked_ref::<js_sys::Function>().clone()),
        )
        .unwrap();
        let fractions = seen.lock().unwrap().clone();
        assert_eq!(fractions.last().copied(), Some(1.0), "{fractions:?}");
        assert!(fractions.windows(2).all(|w| w[0] < w[1]));

        assert_eq!(
            js_sys::Reflect::get(&model.info(), &"architecture".into())
                .unwrap()
                .as_string()
                .as_deref(),
            Some(arch)
        );
        let prompt = model.tokenize("The cat sat", true, false).unwrap();
        let mut g = model
            .start(prompt, r#"{"maxTokens": 20, "greedy": true}"#)
            .unwrap();
        let mut text = String::new();
        while let Some(piece) = g.step().unwrap() {
            text.push_str(&piece);
        }
        let want = argmax_loop(&bytes, "The cat sat", 20);
        assert!(!want.is_empty());
        assert_eq!(g.tokens(), want, "{arch} {ty}");
        assert_eq!(text, g.text());
        // `detokenize` drops the leading space a prompt continuation keeps.
        let detok = model.detokenize(want).unwrap();
        assert_eq!(text.trim_start(), detok.trim_start(), "{arch} {ty}: text");
        let reason = g.stop_reason().unwrap();
        assert!(reason == "maxTokens" || reason == "eos", "{reason}");
        let stats = g.stats();
        let n = js_sys::Reflect::get(&stats, &"generatedTokens".into()).unwrap();
        assert_eq!(n.as_f64(), Some(g.tokens().len() as f64));
    }
}

#[wasm_bindgen_test]
fn chat_prompt_uses_the_architecture_template() {
    let model = load(&tiny("gemma3", "q8_0"), None).unwrap();
    let msgs = r#"[{"role": "user", "content": "Hi there"}]"#;
    let text = model.render_chat(msgs, true).unwrap();
    assert!(
        text.contains("<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"),
        "{text}"
    );
    let toks = model.chat_tokens(msgs).unwrap();
    let mut g = model
        .start(toks, r#"{"maxTokens": 4, "greedy": true}"#)
        .unwrap();
    while g.step().unwrap().is_some() {}
    assert!(g.stop_reason().is_some());
}

#[wasm_bindgen_test]
fn errors_are_coded_and_leave_the_instance_usable() {
    let bytes = tiny("llama", "q8_0");
    let model = load(&bytes, None).unwrap();
    let p = model.tokenize("a b", true, false).unwrap();
    let cases: Vec<(Result<(), JsValue>, &str)> = vec![
        (
            model
                .start(p.clone(), r#"{"temperature": "hot"}"#)
                .map(drop),
            "INVALID_ARGUMENT",
        ),
        (
            model.start(p.clone(), r#"{"maxTokenz": 3}"#).map(drop),
            "INVALID_ARGUMENT",
        ),
        (model.start(vec![], "{}").map(drop), "INVALID_ARGUMENT"),
        (
            model.start(vec![u32::MAX], "{}").map(drop),
            "INVALID_ARGUMENT",
        ),
        (
            model.render_chat("not json", true).map(drop),
            "INVALID_ARGUMENT",
        ),
        (load(b"GGUF\x03\0\0\0", None).map(drop), "BAD_MODEL"),
        (
            // One allocation on wasm32 is at most 2 GiB - 1.
            ModelLoader::new(Some((1u64 << 31) as f64), None).map(drop),
            "MODEL_TOO_LARGE",
        ),
        (
            ModelLoader::new(Some(-1.0), None).map(drop),
            "INVALID_ARGUMENT",
        ),
    ];
    for (r, want) in cases {
        let e = r.unwrap_err();
        assert!(e.is_instance_of::<js_sys::Error>());
        assert_eq!(code(&e), want, "{e:?}");
    }
    // Not GGUF at all: found at the header check, before the whole file.
    let mut junk = bytes.clone();
    junk[..4].copy_from_slice(b"JUNK");
    let mut l = ModelLoader::new(None, Some(false)).unwrap();
    let e = junk
        .chunks(32_768)
        .find_map(|c| l.push(&js_sys::Uint8Array::from(c)).err())
        .unwrap();
    assert_eq!(code(&e), "BAD_MODEL");
    // Cancelled load.
    let cb = Closure::<dyn FnMut(f64) -> bool>::new(|_f: f64| false);
    let e = load(
        &bytes,
        Some(cb.as_ref().unchecked_ref::<js_sys::Function>().clone()),
    )
    .err()
    .unwrap();
    assert_eq!(code(&e), "ABORTED");
    // Still fine afterwards.
    assert_eq!(panic_message(), None);
    let mut g = model
        .start(p, r#"{"maxTokens": 3, "greedy": true}"#)
        .unwrap();
    while g.step().unwrap().is_some() {}
    assert_eq!(g.tokens().len(), 3);
}

/// The WebGPU path's streaming loader, inside wasm32: the header parsed
/// from a prefix, each tensor uploaded when its last byte arrives (chunks
/// that split tensors and headers anywhere), then greedy tokens equal to
/// the plain loop over the whole file. On the CPU backend here (Node has
/// no WebGPU); the browser test runs it on WebGPU.
#[wasm_bindgen_test]
fn streamed_loading_matches_the_whole_file() {
    for (arch, ty) in [("llama", "q8_0"), ("gemma3", "q4_k_m"), ("qwen3", "f16")] {
        let bytes = tiny(arch, ty);
        let want = argmax_loop(&bytes, "Once upon a time", 12);
        let mut rx =
            StreamReceiver::new(Arc::new(CpuBackend::new()), Some(bytes.len() as f64 as u64));
        let mut header_at = None;
        for (i, c) in bytes.chunks(40_009).enumerate() {
            rx.push(c).unwrap();
            if rx.header_valid() {
                header_at.get_or_insert(i);
            } else {
                assert_eq!(rx.tensors_done().0, 0);
            }
        }
        // Found with the first 64 KiB (the header is smaller), long
        // before the end of the file.
        assert_eq!(header_at, Some(1), "{arch} {ty}");
        assert_eq!(rx.tensors_done().0, rx.tensors_done().1);
        let model = rx.finish(None).unwrap();
        let tok = Tokenizer::from_metadata(model.file().metadata()).unwrap();
        let mut s = Session::new(
            &model,
            SessionConfig {
                n_ctx: 128,
                n_batch: 512,
            },
        )
        .unwrap();
        let mut logits = s
            .forward(&tok.encode("Once upon a time", true, false), Logits::Last)
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let best = logits
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0 as u32;
            got.push(best);
            logits = s.forward(&[best], Logits::Last).unwrap();
        }
        assert_eq!(got, want, "{arch} {ty}");
        // Bytes the header promised but that never came: BAD_MODEL or
        // INTEGRITY, never a model.
        let mut rx = StreamReceiver::new(Arc::new(CpuBackend::new()), None);
        rx.push(&bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(rx.finish(None).unwrap_err().code(), "BAD_MODEL");
    }
}
