//! # wasm-chord-cpu
//!
//! The CPU backend of wasm-chord. It will implement the `Backend` contract from
//! `wasm-chord-core` with:
//!
//! - quantized matrix-vector and matrix-matrix kernels reading weights straight
//!   from the memory-mapped GGUF file, with activations quantized once per
//!   matmul (Q8_0 / Q8_K) and integer dot products;
//! - SIMD paths chosen at run time (AVX2+FMA, AVX-512/VNNI, NEON, wasm
//!   `simd128`), each with a scalar twin it is tested against;
//! - a thread pool sized so two cores stay busy on small matrices.
//!
//! Until then it holds nothing beyond this description.
#![warn(missing_docs)]
