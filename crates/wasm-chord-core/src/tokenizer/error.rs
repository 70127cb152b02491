//! Errors of the tokenizer layer.

use crate::gguf::GgufError;

/// Errors building a tokenizer from GGUF metadata or using it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A required metadata key is missing or has the wrong type.
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error("unknown tokenizer model `{0}` (known: llama, gpt2, bert, t5)")]
    UnknownModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unknown pre-tokenizer `{0}` in tokenizer.ggml.pre (see docs/tokenizer.md for the supported list)")]
    UnknownPreTokenizer(String),
    /// The vocabulary has no tokens.
    #[error("the vocabulary is empty")]
    EmptyVocab,
    /// The vocabulary is larger than token ids can address.
    #[error("the vocabulary has {0} tokens, more than a u32 token id can address")]
    VocabTooLarge(usize),
    /// A per-token array (`scores`, `token_type`) is shorter than the token list.
    #[error("metadata array `{key}` has {found} entries, expected at least {expected}")]
    ArrayTooShort {
        /// The metadata key.
        key: &'static str,
        /// Number of tokens.
        expected: usize,
        /// Number of entries found.
        found: usize,
    },
    /// A special token id in the metadata is outside the vocabulary.
    #[error("special token `{key}` = {id} is outside the vocabulary of {n_vocab} tokens")]
    SpecialIdOutOfRange {
        /// The metadata key.
        key: &'static str,
        /// The id found.
        id: u64,
        /// Number of tokens in the vocabulary.
        n_vocab: usize,
    },
    /// A token id passed by the caller is outside the vocabulary.
    #[error("token id {0} is outside the vocabulary")]
    InvalidTokenId(u32),
    /// A pre-tokenizer regular expression failed to compile (a bug, not an input error).
    #[error("pre-tokenizer regex `{pattern}` failed to compile: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// The UGM precompiled character map is malformed.
    #[error("malformed tokenizer.ggml.precompiled_charsmap: {0}")]
    BadCharsMap(&'static str),
    /// `add_special` was requested but the vocabulary has no such token.
    #[error("the model asks to add a {0} token but defines none")]
    MissingSpecialToken(&'static str),
}
