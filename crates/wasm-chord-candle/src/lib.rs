//! # wasm-chord-candle
//!
//! The native-GPU backend of wasm-chord, built on `candle-core`. It will
//! implement the `Backend` contract from `wasm-chord-core` on CUDA (feature
//! `cuda`), Metal (feature `metal`) and candle's CPU device (always, so that CI
//! without a GPU tests it). Quantized weights stay quantized on the device
//! (candle `QTensor`/`QMatMul`); attention over the KV cache, RoPE variants and
//! GPU-side sampling become candle custom ops with their own kernels.
//!
//! Until then it holds nothing beyond this description; `candle-core` is not
//! yet a dependency so that the workspace builds quickly.
#![warn(missing_docs)]
