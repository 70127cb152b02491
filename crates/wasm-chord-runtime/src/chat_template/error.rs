//! Errors of chat-template rendering.

use thiserror::Error;

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, Error)]
pub enum TemplateError {
    /// The GGUF file has no `tokenizer.chat_template` (pick a built-in one).
    #[error("the model has no tokenizer.chat_template; choose a built-in template ({0})")]
    NoTemplate(&'static str),
    /// No built-in template has this name.
    #[error("unknown built-in template `{name}`; known: {known}")]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: &'static str,
    },
    /// The template source is longer than the limit.
    #[error("template source is {len} bytes, more than the limit of {max}")]
    SourceTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The template does not parse.
    #[error("template syntax error: {0}")]
    Syntax(#[source] minijinja::Error),
    /// The template called `raise_exception(message)`.
    #[error("template raised: {0}")]
    Raised(String),
    /// The template ran out of fuel (too many steps: a loop bomb).
    #[error("template exceeded its step budget ({0} units of fuel)")]
    OutOfFuel(u64),
    /// The rendered prompt grew past the output limit.
    #[error("rendered prompt exceeds the limit of {0} bytes")]
    OutputTooLarge(usize),
    /// A message is not a JSON object with a string `role`.
    #[error("message {index} is invalid: {reason}")]
    BadMessage {
        /// Index in the message list.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Any other evaluation error (undefined variable used as a value,
    /// type errors, recursion limit, ...).
    #[error("template render error: {0}")]
    Render(#[source] minijinja::Error),
}
