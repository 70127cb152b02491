//! Feeds arbitrary bytes to the GGUF header parser and the whole-file reader.
//! Any panic, overflow or out-of-bounds access is a bug; whatever parses must
//! describe tensor data inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_chord_core::gguf::{parse_header, GgufFile};

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    if let Ok(h) = parse_header(data, len) {
        assert!(h.data_offset <= len);
        for t in &h.tensors {
            let r = h.tensor_range(t).expect("validated tensor range");
            assert!(r.start >= h.data_offset && r.end <= len);
        }
    }
    // The same bytes as a prefix of a longer file (a streamed download).
    let _ = parse_header(data, len.saturating_mul(2).saturating_add(1));
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        for t in f.tensors() {
            assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes());
        }
    }
});
