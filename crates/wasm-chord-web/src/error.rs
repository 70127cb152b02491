//! Errors of the web surface, each with a stable string code that the
//! JavaScript side finds as `error.code`.

use wasm_chord_core::gguf::GgufError;
use wasm_chord_core::tokenizer::TokenizerError;
use wasm_chord_runtime::chat_template::TemplateError;
use wasm_chord_runtime::sampler::SamplerError;
use wasm_chord_runtime::RuntimeError;

/// Everything that can go wrong in a call from JavaScript.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// An argument or option is missing, of the wrong type or out of range.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument or option.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bytes are not a valid GGUF file (or end too early).
    #[error("not a valid model file: {0}")]
    BadModel(#[from] GgufError),
    /// The file is valid GGUF but this runtime cannot run it.
    #[error("unsupported model: {0}")]
    UnsupportedModel(RuntimeError),
    /// The model does not fit into wasm32 linear memory (4 GiB at most).
    #[error("model too large for wasm memory: {0}")]
    ModelTooLarge(String),
    /// The downloaded or cached bytes do not match the expected digest or size.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The tokenizer rejected the input or the model's vocabulary.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The chat template failed to render (or the model has none).
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A sampling option is invalid.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// The prompt plus the generation do not fit into the context.
    #[error(transparent)]
    ContextFull(RuntimeError),
    /// The operation was cancelled (AbortSignal or a progress callback).
    #[error("aborted")]
    Aborted,
    /// The generation was replaced by a newer one on the same model.
    #[error("a newer generation started on this model; this one is over")]
    Superseded,
    /// Any other failure of the runtime or the backend.
    #[error(transparent)]
    Runtime(RuntimeError),
    /// A backend that cannot run here (no WebGPU adapter, say).
    #[error("backend unavailable: {0}")]
    UnsupportedBackend(String),
    /// An earlier call panicked; this instance's state cannot be trusted any
    /// more (the JavaScript wrapper moves on to a fresh instance).
    #[error("this wasm-chord instance failed earlier ({0}); use a new instance")]
    Poisoned(String),
}

impl WebError {
    /// The stable code JavaScript sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Self::BadModel(_) => "BAD_MODEL",
            Self::UnsupportedModel(_) => "UNSUPPORTED_MODEL",
            Self::ModelTooLarge(_) => "MODEL_TOO_LARGE",
            Self::Integrity(_) => "INTEGRITY",
            Self::Tokenizer(_) => "TOKENIZER",
            Self::Template(_) => "TEMPLATE",
            Self::Sampler(_) => "INVALID_ARGUMENT",
            Self::ContextFull(_) => "CONTEXT_FULL",
            Self::Aborted => "ABORTED",
            Self::Superseded => "SUPERSEDED",
            Self::Runtime(_) => "RUNTIME",
            Self::UnsupportedBackend(_) => "UNSUPPORTED_BACKEND",
            Self::Poisoned(_) => "POISONED",
        }
    }

    /// Shorthand for [`WebError::InvalidArgument`].
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

impl From<RuntimeError> for WebError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Gguf(g) => Self::BadModel(g),
            RuntimeError::Sampler(s) => Self::Sampler(s),
            RuntimeError::Tokenizer(t) => Self::Tokenizer(t),
            RuntimeError::Cancelled => Self::Aborted,
            e @ (RuntimeError::UnsupportedArchitecture(_)
            | RuntimeError::MissingTensor(_)
            | RuntimeError::TensorShape { .. }
            | RuntimeError::UnsupportedFeature(_)) => Self::UnsupportedModel(e),
            e @ RuntimeError::ContextFull { .. } => Self::ContextFull(e),
            e => Self::Runtime(e),
        }
    }
}

/// Results of the web surface.
pub type WebResult<T> = Result<T, WebError>;

impl From<WebError> for wasm_bindgen::JsValue {
    /// A JavaScript `Error` named `WasmChordError` with a `code` property.
    fn from(e: WebError) -> Self {
        let err = js_sys::Error::new(&e.to_string());
        err.set_name("WasmChordError");
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_map_to_codes_callers_can_act_on() {
        let cases: Vec<(RuntimeError, &str)> = vec![
            (RuntimeError::Cancelled, "ABORTED"),
            (
                RuntimeError::UnsupportedArchitecture("bert".into()),
                "UNSUPPORTED_MODEL",
            ),
            (
                RuntimeError::ContextFull {
                    needed: 9,
                    capacity: 8,
                },
                "CONTEXT_FULL",
            ),
            (RuntimeError::InvalidToken { id: 7, n_vocab: 3 }, "RUNTIME"),
        ];
        for (e, code) in cases {
            assert_eq!(WebError::from(e).code(), code);
        }
    }
}
