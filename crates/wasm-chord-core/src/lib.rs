//! # wasm-chord-core
//!
//! Files, numbers and text: everything wasm-chord knows before it knows what a
//! transformer is.
//!
//! - [`gguf`]: a reader for GGUF v2/v3 files that treats every file as hostile
//!   (zero-copy over a memory map natively, over a byte buffer in wasm), and a
//!   writer so tests and tools can make files.
//! - [`ggml_type`]: the ggml tensor types with their block geometry.
//! - [`quant`]: `#[repr(C)]` quantization blocks with scalar reference
//!   `dequantize` and `quantize` following llama.cpp.
//! - [`tokenizer`]: text to token ids and back, built from GGUF metadata.
//! - [`backend`]: the `Backend` contract every compute backend implements.
#![warn(missing_docs)]

pub mod backend;
pub mod ggml_type;
pub mod gguf;
pub mod quant;
pub mod tokenizer;

pub use ggml_type::GgmlType;
