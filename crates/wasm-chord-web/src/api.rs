//! The classes and functions JavaScript sees (wasm-bindgen). They are thin:
//! argument conversion, the poisoned-instance check, and errors turned into
//! `Error`s with a `code`. `bindings/js/src/index.js` wraps them into the
//! public API (fetching, caching, async iterators, `AbortSignal`).

use crate::engine::{Engine, Generation, Step};
use crate::error::{WebError, WebResult};
use crate::loader::Receiver;
use crate::options::GenerateOptions;
use crate::panic;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_chord_runtime::StopReason;

fn check() -> WebResult<()> {
    panic::check()
}

fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        // Defining a property on a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// Milliseconds from `performance.now()` (or `Date.now()` where there is
/// no `performance`).
fn now_ms() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .filter(|p| p.is_object());
    if let Some(p) = perf {
        if let Ok(f) = js_sys::Reflect::get(&p, &"now".into()) {
            if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                if let Some(t) = f.call0(&p).ok().and_then(|v| v.as_f64()) {
                    return t;
                }
            }
        }
    }
    js_sys::Date::now()
}

/// Which backend runs the model: `"cpu"` (the `simd128` CPU path) in this
/// build. A WebGPU build will answer `"webgpu"` when `navigator.gpu` gives
/// an adapter.
#[wasm_bindgen]
pub fn backend() -> String {
    "cpu".into()
}

/// What this build was compiled with: `{version, backend, simd128, threads}`.
#[wasm_bindgen(js_name = buildInfo)]
pub fn build_info() -> JsValue {
    object(&[
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("backend", backend().into()),
        ("simd128", cfg!(target_feature = "simd128").into()),
        ("threads", false.into()),
        (
            "maxModelBytes",
            (crate::loader::MAX_MODEL_BYTES as f64).into(),
        ),
    ])
}

/// The message of the panic that poisoned this instance, if one did.
#[wasm_bindgen(js_name = panicMessage)]
pub fn panic_message() -> Option<String> {
    panic::message()
}

/// Panics on purpose: only in builds with the `panic-test` feature, to test
/// the panic fallback end to end.
#[cfg(feature = "panic-test")]
#[wasm_bindgen(js_name = panicForTesting)]
pub fn panic_for_testing() {
    panic!("deliberate panic (panic-test build)");
}

/// Receives a GGUF file in chunks (straight into wasm memory), hashing it
/// and checking its header on the way.
#[wasm_bindgen]
pub struct ModelLoader {
    rx: Option<Receiver>,
}

#[wasm_bindgen]
impl ModelLoader {
    /// Expects `total` bytes when known (space is reserved now, so a file
    /// that cannot fit fails before any download). `hash: false` skips the
    /// sha256 (then `finish` accepts no expected digest).
    #[wasm_bindgen(constructor)]
    pub fn new(total: Option<f64>, hash: Option<bool>) -> Result<ModelLoader, JsValue> {
        check()?;
        let total = match total {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 && t.fract() == 0.0 => Some(t as u64),
            Some(t) => return Err(WebError::invalid("total", format!("{t} is not a size")).into()),
        };
        let mut rx = Receiver::new(total)?;
        if hash == Some(false) {
            rx.skip_hash()?;
        }
        Ok(Self { rx: Some(rx) })
    }

    fn rx(&mut self) -> WebResult<&mut Receiver> {
        self.rx
            .as_mut()
            .ok_or_else(|| WebError::invalid("loader", "already finished"))
    }

    /// Appends a chunk.
    pub fn push(&mut self, chunk: &js_sys::Uint8Array) -> Result<(), JsValue> {
        check()?;
        let n = chunk.length() as usize;
        let rx = self.rx()?;
        let dst = rx.extend(n)?;
        // `dst` has exactly `chunk.length()` bytes, as `copy_to` requires.
        chunk.copy_to(dst);
        rx.commit(n)?;
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> f64 {
        self.rx.as_ref().map_or(0.0, |r| r.received() as f64)
    }

    /// Whether the GGUF header has arrived and is valid.
    #[wasm_bindgen(js_name = headerValid)]
    pub fn header_valid(&self) -> bool {
        self.rx
            .as_ref()
            .is_some_and(|r| r.header() == crate::loader::HeaderState::Valid)
    }

    /// Lowercase hex sha256 of the bytes so far (`undefined` when not hashing).
    pub fn sha256(&self) -> Option<String> {
        self.rx.as_ref().and_then(Receiver::sha256_hex)
    }

    /// Checks size, header and `sha256` (hex, optional), then loads the
    /// model with a context of `context_size` positions. `progress(f)` is
    /// called with fractions in `[0, 1]`; returning `false` (or throwing)
    /// cancels with code `ABORTED`.
    pub fn finish(
        &mut self,
        sha256: Option<String>,
        context_size: Option<u32>,
        progress: Option<js_sys::Function>,
    ) -> Result<Model, JsValue> {
        check()?;
        let rx = self
            .rx
            .take()
            .ok_or_else(|| WebError::invalid("loader", "already finished"))?;
        let bytes = rx.finish(sha256.as_deref())?;
        let mut report = |f: f32| match &progress {
            None => true,
            Some(cb) => cb
                .call1(&JsValue::NULL, &JsValue::from_f64(f64::from(f)))
                .is_ok_and(|v| v.as_bool() != Some(false)),
        };
        let n_ctx = context_size.map_or(2048, |c| c as usize);
        let engine = Engine::load(bytes, n_ctx, &mut report)?;
        Ok(Model {
            engine: Rc::new(engine),
        })
    }
}

/// A loaded model and its session (one conversation's KV cache).
#[wasm_bindgen]
pub struct Model {
    engine: Rc<Engine>,
}

#[wasm_bindgen]
impl Model {
    /// `{architecture, name, nVocab, nCtxTrain, nLayer, nEmbd, contextSize,
    /// fileBytes, chatTemplate, chatTemplateFallback}`.
    pub fn info(&self) -> JsValue {
        let e = &self.engine;
        let c = &e.model().config;
        let md = e.model().file().metadata();
        let name = md.get_str("general.name").unwrap_or("").to_owned();
        let arch = md.get_str("general.architecture").unwrap_or("").to_owned();
        let (template, fallback) = match e.template() {
            Ok((t, fb)) => (JsValue::from_str(t.source()), *fb),
            Err(_) => (JsValue::NULL, false),
        };
        object(&[
            ("architecture", arch.into()),
            ("name", name.into()),
            ("nVocab", (c.n_vocab as f64).into()),
            ("nCtxTrain", (c.n_ctx_train as f64).into()),
            ("nLayer", (c.n_layer as f64).into()),
            ("nEmbd", (c.n_embd as f64).into()),
            ("contextSize", (e.context_size() as f64).into()),
            ("fileBytes", (e.model().file().file_len() as f64).into()),
            ("chatTemplate", template),
            ("chatTemplateFallback", fallback.into()),
            ("backend", backend().into()),
        ])
    }

    /// The backend this model runs on (`"cpu"`).
    pub fn backend(&self) -> String {
        backend()
    }

    /// Token ids of `text`; `add_special` adds the BOS the model asks for,
    /// `parse_special` turns special-token texts into their ids.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, JsValue> {
        check()?;
        Ok(self.engine.tokenize(text, add_special, parse_special))
    }

    /// The text of `tokens`.
    pub fn detokenize(&self, tokens: Vec<u32>) -> Result<String, JsValue> {
        check()?;
        Ok(self.engine.detokenize(&tokens)?)
    }

    /// `messages_json` (`[{role, content}, ...]`) rendered with the model's
    /// chat template (or its architecture's built-in one).
    #[wasm_bindgen(js_name = renderChat)]
    pub fn render_chat(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
    ) -> Result<String, JsValue> {
        check()?;
        Ok(self
            .engine
            .render_chat(messages_json, add_generation_prompt)?)
    }

    /// The prompt tokens for the assistant's next turn after `messages_json`.
    #[wasm_bindgen(js_name = chatTokens)]
    pub fn chat_tokens(&self, messages_json: &str) -> Result<Vec<u32>, JsValue> {
        check()?;
        Ok(self.engine.chat_tokens(messages_json)?)
    }

    /// Starts generating after `prompt` with `options_json` (see the
    /// package's `GenerateOptions`); an older generation on this model ends.
    pub fn start(&self, prompt: Vec<u32>, options_json: &str) -> Result<Generator, JsValue> {
        check()?;
        let opts = GenerateOptions::from_json(options_json)?;
        Ok(Generator {
            inner: Generation::new(Rc::clone(&self.engine), prompt, opts)?,
        })
    }

    /// Forgets the cached conversation; a running generation ends.
    pub fn reset(&self) -> Result<(), JsValue> {
        check()?;
        self.engine.reset();
        Ok(())
    }
}

/// One generation, advanced by [`Generator::step`].
#[wasm_bindgen]
pub struct Generator {
    inner: Generation,
}

fn reason_name(r: StopReason) -> &'static str {
    match r {
        StopReason::EndOfGeneration => "eos",
        StopReason::MaxTokens => "maxTokens",
        StopReason::StopText => "stop",
        StopReason::ContextFull => "contextFull",
        StopReason::Cancelled => "aborted",
    }
}

#[wasm_bindgen]
impl Generator {
    /// Evaluates the prompt (first call) or one token; returns the text now
    /// final (maybe empty), or `undefined` when generation is over.
    pub fn step(&mut self) -> Result<Option<String>, JsValue> {
        check()?;
        match self.inner.step(&now_ms)? {
            Step::Text(t) => Ok(Some(t)),
            Step::Done => Ok(None),
        }
    }

    /// Ends the generation as aborted; returns text that was held back.
    pub fn cancel(&mut self) -> String {
        self.inner.cancel()
    }

    /// `"eos" | "maxTokens" | "stop" | "contextFull" | "aborted"`, or
    /// `undefined` while running.
    #[wasm_bindgen(js_name = stopReason)]
    pub fn stop_reason(&self) -> Option<String> {
        self.inner.stop_reason().map(|r| reason_name(r).to_owned())
    }

    /// All text so far.
    pub fn text(&self) -> String {
        self.inner.text().to_owned()
    }

    /// The generated token ids.
    pub fn tokens(&self) -> Vec<u32> {
        self.inner.tokens().to_vec()
    }

    /// `{promptTokens, promptMs, generatedTokens, genMs, tokensPerSecond}`.
    pub fn stats(&self) -> JsValue {
        let s = self.inner.stats();
        let tps = if s.gen_ms > 0.0 {
            s.generated_tokens as f64 * 1000.0 / s.gen_ms
        } else {
            0.0
        };
        object(&[
            ("promptTokens", (s.prompt_tokens as f64).into()),
            ("promptMs", s.prompt_ms.into()),
            ("generatedTokens", (s.generated_tokens as f64).into()),
            ("genMs", s.gen_ms.into()),
            ("tokensPerSecond", tps.into()),
        ])
    }
}
