//! The classes and functions JavaScript sees (wasm-bindgen). They are thin:
//! argument conversion, the poisoned-instance check, and errors turned into
//! `Error`s with a `code`. `bindings/js/src/index.js` wraps them into the
//! public API (fetching, caching, async iterators, `AbortSignal`).

use crate::engine::{Engine, Generation, Step};
use crate::error::{WebError, WebResult};
use crate::loader::Receiver;
use crate::options::GenerateOptions;
use crate::panic;
use crate::stream::StreamReceiver;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_gpu::GpuBackend;
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

/// The backends compiled in, best first: `["webgpu", "cpu"]` (WebGPU is
/// used when `navigator.gpu` gives an adapter; the CPU path, built with
/// `simd128`, always works).
#[wasm_bindgen]
pub fn backends() -> Vec<String> {
    vec!["webgpu".into(), "cpu".into()]
}

/// What this build was compiled with: `{version, backends, simd128,
/// threads, maxModelBytes}` (`maxModelBytes`: the CPU path's limit).
#[wasm_bindgen(js_name = buildInfo)]
pub fn build_info() -> JsValue {
    let backends: js_sys::Array = backends().into_iter().map(JsValue::from).collect();
    object(&[
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("backends", backends.into()),
        ("simd128", cfg!(target_feature = "simd128").into()),
        ("threads", false.into()),
        (
            "maxModelBytes",
            (crate::loader::MAX_MODEL_BYTES as f64).into(),
        ),
    ])
}

/// Bytes of wasm linear memory the instance has now (it never shrinks: the
/// high-water mark). 0 outside wasm32.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size(0) as f64) * 65536.0
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0.0
    }
}

/// The message of the panic that poisoned this instance, if one did.
#[wasm_bindgen(js_name = panicMessage)]
pub fn panic_message() -> Option<String> {
    panic::message()
}

/// Sets the function called with the message when this instance panics
/// (see `panic::set_listener`).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen(js_name = setPanicListener)]
pub fn set_panic_listener(f: js_sys::Function) {
    panic::set_listener(f);
}

/// Panics on purpose: only in builds with the `panic-test` feature, to test
/// the panic fallback end to end.
#[cfg(feature = "panic-test")]
#[wasm_bindgen(js_name = panicForTesting)]
pub fn panic_for_testing() {
    panic!("deliberate panic (panic-test build)");
}

/// Panics on purpose inside a future, after one turn of the event loop's
/// microtasks, as a panic in an async WebGPU step would: only in builds
/// with the `panic-test` feature.
#[cfg(feature = "panic-test")]
#[wasm_bindgen(js_name = panicAsyncForTesting)]
pub async fn panic_async_for_testing() {
    let tick = js_sys::Promise::resolve(&wasm_bindgen::JsValue::NULL);
    let _ = wasm_bindgen_futures::JsFuture::from(tick).await;
    panic!("deliberate panic in a future (panic-test build)");
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
            engine: AnyEngine::Cpu(Rc::new(engine)),
        })
    }
}

/// A WebGPU device (`navigator.gpu`'s adapter) for models to load onto.
#[wasm_bindgen]
pub struct WebGpu {
    backend: Arc<GpuBackend>,
}

/// Opens the WebGPU adapter; fails with code `UNSUPPORTED_BACKEND` (and the
/// reason) when there is none or the device cannot be created.
#[wasm_bindgen(js_name = openWebGpu)]
pub async fn open_web_gpu() -> Result<WebGpu, JsValue> {
    check()?;
    let backend = GpuBackend::new_async()
        .await
        .map_err(|e| WebError::UnsupportedBackend(format!("WebGPU: {e}")))?;
    Ok(WebGpu {
        backend: Arc::new(backend),
    })
}

#[wasm_bindgen]
impl WebGpu {
    /// The adapter: name, API, optional features, binding limit.
    pub fn summary(&self) -> String {
        self.backend.adapter_summary()
    }

    /// The largest buffer the adapter allows, in bytes.
    #[wasm_bindgen(js_name = maxBufferBytes)]
    pub fn max_buffer_bytes(&self) -> f64 {
        use wasm_chord_core::backend::Backend;
        self.backend.caps().max_buffer_bytes as f64
    }
}

/// Receives a GGUF file in chunks and uploads it to WebGPU tensor by
/// tensor (only the header and one tensor are in wasm memory at a time),
/// hashing it on the way. The same methods as [`ModelLoader`].
#[wasm_bindgen]
pub struct GpuModelLoader {
    rx: Option<StreamReceiver<GpuBackend>>,
}

#[wasm_bindgen]
impl GpuModelLoader {
    /// Expects `total` bytes when known; `hash: false` skips the sha256.
    #[wasm_bindgen(constructor)]
    pub fn new(
        gpu: &WebGpu,
        total: Option<f64>,
        hash: Option<bool>,
    ) -> Result<GpuModelLoader, JsValue> {
        check()?;
        let total = match total {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 && t.fract() == 0.0 => Some(t as u64),
            Some(t) => return Err(WebError::invalid("total", format!("{t} is not a size")).into()),
        };
        let mut rx = StreamReceiver::new(Arc::clone(&gpu.backend), total);
        if hash == Some(false) {
            rx.skip_hash()?;
        }
        Ok(Self { rx: Some(rx) })
    }

    fn rx(&mut self) -> WebResult<&mut StreamReceiver<GpuBackend>> {
        self.rx
            .as_mut()
            .ok_or_else(|| WebError::invalid("loader", "already finished"))
    }

    /// Appends a chunk; uploads every tensor it completes.
    pub fn push(&mut self, chunk: &js_sys::Uint8Array) -> Result<(), JsValue> {
        check()?;
        let bytes = chunk.to_vec();
        self.rx()?.push(&bytes)?;
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> f64 {
        self.rx.as_ref().map_or(0.0, |r| r.received() as f64)
    }

    /// Whether the GGUF header has arrived and describes a model the
    /// runtime can build.
    #[wasm_bindgen(js_name = headerValid)]
    pub fn header_valid(&self) -> bool {
        self.rx.as_ref().is_some_and(StreamReceiver::header_valid)
    }

    /// Lowercase hex sha256 of the bytes so far (`undefined` when not hashing).
    pub fn sha256(&self) -> Option<String> {
        self.rx.as_ref().and_then(StreamReceiver::sha256_hex)
    }

    /// Checks size, tensors and `sha256`, then builds the model with a
    /// context of `context_size` positions (its weights are on the device
    /// already). `progress(1)` is called at the end.
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
        let file_bytes = rx.received();
        let model = rx.finish(sha256.as_deref())?;
        let n_ctx = context_size.map_or(2048, |c| c as usize);
        let engine = Engine::new(model, n_ctx, file_bytes)?;
        if let Some(cb) = &progress {
            let _ = cb.call1(&JsValue::NULL, &JsValue::from_f64(1.0));
        }
        Ok(Model {
            engine: AnyEngine::Gpu(Rc::new(engine)),
        })
    }
}

/// The engine of a model, on one backend or the other.
enum AnyEngine {
    Cpu(Rc<Engine<CpuBackend>>),
    Gpu(Rc<Engine<GpuBackend>>),
}

/// Runs `$body` with `$e` bound to the engine, whatever its backend.
macro_rules! with_engine {
    ($self:expr, $e:ident => $body:expr) => {
        match &$self.engine {
            AnyEngine::Cpu($e) => $body,
            AnyEngine::Gpu($e) => $body,
        }
    };
}

/// A loaded model and its session (one conversation's KV cache).
#[wasm_bindgen]
pub struct Model {
    engine: AnyEngine,
}

#[wasm_bindgen]
impl Model {
    /// `{architecture, name, nVocab, nCtxTrain, nLayer, nEmbd, contextSize,
    /// fileBytes, chatTemplate, chatTemplateFallback}`.
    pub fn info(&self) -> JsValue {
        with_engine!(self, e => info_of(e))
    }

    /// The backend this model runs on (`"cpu"` or `"webgpu"`).
    pub fn backend(&self) -> String {
        with_engine!(self, e => e.backend_name().to_owned())
    }

    /// Whether a generation step returns a Promise (`stepAsync`): true on
    /// WebGPU, whose read-backs cannot block.
    #[wasm_bindgen(js_name = isAsync)]
    pub fn is_async(&self) -> bool {
        matches!(self.engine, AnyEngine::Gpu(_))
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
        Ok(with_engine!(self, e => e.tokenize(text, add_special, parse_special)))
    }

    /// The text of `tokens`.
    pub fn detokenize(&self, tokens: Vec<u32>) -> Result<String, JsValue> {
        check()?;
        Ok(with_engine!(self, e => e.detokenize(&tokens))?)
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
        Ok(with_engine!(self, e => e.render_chat(messages_json, add_generation_prompt))?)
    }

    /// The prompt tokens for the assistant's next turn after `messages_json`.
    #[wasm_bindgen(js_name = chatTokens)]
    pub fn chat_tokens(&self, messages_json: &str) -> Result<Vec<u32>, JsValue> {
        check()?;
        Ok(with_engine!(self, e => e.chat_tokens(messages_json))?)
    }

    /// Starts generating after `prompt` with `options_json` (see the
    /// package's `GenerateOptions`); an older generation on this model ends.
    pub fn start(&self, prompt: Vec<u32>, options_json: &str) -> Result<Generator, JsValue> {
        check()?;
        let opts = GenerateOptions::from_json(options_json)?;
        let inner = match &self.engine {
            AnyEngine::Cpu(e) => {
                AnyGeneration::Cpu(Box::new(Generation::new(Rc::clone(e), prompt, opts)?))
            }
            AnyEngine::Gpu(e) => AnyGeneration::Gpu(Rc::new(RefCell::new(Generation::new(
                Rc::clone(e),
                prompt,
                opts,
            )?))),
        };
        Ok(Generator { inner })
    }

    /// Forgets the cached conversation; a running generation ends.
    pub fn reset(&self) -> Result<(), JsValue> {
        check()?;
        with_engine!(self, e => e.reset());
        Ok(())
    }
}

/// `Model::info` for an engine on any backend.
fn info_of<B: wasm_chord_core::backend::Backend>(e: &Engine<B>) -> JsValue {
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
        ("fileBytes", (e.file_bytes() as f64).into()),
        ("chatTemplate", template),
        ("chatTemplateFallback", fallback.into()),
        ("backend", e.backend_name().into()),
    ])
}

/// A generation on one backend or the other; the WebGPU one is shared with
/// the futures of its asynchronous steps.
enum AnyGeneration {
    Cpu(Box<Generation<CpuBackend>>),
    Gpu(Rc<RefCell<Generation<GpuBackend>>>),
}

/// Runs `$body` with `$g` bound to the generation (`&mut`), whatever its
/// backend; `$busy` when an asynchronous step holds it.
macro_rules! with_gen {
    ($self:expr, $g:ident => $body:expr, $busy:expr) => {
        match &mut $self.inner {
            AnyGeneration::Cpu($g) => $body,
            AnyGeneration::Gpu(cell) => match cell.try_borrow_mut() {
                Ok(mut guard) => {
                    let $g = &mut *guard;
                    $body
                }
                Err(_) => $busy,
            },
        }
    };
}

/// One generation, advanced by [`Generator::step`] (CPU) or
/// [`Generator::step_async`] (WebGPU).
#[wasm_bindgen]
pub struct Generator {
    inner: AnyGeneration,
}

fn step_value(s: Step) -> JsValue {
    match s {
        Step::Text(t) => JsValue::from_str(&t),
        Step::Done => JsValue::UNDEFINED,
    }
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
    /// On WebGPU use `stepAsync`.
    pub fn step(&mut self) -> Result<Option<String>, JsValue> {
        check()?;
        match &mut self.inner {
            AnyGeneration::Cpu(g) => match g.step(&now_ms)? {
                Step::Text(t) => Ok(Some(t)),
                Step::Done => Ok(None),
            },
            AnyGeneration::Gpu(_) => {
                Err(WebError::invalid("step", "this model runs on WebGPU: use stepAsync").into())
            }
        }
    }

    /// `step` as a Promise: on WebGPU it records the forward pass, then
    /// awaits the logits' read-back (the event loop runs meanwhile); on the
    /// CPU it resolves with `step()`'s answer.
    #[wasm_bindgen(js_name = stepAsync)]
    pub fn step_async(&mut self) -> js_sys::Promise {
        if let Err(e) = check() {
            return js_sys::Promise::reject(&e.into());
        }
        match &mut self.inner {
            AnyGeneration::Cpu(g) => match g.step(&now_ms) {
                Ok(s) => js_sys::Promise::resolve(&step_value(s)),
                Err(e) => js_sys::Promise::reject(&e.into()),
            },
            AnyGeneration::Gpu(cell) => {
                let cell = Rc::clone(cell);
                wasm_bindgen_futures::future_to_promise(async move {
                    let s = Generation::step_async(&cell, &now_ms).await?;
                    Ok(step_value(s))
                })
            }
        }
    }

    /// Ends the generation as aborted; returns text that was held back.
    pub fn cancel(&mut self) -> String {
        with_gen!(self, g => g.cancel(), String::new())
    }

    /// `"eos" | "maxTokens" | "stop" | "contextFull" | "aborted"`, or
    /// `undefined` while running.
    #[wasm_bindgen(js_name = stopReason)]
    pub fn stop_reason(&mut self) -> Option<String> {
        with_gen!(self, g => g.stop_reason().map(|r| reason_name(r).to_owned()), None)
    }

    /// All text so far.
    pub fn text(&mut self) -> String {
        with_gen!(self, g => g.text().to_owned(), String::new())
    }

    /// The generated token ids.
    pub fn tokens(&mut self) -> Vec<u32> {
        with_gen!(self, g => g.tokens().to_vec(), Vec::new())
    }

    /// `{promptTokens, promptMs, generatedTokens, genMs, tokensPerSecond}`.
    pub fn stats(&mut self) -> JsValue {
        let s = with_gen!(self, g => g.stats(), Default::default());
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
