//! # wasm-chord-gpu
//!
//! The WebGPU backend of wasm-chord, on `wgpu` with WGSL kernels: native
//! Vulkan/Metal/DX12 and every browser with `navigator.gpu`. It will implement
//! the `Backend` contract from `wasm-chord-core` with fused dequantize-matvec
//! kernels per quant type, a tiled matmul for prefill, attention over the KV
//! cache, RMSNorm, RoPE, activations and GPU-side argmax/top-k, recording one
//! command encoder per forward pass.
//!
//! Until then it holds nothing beyond this description; `wgpu` is not yet a
//! dependency so that the workspace builds quickly.
#![warn(missing_docs)]
