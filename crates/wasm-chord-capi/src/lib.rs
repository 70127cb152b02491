//! # wasm-chord-capi
//!
//! The stable C ABI of wasm-chord: `libwasmchord` (cdylib and staticlib) and the
//! cbindgen-generated `include/wasmchord.h`. It will export opaque model and
//! session handles, `_new`/`_free` pairs, versioned parameter structs, a
//! `#[repr(C)]` error-code enum with never-reused numbers, and streaming
//! generation with callbacks, every export behind one panic boundary.
//!
//! Until then it holds nothing beyond this description.
#![warn(missing_docs)]
