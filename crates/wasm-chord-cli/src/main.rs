//! `wasmchord`: the command-line tool of wasm-chord.
fn main() {}
