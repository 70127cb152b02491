//! The subcommands, one module each, plus what they share.

pub mod bench;
pub mod chat;
pub mod eval;
pub mod generate;
pub mod inspect;
pub mod model_arg;
pub mod perplexity;
pub mod pull;
pub mod synth;
pub mod template;
pub mod tokenize;

/// What every subcommand returns.
pub type CmdResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
