//! Shared by the C API tests: tiny random-weight models written by the
//! project's generator, and reference runs through the Rust API.
#![allow(dead_code)] // each test binary uses a part

pub mod ffi;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use wasm_chord_core::gguf::{GgufFile, Value};
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
use wasm_chord_runtime::sampler::SamplerConfig;
use wasm_chord_runtime::synth::{self, SynthSpec};
use wasm_chord_runtime::{generate, GenerateParams, Model, Session, SessionConfig};

/// A Jinja template stored in the templated model.
pub const OWN_TEMPLATE: &str =
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";

/// A scratch directory for this test process, under cargo's target
/// temporary directory. Directories left by test processes that are gone
/// (Linux: no `/proc/PID`) are removed first.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmchord-capi");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let gone = name
                    .parse::<u32>()
                    .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone && cfg!(target_os = "linux") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let d = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&d).expect("create scratch dir");
        d
    })
}

fn build(with_template: bool) -> Vec<u8> {
    let spec = SynthSpec::new(Some("llama"), "tiny", "q8_0", 11).expect("tiny llama spec");
    let mut w = synth::build(&spec).expect("build tiny llama");
    if with_template {
        w.metadata_mut().insert(
            "tokenizer.chat_template",
            Value::String(OWN_TEMPLATE.into()),
        );
    }
    w.to_bytes().expect("serialize tiny llama")
}

/// A tiny llama (q8_0, self-made vocabulary, no chat template): its bytes
/// and the path of a copy on disk.
pub fn tiny() -> &'static (Vec<u8>, PathBuf) {
    static M: OnceLock<(Vec<u8>, PathBuf)> = OnceLock::new();
    M.get_or_init(|| {
        let bytes = build(false);
        let path = scratch().join("tiny-llama-q8_0.gguf");
        std::fs::write(&path, &bytes).expect("write tiny model");
        (bytes, path)
    })
}

/// The same model with a `tokenizer.chat_template` ([`OWN_TEMPLATE`]).
pub fn tiny_templated() -> &'static (Vec<u8>, PathBuf) {
    static M: OnceLock<(Vec<u8>, PathBuf)> = OnceLock::new();
    M.get_or_init(|| {
        let bytes = build(true);
        let path = scratch().join("tiny-llama-templated.gguf");
        std::fs::write(&path, &bytes).expect("write templated model");
        (bytes, path)
    })
}

/// What `examples/*/chat` must print for `turns` on `model` with
/// `max_tokens`, temperature `temp` and `seed` (the other sampling
/// settings at their defaults): each reply followed by a newline,
/// computed with the Rust API the same way (chatml when the model has no
/// template, one session, the whole conversation re-sent each turn).
pub fn reference_chat(
    model: &Path,
    turns: &[&str],
    max_tokens: usize,
    temp: f32,
    seed: u64,
) -> String {
    let file = Arc::new(GgufFile::open(model).expect("open model"));
    let tok = Tokenizer::from_metadata(file.metadata()).expect("tokenizer");
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_owned();
    let t = ChatTemplate::from_metadata(file.metadata(), text(tok.bos()), text(tok.eos()))
        .or_else(|_| ChatTemplate::builtin("chatml"))
        .expect("template");
    let model = Model::load(file, Arc::new(CpuBackend::new())).expect("load");
    let mut session = Session::new(&model, SessionConfig::default()).expect("session");
    let params = GenerateParams {
        max_tokens,
        stop: Vec::new(),
        sampler: SamplerConfig {
            temperature: temp,
            seed,
            ..SamplerConfig::default()
        },
    };
    let mut msgs = Vec::new();
    let mut out = String::new();
    for turn in turns {
        msgs.push(Message::user(*turn));
        let prompt = t.render(&msgs, true, None).expect("render");
        let ids = tok.encode(&prompt, false, true);
        let g = generate(&mut session, &tok, &ids, &params, None, &mut |_| true).expect("generate");
        out.push_str(&g.text);
        out.push('\n');
        msgs.push(Message::assistant(g.text));
    }
    out
}
