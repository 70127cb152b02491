//! # wasm-chord-web
//!
//! The browser and Node surface of wasm-chord, built with `wasm-bindgen` and
//! `wasm-pack` into an npm package under `bindings/js`. It will load models from
//! URLs, `File`s or bytes with progress, generate as an async iterator with
//! `AbortSignal` cancellation, render chat templates, and pick the WebGPU
//! backend when `navigator.gpu` exists (the `simd128` CPU path otherwise).
//!
//! Until then it holds nothing beyond this description.
#![warn(missing_docs)]
