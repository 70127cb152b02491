//! # wasm-chord-runtime
//!
//! The model layer of wasm-chord. It will hold:
//!
//! - typed model configurations read from GGUF metadata, one per architecture
//!   (llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3);
//! - the transformer for each architecture, written once as calls on the
//!   `Backend` contract from `wasm-chord-core`;
//! - the KV cache (fixed capacity, sliding-window layers), sampling chains,
//!   chat templates and sessions with streaming and cancellation.
//!
//! Today it re-exports the core crate so downstream code can depend on the
//! runtime alone; the model code lands with the runtime and generation work.
#![warn(missing_docs)]

pub use wasm_chord_core as core;
