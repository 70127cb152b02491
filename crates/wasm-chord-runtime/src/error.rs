//! Errors of the runtime layer.

use wasm_chord_core::backend::BackendError;
use wasm_chord_core::gguf::GgufError;

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The file could not be read or its metadata is missing or mistyped.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A sampler setting is invalid.
    #[error(transparent)]
    Sampler(#[from] crate::sampler::SamplerError),
    /// Tokenizing or detokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] wasm_chord_core::tokenizer::TokenizerError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// `general.architecture` names an architecture we do not implement.
    #[error("unsupported architecture `{0}` (supported: {list})", list = crate::config::SUPPORTED.join(", "))]
    UnsupportedArchitecture(String),
    /// A tensor the architecture needs is absent.
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    /// A tensor has another shape than the configuration implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Shape the configuration implies (ggml order).
        expected: Vec<u64>,
        /// Shape in the file.
        found: Vec<u64>,
    },
    /// A metadata value is out of the range the model can use.
    #[error("metadata `{key}`: {reason}")]
    BadConfig {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A feature of the file that this runtime does not implement yet.
    #[error("unsupported model feature: {0}")]
    UnsupportedFeature(String),
    /// The KV cache has no room for the tokens.
    #[error("context is full: {needed} positions needed, capacity {capacity}")]
    ContextFull {
        /// Positions the call would need.
        needed: usize,
        /// The session's capacity.
        capacity: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    InvalidToken {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// The caller cancelled (a progress callback returned `false`).
    #[error("cancelled")]
    Cancelled,
    /// A call with no tokens, or more than the session's batch size.
    #[error("batch of {len} tokens: must be between 1 and {max}")]
    BadBatch {
        /// Tokens given.
        len: usize,
        /// The session's maximum.
        max: usize,
    },
}

/// Shorthand for runtime results.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
