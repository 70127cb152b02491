//! # wasm-chord-web
//!
//! The browser and Node surface of wasm-chord, built with `wasm-bindgen` and
//! `wasm-pack` (`scripts/web/build.sh`) into the npm package under
//! `bindings/js` (ESM with TypeScript types). The package loads a GGUF model from a URL (streamed, with
//! progress, cached with integrity checks), a `File`/`Blob` or bytes;
//! generates as an async iterator or with a callback, cancellable with an
//! `AbortSignal`; renders the model's chat template; and reports which
//! backend runs (`"cpu"`: the CPU backend compiled with `simd128`).
//!
//! This crate holds the Rust half: [`loader`] receives the file in chunks
//! straight into wasm memory, [`engine`] owns the model and its session and
//! generates one token per call (so JavaScript can yield between tokens),
//! and [`api`] is the thin wasm-bindgen layer. Every error reaches
//! JavaScript as an `Error` with a stable `code` ([`WebError::code`]); see
//! [`panic`] for the fallback should anything panic.
//!
//! See `docs/web.md` for the JavaScript API, the limits of the CPU path
//! (wasm32 memory) and measured speed.
#![warn(missing_docs)]

pub mod api;
pub mod engine;
pub mod error;
pub mod loader;
pub mod options;
pub mod panic;
pub mod stream;
pub mod text;

pub use error::{WebError, WebResult};

/// Runs when the module is instantiated: installs the panic hook.
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    panic::install();
}
