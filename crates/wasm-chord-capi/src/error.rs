//! Result codes, the mapping from the Rust error enums, and the thread-local
//! last-error message.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};
use wasm_chord_core::gguf::GgufError;
use wasm_chord_core::tokenizer::TokenizerError;
use wasm_chord_runtime::chat_template::TemplateError;
use wasm_chord_runtime::RuntimeError;

/// The result of every fallible call. Numbers are part of the ABI: they are
/// never changed or reused, and new codes are only appended. Treat any code
/// you do not know as a failure.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wasmchord_result {
    /// Success.
    WASMCHORD_OK = 0,
    /// A required pointer argument was NULL.
    WASMCHORD_NULL_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    WASMCHORD_INVALID_UTF8 = 2,
    /// Reading a file failed (missing, unreadable, ...).
    WASMCHORD_IO = 3,
    /// The bytes are not a well-formed GGUF file, or its metadata is
    /// missing or mistyped.
    WASMCHORD_INVALID_GGUF = 4,
    /// The model's architecture is not implemented.
    WASMCHORD_UNSUPPORTED_ARCHITECTURE = 5,
    /// A token id is outside the vocabulary.
    WASMCHORD_INVALID_TOKEN = 6,
    /// The session's context has no room for the tokens.
    WASMCHORD_CONTEXT_FULL = 7,
    /// An output buffer is too small; the needed size was written to the
    /// size out-parameter. Retry with a larger buffer.
    WASMCHORD_BUFFER_TOO_SMALL = 8,
    /// The caller cancelled (a progress callback returned false).
    WASMCHORD_CANCELLED = 9,
    /// A bug: the library panicked. The call had no effect the caller can
    /// rely on; the handles it was given may be freed but not used further.
    WASMCHORD_PANIC = 10,
    /// A parameter is out of range, or a params struct has a `size` this
    /// library does not know.
    WASMCHORD_INVALID_PARAMS = 11,
    /// The backend asked for is unknown, not built into this library, or
    /// has no device here.
    WASMCHORD_UNSUPPORTED_BACKEND = 12,
    /// The GGUF is well-formed but not a usable model (missing tensor,
    /// wrong shape, out-of-range hyper-parameter, unsupported feature).
    WASMCHORD_INVALID_MODEL = 13,
    /// The model's tokenizer metadata is unusable.
    WASMCHORD_TOKENIZER = 14,
    /// The compute backend failed (allocation, kernel error).
    WASMCHORD_BACKEND = 15,
    /// The model has no chat template of its own.
    WASMCHORD_NO_CHAT_TEMPLATE = 16,
    /// A chat template failed to parse or render (syntax error, unknown
    /// built-in name, `raise_exception`, step or size limit, bad message).
    WASMCHORD_CHAT_TEMPLATE = 17,
    /// The session is in use by another call (another thread, or a callback
    /// re-entering the session it was called from).
    WASMCHORD_SESSION_BUSY = 18,
    /// An error this version of the ABI has no code for.
    WASMCHORD_INTERNAL = 19,
}

use wasmchord_result as R;

impl wasmchord_result {
    /// Every code, in numeric order.
    pub const ALL: [Self; 20] = [
        R::WASMCHORD_OK,
        R::WASMCHORD_NULL_ARGUMENT,
        R::WASMCHORD_INVALID_UTF8,
        R::WASMCHORD_IO,
        R::WASMCHORD_INVALID_GGUF,
        R::WASMCHORD_UNSUPPORTED_ARCHITECTURE,
        R::WASMCHORD_INVALID_TOKEN,
        R::WASMCHORD_CONTEXT_FULL,
        R::WASMCHORD_BUFFER_TOO_SMALL,
        R::WASMCHORD_CANCELLED,
        R::WASMCHORD_PANIC,
        R::WASMCHORD_INVALID_PARAMS,
        R::WASMCHORD_UNSUPPORTED_BACKEND,
        R::WASMCHORD_INVALID_MODEL,
        R::WASMCHORD_TOKENIZER,
        R::WASMCHORD_BACKEND,
        R::WASMCHORD_NO_CHAT_TEMPLATE,
        R::WASMCHORD_CHAT_TEMPLATE,
        R::WASMCHORD_SESSION_BUSY,
        R::WASMCHORD_INTERNAL,
    ];

    /// The code's name, as in the header.
    pub fn name(self) -> &'static CStr {
        match self {
            R::WASMCHORD_OK => c"WASMCHORD_OK",
            R::WASMCHORD_NULL_ARGUMENT => c"WASMCHORD_NULL_ARGUMENT",
            R::WASMCHORD_INVALID_UTF8 => c"WASMCHORD_INVALID_UTF8",
            R::WASMCHORD_IO => c"WASMCHORD_IO",
            R::WASMCHORD_INVALID_GGUF => c"WASMCHORD_INVALID_GGUF",
            R::WASMCHORD_UNSUPPORTED_ARCHITECTURE => c"WASMCHORD_UNSUPPORTED_ARCHITECTURE",
            R::WASMCHORD_INVALID_TOKEN => c"WASMCHORD_INVALID_TOKEN",
            R::WASMCHORD_CONTEXT_FULL => c"WASMCHORD_CONTEXT_FULL",
            R::WASMCHORD_BUFFER_TOO_SMALL => c"WASMCHORD_BUFFER_TOO_SMALL",
            R::WASMCHORD_CANCELLED => c"WASMCHORD_CANCELLED",
            R::WASMCHORD_PANIC => c"WASMCHORD_PANIC",
            R::WASMCHORD_INVALID_PARAMS => c"WASMCHORD_INVALID_PARAMS",
            R::WASMCHORD_UNSUPPORTED_BACKEND => c"WASMCHORD_UNSUPPORTED_BACKEND",
            R::WASMCHORD_INVALID_MODEL => c"WASMCHORD_INVALID_MODEL",
            R::WASMCHORD_TOKENIZER => c"WASMCHORD_TOKENIZER",
            R::WASMCHORD_BACKEND => c"WASMCHORD_BACKEND",
            R::WASMCHORD_NO_CHAT_TEMPLATE => c"WASMCHORD_NO_CHAT_TEMPLATE",
            R::WASMCHORD_CHAT_TEMPLATE => c"WASMCHORD_CHAT_TEMPLATE",
            R::WASMCHORD_SESSION_BUSY => c"WASMCHORD_SESSION_BUSY",
            R::WASMCHORD_INTERNAL => c"WASMCHORD_INTERNAL",
        }
    }

    /// The code with this number, if this version knows it.
    pub fn from_code(n: c_int) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| *c as c_int == n)
    }
}

/// Why a C API call failed, before it becomes a [`wasmchord_result`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum CapiError {
    /// A required pointer was NULL.
    #[error("argument `{0}` is NULL")]
    Null(&'static str),
    /// A string was not UTF-8.
    #[error("argument `{0}` is not valid UTF-8")]
    Utf8(&'static str),
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Params(String),
    /// An output buffer is too small.
    #[error("buffer `{name}` holds {capacity}, {needed} needed")]
    BufferTooSmall {
        /// The argument.
        name: &'static str,
        /// Its capacity.
        capacity: usize,
        /// What the result needs.
        needed: usize,
    },
    /// The backend is unknown, not built in, or has no device.
    #[error("{0}")]
    Backend(String),
    /// The session is in use.
    #[error("the session is in use by another call")]
    Busy,
    /// Reading or parsing the GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Loading or running the model failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A chat template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A thread-pool or other environment setting failed.
    #[error("{0}")]
    Environment(String),
}

fn gguf_code(e: &GgufError) -> wasmchord_result {
    match e {
        GgufError::Io(_) => R::WASMCHORD_IO,
        _ => R::WASMCHORD_INVALID_GGUF,
    }
}

fn tokenizer_code(e: &TokenizerError) -> wasmchord_result {
    match e {
        TokenizerError::InvalidTokenId(_) => R::WASMCHORD_INVALID_TOKEN,
        TokenizerError::Metadata(g) => gguf_code(g),
        _ => R::WASMCHORD_TOKENIZER,
    }
}

impl CapiError {
    /// The result code of this error.
    pub(crate) fn code(&self) -> wasmchord_result {
        match self {
            Self::Null(_) => R::WASMCHORD_NULL_ARGUMENT,
            Self::Utf8(_) => R::WASMCHORD_INVALID_UTF8,
            Self::Params(_) => R::WASMCHORD_INVALID_PARAMS,
            Self::BufferTooSmall { .. } => R::WASMCHORD_BUFFER_TOO_SMALL,
            Self::Backend(_) => R::WASMCHORD_UNSUPPORTED_BACKEND,
            Self::Busy => R::WASMCHORD_SESSION_BUSY,
            Self::Gguf(e) => gguf_code(e),
            Self::Tokenizer(e) => tokenizer_code(e),
            Self::Template(TemplateError::NoTemplate(_)) => R::WASMCHORD_NO_CHAT_TEMPLATE,
            Self::Template(_) => R::WASMCHORD_CHAT_TEMPLATE,
            Self::Environment(_) => R::WASMCHORD_BACKEND,
            Self::Runtime(e) => match e {
                RuntimeError::Gguf(g) => gguf_code(g),
                RuntimeError::Sampler(_) | RuntimeError::BadBatch { .. } => {
                    R::WASMCHORD_INVALID_PARAMS
                }
                RuntimeError::Tokenizer(t) => tokenizer_code(t),
                RuntimeError::Backend(_) => R::WASMCHORD_BACKEND,
                RuntimeError::UnsupportedArchitecture(_) => R::WASMCHORD_UNSUPPORTED_ARCHITECTURE,
                RuntimeError::MissingTensor(_)
                | RuntimeError::TensorShape { .. }
                | RuntimeError::BadConfig { .. }
                | RuntimeError::UnsupportedFeature(_) => R::WASMCHORD_INVALID_MODEL,
                RuntimeError::ContextFull { .. } => R::WASMCHORD_CONTEXT_FULL,
                RuntimeError::InvalidToken { .. } => R::WASMCHORD_INVALID_TOKEN,
                RuntimeError::Cancelled => R::WASMCHORD_CANCELLED,
                _ => R::WASMCHORD_INTERNAL,
            },
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `msg` as this thread's last error message.
pub(crate) fn set_last_error(msg: String) {
    // Interior NULs would truncate the C string; they cannot be useful.
    let msg = msg.replace('\0', "\u{FFFD}");
    LAST_ERROR.with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            *s = msg;
        }
    });
}

/// A copy of this thread's last error message.
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|slot| slot.try_borrow().map(|s| s.clone()).unwrap_or_default())
}

/// The name of a result code (`"WASMCHORD_CONTEXT_FULL"`), a static
/// NUL-terminated string; `"WASMCHORD_UNKNOWN"` for a number this version
/// does not know. Takes the code as an `int` so that any number is safe.
#[no_mangle]
pub extern "C" fn wasmchord_result_name(code: c_int) -> *const c_char {
    crate::boundary::boundary(c"WASMCHORD_PANIC".as_ptr(), || {
        wasmchord_result::from_code(code)
            .map_or(c"WASMCHORD_UNKNOWN", wasmchord_result::name)
            .as_ptr()
    })
}
