//! # wasm-chord-runtime
//!
//! The model layer of wasm-chord:
//!
//! - [`config`]: typed model configurations read from GGUF metadata, one per
//!   architecture (llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3);
//! - [`Model`]: the weights of a model uploaded once to a backend, shared
//!   read-only between sessions;
//! - [`Session`]: one sequence's KV cache (fixed capacity; sliding-window
//!   layers keep only their window) and the transformer forward pass, written
//!   once as calls on the `Backend` contract from `wasm-chord-core`.
//!
//! - [`device`]: the backend chosen at run time ([`AnyBackend`], [`Device`]);
//! - [`generate`], [`sampler`], [`chat_template`], [`perplexity`]: what
//!   applications call on top of a session.
#![warn(missing_docs)]

pub mod chat_template;
pub mod config;
pub mod device;
mod error;
pub mod generate;
mod kv_cache;
mod model;
pub mod perplexity;
pub mod sampler;
mod session;
pub mod synth;

pub use config::{Arch, ModelConfig};
pub use device::{AnyBackend, Device};
pub use error::{Result, RuntimeError};
pub use generate::{generate, CancelToken, GenerateParams, Generation, StopFilter, StopReason};
pub use kv_cache::KvCache;
pub use model::{Model, StreamedWeights};
pub use perplexity::{perplexity, Perplexity};
pub use session::{Logits, Prefilled, Session, SessionConfig};
pub use wasm_chord_core as core;
