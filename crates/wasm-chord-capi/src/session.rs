//! Sessions and streaming generation.

use crate::boundary::call;
use crate::error::{wasmchord_result, CapiError};
use crate::model::{wasmchord_model, ModelInner};
use crate::ptr::{self, Versioned};
use std::ffi::{c_char, c_void};
use std::mem::size_of;
use std::sync::{Arc, Mutex, TryLockError};
use wasm_chord_runtime::sampler::SamplerConfig;
use wasm_chord_runtime::AnyBackend;
use wasm_chord_runtime::{
    generate, CancelToken, GenerateParams, Session, SessionConfig, StopReason,
};

/// Largest accepted context, in positions (a guard against absurd
/// allocations from a wrong argument).
const MAX_CTX: u32 = 1 << 20;

/// Sizes of a session. Start from `wasmchord_session_params_default()`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_session_params {
    /// `sizeof(wasmchord_session_params)`.
    pub size: usize,
    /// Context capacity in tokens (1 to 1048576). Default 2048.
    pub n_ctx: u32,
    /// Most tokens per forward pass; longer prompts are split. Default 512.
    pub n_batch: u32,
}

impl Versioned for wasmchord_session_params {
    const MIN_SIZE: usize = size_of::<Self>();
}

/// A `(token, bias)` pair added to the logits before sampling; a bias of
/// `-INFINITY` bans the token.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_logit_bias {
    /// The token.
    pub token: u32,
    /// Added to its logit.
    pub bias: f32,
}

/// What to generate and how to sample (llama.cpp's default chain:
/// bias, penalties, top-k, typical, top-p, min-p, temperature). Start from
/// `wasmchord_generate_params_default()`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_generate_params {
    /// `sizeof(wasmchord_generate_params)`.
    pub size: usize,
    /// Most new tokens. Default 256.
    pub max_tokens: u32,
    /// Softmax temperature; `<= 0` is greedy. Default 0.8.
    pub temperature: f32,
    /// Keep the K most likely tokens; 0 = all. Default 40.
    pub top_k: u32,
    /// Nucleus mass in (0, 1]; 1 = off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens below `min_p * p_max`; 0 = off. Default 0.05.
    pub min_p: f32,
    /// Locally typical mass in (0, 1]; 1 = off. Default 1.
    pub typical_p: f32,
    /// Repetition penalty (> 0); 1 = off. Default 1.
    pub repeat_penalty: f32,
    /// Window of recent tokens the penalties see; 0 = off. Default 64.
    pub repeat_last_n: u32,
    /// Subtracted once from tokens in the window. Default 0.
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the window. Default 0.
    pub frequency_penalty: f32,
    /// Seed: the same seed, settings and prompt give the same text.
    pub seed: u64,
    /// `n_stop` NUL-terminated UTF-8 texts that end generation (not
    /// emitted). May be NULL when `n_stop` is 0.
    pub stop: *const *const c_char,
    /// Number of stop texts.
    pub n_stop: usize,
    /// `n_logit_bias` biases. May be NULL when `n_logit_bias` is 0.
    pub logit_bias: *const wasmchord_logit_bias,
    /// Number of biases.
    pub n_logit_bias: usize,
}

impl Versioned for wasmchord_generate_params {
    const MIN_SIZE: usize = size_of::<Self>();
}

/// Why a generation ended.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wasmchord_stop_reason {
    /// The model produced an end-of-generation token.
    WASMCHORD_STOP_EOG = 0,
    /// `max_tokens` were generated.
    WASMCHORD_STOP_MAX_TOKENS = 1,
    /// A stop text appeared.
    WASMCHORD_STOP_TEXT = 2,
    /// The session's context is full.
    WASMCHORD_STOP_CONTEXT_FULL = 3,
    /// The callback returned false or `wasmchord_session_abort` was called.
    WASMCHORD_STOP_CANCELLED = 4,
}

/// Statistics of a generation.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_generation {
    /// `sizeof(wasmchord_generation)`, set by the caller before the call.
    pub size: usize,
    /// Why it ended.
    pub stop: wasmchord_stop_reason,
    /// Tokens generated (the end-of-generation token excluded).
    pub n_tokens: u32,
    /// Prompt tokens evaluated (a prefix already in the cache is reused).
    pub n_prompt_eval: u32,
    /// Milliseconds spent on the prompt.
    pub prompt_ms: f64,
    /// Milliseconds spent generating.
    pub gen_ms: f64,
}

impl Versioned for wasmchord_generation {
    const MIN_SIZE: usize = size_of::<Self>();
}

/// Streaming text: called with each piece of generated UTF-8 text
/// (`len` bytes, not NUL-terminated, valid only during the call) as soon
/// as it is complete and cannot be part of a stop text. Return false to
/// stop generating.
#[allow(non_camel_case_types)]
pub type wasmchord_text_fn =
    Option<unsafe extern "C" fn(text: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// One sequence: a KV cache over a shared model. One thread at a time
/// (concurrent calls get `WASMCHORD_SESSION_BUSY`), except
/// `wasmchord_session_abort`, which any thread may call at any time.
#[allow(non_camel_case_types)]
pub struct wasmchord_session {
    // Keeps the tokenizer alive; the session holds the model weights.
    model: Arc<ModelInner>,
    /// The abort flag of the current (or next) generation; replaced by a
    /// fresh one when a generation returns.
    cancel: Mutex<CancelToken>,
    state: Mutex<Session<'static, AnyBackend>>,
}

fn default_session_params() -> wasmchord_session_params {
    let d = SessionConfig::default();
    wasmchord_session_params {
        size: size_of::<wasmchord_session_params>(),
        n_ctx: u32::try_from(d.n_ctx).unwrap_or(2048),
        n_batch: u32::try_from(d.n_batch).unwrap_or(512),
    }
}

fn default_generate_params() -> wasmchord_generate_params {
    let g = GenerateParams::default();
    let s = SamplerConfig::default();
    wasmchord_generate_params {
        size: size_of::<wasmchord_generate_params>(),
        max_tokens: u32::try_from(g.max_tokens).unwrap_or(256),
        temperature: s.temperature,
        top_k: u32::try_from(s.top_k).unwrap_or(40),
        top_p: s.top_p,
        min_p: s.min_p,
        typical_p: s.typical_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: u32::try_from(s.repeat_last_n).unwrap_or(64),
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        seed: s.seed,
        stop: std::ptr::null(),
        n_stop: 0,
        logit_bias: std::ptr::null(),
        n_logit_bias: 0,
    }
}

/// The default session params (n_ctx 2048, n_batch 512).
#[no_mangle]
pub extern "C" fn wasmchord_session_params_default() -> wasmchord_session_params {
    crate::boundary::boundary(default_session_params(), default_session_params)
}

/// The default generate params (llama.cpp's sampling defaults, 256 tokens).
#[no_mangle]
pub extern "C" fn wasmchord_generate_params_default() -> wasmchord_generate_params {
    crate::boundary::boundary(default_generate_params(), default_generate_params)
}

/// Creates a session over `model`. `params` may be NULL (defaults). The
/// session shares the model: freeing the model first is allowed.
///
/// # Safety
/// `model` is a live model; `params` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_session_new(
    model: *const wasmchord_model,
    params: *const wasmchord_session_params,
    out: *mut *mut wasmchord_session,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let m = unsafe { ptr::handle(model, "model") }?;
        // SAFETY: as above.
        let p = unsafe { ptr::read_params(params, default_session_params(), "params") }?;
        if out.is_null() {
            return Err(CapiError::Null("out"));
        }
        if p.n_ctx == 0 || p.n_ctx > MAX_CTX || p.n_batch == 0 {
            return Err(CapiError::Params(format!(
                "n_ctx must be in 1..={MAX_CTX} and n_batch positive (got {} and {})",
                p.n_ctx, p.n_batch
            )));
        }
        let cfg = SessionConfig {
            n_ctx: p.n_ctx as usize,
            n_batch: p.n_batch.min(p.n_ctx) as usize,
        };
        let session = Session::new_shared(Arc::clone(&m.inner.model), cfg)?;
        let handle = wasmchord_session {
            model: Arc::clone(&m.inner),
            cancel: Mutex::new(CancelToken::new()),
            state: Mutex::new(session),
        };
        // SAFETY: checked non-NULL; writable by the contract.
        unsafe { ptr::write(out, Box::into_raw(Box::new(handle)), "out") }
    })
}

/// Releases a session. NULL is a no-op.
///
/// # Safety
/// `session` is NULL or a live session no other thread is using, not used
/// after this call.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_session_free(session: *mut wasmchord_session) {
    crate::boundary::boundary((), || {
        // SAFETY: the header's contract.
        unsafe { ptr::free_box(session) }
    })
}

fn lock(
    s: &wasmchord_session,
) -> Result<std::sync::MutexGuard<'_, Session<'static, AnyBackend>>, CapiError> {
    match s.state.try_lock() {
        Ok(g) => Ok(g),
        // A panic inside a previous call: the cache may be half-written, so
        // start the sequence over rather than refuse forever.
        Err(TryLockError::Poisoned(p)) => {
            let mut g = p.into_inner();
            g.clear();
            Ok(g)
        }
        Err(TryLockError::WouldBlock) => Err(CapiError::Busy),
    }
}

/// Forgets the session's sequence (empties its KV cache).
///
/// # Safety
/// `session` is a live session.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_session_clear(
    session: *mut wasmchord_session,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract.
        let s = unsafe { ptr::handle(session, "session") }?;
        lock(s)?.clear();
        Ok(())
    })
}

/// Writes the number of positions in the session's cache to `*n_past`.
///
/// # Safety
/// `session` is a live session; `n_past` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_session_n_past(
    session: *const wasmchord_session,
    n_past: *mut usize,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract.
        let s = unsafe { ptr::handle(session, "session") }?;
        let n = lock(s)?.n_past();
        // SAFETY: the header's contract.
        unsafe { ptr::write(n_past, n, "n_past") }
    })
}

/// Asks the session's running generation to stop before its next token
/// (it then returns `WASMCHORD_OK` with stop reason
/// `WASMCHORD_STOP_CANCELLED`). Safe to call from any thread, at any time,
/// concurrently with other calls on the session. If no generation is
/// running, the next one stops at once; the request is consumed when a
/// generation returns.
///
/// # Safety
/// `session` is a live session.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_session_abort(
    session: *const wasmchord_session,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract.
        let s = unsafe { ptr::handle(session, "session") }?;
        s.current_cancel().cancel();
        Ok(())
    })
}

/// Reads a params struct into the runtime's form.
///
/// # Safety
/// `p`'s pointers follow the header's contract.
unsafe fn to_runtime(p: &wasmchord_generate_params) -> Result<GenerateParams, CapiError> {
    // SAFETY: forwarded contract.
    let stops = unsafe { ptr::slice(p.stop, p.n_stop, "params->stop") }?;
    let stop = stops
        .iter()
        // SAFETY: forwarded contract (each entry a NUL-terminated string).
        .map(|&s| unsafe { ptr::c_str(s, "params->stop[i]") }.map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    // SAFETY: forwarded contract.
    let bias = unsafe { ptr::slice(p.logit_bias, p.n_logit_bias, "params->logit_bias") }?;
    Ok(GenerateParams {
        max_tokens: p.max_tokens as usize,
        stop,
        sampler: SamplerConfig {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
            min_p: p.min_p,
            typical_p: p.typical_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n as usize,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            logit_bias: bias.iter().map(|b| (b.token, b.bias)).collect(),
            seed: p.seed,
        },
    })
}

/// Feeds `n_prompt` prompt tokens (reusing the longest prefix already in
/// the session's cache, so a chat can re-send the whole conversation) and
/// generates, calling `on_text` with each piece of text. `params` may be
/// NULL (defaults); `on_text` may be NULL; `stats` may be NULL, or has its
/// `size` set by the caller and is filled on success.
///
/// Stopping (end of generation, `max_tokens`, a stop text, a full context,
/// the callback returning false, `wasmchord_session_abort`) is a success:
/// the reason is in `stats->stop`. A prompt that does not fit the context
/// fails with `WASMCHORD_CONTEXT_FULL`.
///
/// # Safety
/// `session` is a live session; `prompt` points to `n_prompt` ids;
/// `params` and `stats` are NULL or valid; `on_text` follows the callback
/// contract.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_generate(
    session: *mut wasmchord_session,
    prompt: *const u32,
    n_prompt: usize,
    params: *const wasmchord_generate_params,
    on_text: wasmchord_text_fn,
    user_data: *mut c_void,
    stats: *mut wasmchord_generation,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let s = unsafe { ptr::handle(session, "session") }?;
        // SAFETY: as above.
        let prompt = unsafe { ptr::slice(prompt, n_prompt, "prompt") }?;
        // SAFETY: as above.
        let p = unsafe { ptr::read_params(params, default_generate_params(), "params") }?;
        // SAFETY: as above.
        let gp = unsafe { to_runtime(&p) }?;
        if !stats.is_null() {
            // Check the size before any work, so a bad struct fails early.
            // SAFETY: as above.
            unsafe { ptr::check_size(stats, "stats") }?;
        }
        let mut guard = lock(s)?;
        let cancel = s.current_cancel();
        let mut emit = |text: &str| match on_text {
            // SAFETY: the caller's callback with its own user data; the text
            // outlives the call.
            Some(cb) => unsafe { cb(text.as_ptr().cast(), text.len(), user_data) },
            None => true,
        };
        let result = generate(
            &mut guard,
            &s.model.tokenizer,
            prompt,
            &gp,
            Some(&cancel),
            &mut emit,
        );
        // The abort request is consumed by this generation (replaced while
        // the session is still locked, so no other generation sees it).
        s.reset_cancel();
        drop(guard);
        let g = result?;
        let stop = match g.stop {
            StopReason::EndOfGeneration => wasmchord_stop_reason::WASMCHORD_STOP_EOG,
            StopReason::MaxTokens => wasmchord_stop_reason::WASMCHORD_STOP_MAX_TOKENS,
            StopReason::StopText => wasmchord_stop_reason::WASMCHORD_STOP_TEXT,
            StopReason::ContextFull => wasmchord_stop_reason::WASMCHORD_STOP_CONTEXT_FULL,
            StopReason::Cancelled => wasmchord_stop_reason::WASMCHORD_STOP_CANCELLED,
        };
        let value = wasmchord_generation {
            size: size_of::<wasmchord_generation>(),
            stop,
            n_tokens: u32::try_from(g.tokens.len()).unwrap_or(u32::MAX),
            n_prompt_eval: u32::try_from(g.prompt_eval_tokens).unwrap_or(u32::MAX),
            prompt_ms: g.prompt_time.as_secs_f64() * 1e3,
            gen_ms: g.gen_time.as_secs_f64() * 1e3,
        };
        if !stats.is_null() {
            // SAFETY: as above.
            unsafe { ptr::write_sized(stats, value, "stats") }?;
        }
        Ok(())
    })
}

impl wasmchord_session {
    /// The abort flag of the current (or next) generation.
    fn current_cancel(&self) -> CancelToken {
        match self.cancel.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Starts the next generation with a fresh flag.
    fn reset_cancel(&self) {
        let fresh = CancelToken::new();
        match self.cancel.lock() {
            Ok(mut c) => *c = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
    }
}
