//! Errors of the sampling chain.

use thiserror::Error;

/// Why a sampler could not be built or could not pick a token.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplerError {
    /// A float setting is NaN or infinite where a finite value is required.
    #[error("sampler setting `{name}` must be finite, got {value}")]
    NotFinite {
        /// The setting's name in [`SamplerConfig`](super::SamplerConfig).
        name: &'static str,
        /// The value given.
        value: f32,
    },
    /// A setting is outside its allowed range.
    #[error("sampler setting `{name}` = {value} is outside {range}")]
    OutOfRange {
        /// The setting's name in [`SamplerConfig`](super::SamplerConfig).
        name: &'static str,
        /// The value given.
        value: f32,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// The logits slice is empty.
    #[error("no logits to sample from")]
    EmptyLogits,
    /// A logit is NaN or +infinity (-infinity is allowed and means "never").
    #[error("logit of token {token} is {value}, not a finite number")]
    BadLogit {
        /// The token whose logit is bad.
        token: u32,
        /// The value found.
        value: f32,
    },
    /// A logit bias names a token outside the vocabulary of the logits.
    #[error("logit bias for token {token} but the vocabulary has {n_vocab} tokens")]
    BiasOutOfRange {
        /// The token named by the bias.
        token: u32,
        /// The number of logits passed to the sampler.
        n_vocab: usize,
    },
    /// Every token was excluded (by `-inf` logits or biases, or by a constraint).
    #[error("every token was excluded; nothing left to sample")]
    NoCandidates,
    /// The vocabulary has more tokens than a `u32` can name.
    #[error("vocabulary of {0} tokens is too large")]
    VocabTooLarge(usize),
}
