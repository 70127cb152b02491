//! Loading models, model information, the backend choice.

use crate::boundary::call;
use crate::error::{wasmchord_result, CapiError};
use crate::ptr::{self, Versioned};
use std::ffi::{c_char, c_void, CString};
use std::mem::size_of;
use std::sync::Arc;
use wasm_chord_core::backend::Backend;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::Model;
use wasm_chord_runtime::{AnyBackend, Device};

/// Load progress: called with a fraction in `[0, 1]` after the embeddings
/// and after each transformer block is uploaded (the last call is 1).
/// Return false to cancel the load (it then fails with
/// `WASMCHORD_CANCELLED`).
#[allow(non_camel_case_types)]
pub type wasmchord_progress_fn =
    Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> bool>;

/// How to load a model. Start from `wasmchord_model_params_default()`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_model_params {
    /// `sizeof(wasmchord_model_params)`.
    pub size: usize,
    /// The device: NULL (= `"auto"`), `"auto"`, `"cpu"`, `"webgpu"`,
    /// `"cuda[:N]"`, `"metal[:N]"`, `"candle-cpu"`. `"auto"` takes CUDA,
    /// then Metal, then a hardware WebGPU adapter, then the CPU, among the
    /// backends built into the library. A device not built in, or without
    /// hardware, fails with `WASMCHORD_UNSUPPORTED_BACKEND`.
    pub backend: *const c_char,
    /// Optional progress callback (NULL: none).
    pub progress: wasmchord_progress_fn,
    /// Passed to `progress` unchanged.
    pub progress_user_data: *mut c_void,
}

impl Versioned for wasmchord_model_params {
    const MIN_SIZE: usize = size_of::<Self>();
}

/// Facts about a loaded model.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_model_info {
    /// `sizeof(wasmchord_model_info)`, set by the caller before the call.
    pub size: usize,
    /// `general.architecture` (`"llama"`, `"gemma3"`, ...); valid while the
    /// model lives.
    pub arch: *const c_char,
    /// The backend the weights live on (`"cpu"`, `"webgpu"`, `"cuda"`, ...);
    /// valid while the model lives.
    pub backend: *const c_char,
    /// Tokens in the vocabulary.
    pub n_vocab: u32,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// Embedding width.
    pub n_embd: u32,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Query heads.
    pub n_head: u32,
    /// Key/value heads.
    pub n_head_kv: u32,
    /// Beginning-of-sequence token, or -1.
    pub bos: i32,
    /// End-of-sequence token, or -1.
    pub eos: i32,
}

impl Versioned for wasmchord_model_info {
    const MIN_SIZE: usize = size_of::<Self>();
}

/// The shared part of a model: sessions hold it too, so a model handle can
/// be freed while sessions still run.
pub(crate) struct ModelInner {
    pub model: Arc<Model<AnyBackend>>,
    pub tokenizer: Tokenizer,
    pub file: Arc<GgufFile>,
    arch: CString,
    backend: CString,
}

/// A loaded model. Immutable and thread-safe: any number of threads may use
/// one model at once (tokenize, create sessions, ...).
#[allow(non_camel_case_types)]
pub struct wasmchord_model {
    pub(crate) inner: Arc<ModelInner>,
}

/// The default model params (backend `"auto"`, no progress callback).
#[no_mangle]
pub extern "C" fn wasmchord_model_params_default() -> wasmchord_model_params {
    crate::boundary::boundary(default_params(), default_params)
}

fn default_params() -> wasmchord_model_params {
    wasmchord_model_params {
        size: size_of::<wasmchord_model_params>(),
        backend: std::ptr::null(),
        progress: None,
        progress_user_data: std::ptr::null_mut(),
    }
}

/// Opens the backend a name asks for (`None` is `"auto"`).
pub(crate) fn open_backend(name: Option<&str>) -> Result<AnyBackend, CapiError> {
    let device: Device = name.unwrap_or("auto").parse().map_err(
        |e: wasm_chord_runtime::device::UnknownDevice| CapiError::Backend(e.to_string()),
    )?;
    AnyBackend::open(device).map_err(|e| CapiError::Backend(e.to_string()))
}

fn load(
    file: GgufFile,
    backend: AnyBackend,
    params: &wasmchord_model_params,
) -> Result<wasmchord_model, CapiError> {
    let file = Arc::new(file);
    let tokenizer = Tokenizer::from_metadata(file.metadata())?;
    let (cb, ud) = (params.progress, params.progress_user_data);
    let mut progress = |f: f32| match cb {
        // SAFETY: the caller's callback with its own user data, per the
        // header's callback contract.
        Some(cb) => unsafe { cb(f, ud) },
        None => true,
    };
    let name = CString::new(backend.name()).unwrap_or_default();
    let model = Model::load_with_progress(Arc::clone(&file), Arc::new(backend), &mut progress)?;
    let arch = CString::new(model.config.arch.name()).unwrap_or_default();
    Ok(wasmchord_model {
        inner: Arc::new(ModelInner {
            model: Arc::new(model),
            tokenizer,
            file,
            arch,
            backend: name,
        }),
    })
}

/// Loads a GGUF model from a file (memory-mapped).
///
/// `params` may be NULL (defaults). On success `*out` receives a model to
/// release with `wasmchord_model_free`.
///
/// # Safety
/// `path` is a NUL-terminated UTF-8 path; `params` is NULL or a valid
/// params struct; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_model_load_file(
    path: *const c_char,
    params: *const wasmchord_model_params,
    out: *mut *mut wasmchord_model,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let path = unsafe { ptr::c_str(path, "path") }?;
        // SAFETY: as above.
        let params = unsafe { ptr::read_params(params, default_params(), "params") }?;
        if out.is_null() {
            return Err(CapiError::Null("out"));
        }
        // SAFETY: as above.
        let backend = open_backend(unsafe { ptr::opt_c_str(params.backend, "params->backend") }?)?;
        let model = load(GgufFile::open(path)?, backend, &params)?;
        // SAFETY: checked non-NULL; writable by the contract.
        unsafe { ptr::write(out, Box::into_raw(Box::new(model)), "out") }
    })
}

/// Loads a GGUF model from memory. The bytes are copied: the caller may
/// free `data` when the call returns.
///
/// # Safety
/// `data` points to `len` readable bytes; otherwise as
/// `wasmchord_model_load_file`.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_model_load_memory(
    data: *const u8,
    len: usize,
    params: *const wasmchord_model_params,
    out: *mut *mut wasmchord_model,
) -> wasmchord_result {
    call(|| {
        if data.is_null() {
            return Err(CapiError::Null("data"));
        }
        // SAFETY: the header's contract for these arguments.
        let bytes = unsafe { ptr::slice(data, len, "data") }?;
        // SAFETY: as above.
        let params = unsafe { ptr::read_params(params, default_params(), "params") }?;
        if out.is_null() {
            return Err(CapiError::Null("out"));
        }
        // SAFETY: as above.
        let backend = open_backend(unsafe { ptr::opt_c_str(params.backend, "params->backend") }?)?;
        let model = load(GgufFile::from_bytes(bytes.to_vec())?, backend, &params)?;
        // SAFETY: checked non-NULL; writable by the contract.
        unsafe { ptr::write(out, Box::into_raw(Box::new(model)), "out") }
    })
}

/// Releases a model. NULL is a no-op. Sessions made from it stay valid
/// (they share the weights) until they are freed.
///
/// # Safety
/// `model` is NULL or a live model handle, not used after this call.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_model_free(model: *mut wasmchord_model) {
    crate::boundary::boundary((), || {
        // SAFETY: the header's contract.
        unsafe { ptr::free_box(model) }
    })
}

/// Fills `*info` (whose `size` the caller set to `sizeof(wasmchord_model_info)`).
///
/// # Safety
/// `model` is a live model handle; `info` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_model_get_info(
    model: *const wasmchord_model,
    info: *mut wasmchord_model_info,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract.
        let m = &unsafe { ptr::handle(model, "model") }?.inner;
        let c = &m.model.config;
        let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let id = |v: Option<u32>| v.and_then(|v| i32::try_from(v).ok()).unwrap_or(-1);
        let value = wasmchord_model_info {
            size: size_of::<wasmchord_model_info>(),
            arch: m.arch.as_ptr(),
            backend: m.backend.as_ptr(),
            n_vocab: u(c.n_vocab),
            n_ctx_train: u(c.n_ctx_train),
            n_embd: u(c.n_embd),
            n_layer: u(c.n_layer),
            n_head: u(c.n_head),
            n_head_kv: u(c.n_head_kv),
            bos: id(m.tokenizer.bos()),
            eos: id(m.tokenizer.eos()),
        };
        // SAFETY: the header's contract.
        unsafe { ptr::write_sized(info, value, "info") }
    })
}

/// Whether `token` ends generation for this model (EOS, EOT, ...): writes
/// the answer to `*out`.
///
/// # Safety
/// `model` is a live model handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_model_token_is_eog(
    model: *const wasmchord_model,
    token: u32,
    out: *mut bool,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract.
        let m = &unsafe { ptr::handle(model, "model") }?.inner;
        // SAFETY: the header's contract.
        unsafe { ptr::write(out, m.tokenizer.is_eog(token), "out") }
    })
}

/// Checks whether a backend can run here: `WASMCHORD_OK` when it is built
/// into this library and its device opens (`"auto"` and `"cpu"` always do;
/// also `"webgpu"`, `"cuda[:N]"`, `"metal[:N]"`, `"candle-cpu"` in builds
/// with those features), `WASMCHORD_UNSUPPORTED_BACKEND` otherwise, with the
/// reason in `wasmchord_last_error_message`.
///
/// # Safety
/// `name` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_backend_available(name: *const c_char) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract.
        open_backend(Some(unsafe { ptr::c_str(name, "name") }?)).map(drop)
    })
}

/// Sets the number of CPU threads, process-wide. Call it once, before any
/// model work: afterwards the pool exists and this fails with
/// `WASMCHORD_BACKEND`. Without it, one thread per core.
#[no_mangle]
pub extern "C" fn wasmchord_set_threads(n_threads: u32) -> wasmchord_result {
    call(|| {
        if n_threads == 0 {
            return Err(CapiError::Params("n_threads must be positive".into()));
        }
        CpuBackend::set_threads(n_threads as usize).map_err(CapiError::Environment)
    })
}
