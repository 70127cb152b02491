//! Robustness: thousands of randomly damaged copies of a valid file must give
//! `Ok` or `Err`, never a panic, and whatever parses must be self-consistent.

use std::panic::{catch_unwind, AssertUnwindSafe};

use wasm_chord_core::gguf::{parse_header, Array, GgufFile, GgufWriter, Value};
use wasm_chord_core::GgmlType;

/// SplitMix64, seeded so that a failing case reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn base_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    let m = w.metadata_mut();
    m.insert("general.architecture", Value::String("gemma3".into()));
    m.insert("general.alignment", Value::U32(32));
    m.insert("gemma3.context_length", Value::U32(32768));
    m.insert("gemma3.rope.freq_base", Value::F32(1e6));
    m.insert("t.bool", Value::Bool(true));
    m.insert("t.i64", Value::I64(-5));
    m.insert("t.f64", Value::F64(0.25));
    m.insert(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec![
            "<pad>".into(),
            "▁a".into(),
            "é".into(),
            "<0xFF>".into(),
        ])),
    );
    m.insert(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0, -1.5, -2.0, -3.0])),
    );
    m.insert(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![3, 1, 1, 6])),
    );
    m.insert("t.bools", Value::Array(Array::Bool(vec![true, false])));
    m.insert(
        "t.nested",
        Value::Array(Array::Array(vec![
            Array::U16(vec![1, 2]),
            Array::Array(vec![Array::U8(vec![3])]),
        ])),
    );
    let tensors: [(&str, &[u64], GgmlType); 4] = [
        ("token_embd.weight", &[32, 4], GgmlType::Q8_0),
        ("blk.0.attn_norm.weight", &[5], GgmlType::F32),
        ("blk.0.ffn_up.weight", &[256, 2], GgmlType::Q4_K),
        ("blk.0.ffn_down.weight", &[8, 2, 2], GgmlType::F16),
    ];
    let mut rng = Rng(11);
    for (name, dims, ty) in tensors {
        let n = dims.iter().product::<u64>() / ty.block_size() as u64 * ty.type_size() as u64;
        let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        w.add_tensor(name, dims, ty, data).unwrap();
    }
    w.to_bytes().unwrap()
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(7) {
            // Flip one byte.
            0 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            // Overwrite one byte with anything.
            1 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x = rng.next() as u8;
                }
            }
            // Write an extreme u32/u64 (a count, length, type, dim or offset) at an aligned spot in the header.
            2 => {
                let extremes = [
                    0u64,
                    1,
                    2,
                    0xFF,
                    0xFFFF_FFFF,
                    0x7FFF_FFFF_FFFF_FFFF,
                    u64::MAX,
                    1 << 32,
                    1 << 40,
                ];
                let v = extremes[rng.below(extremes.len())];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let at = rng.below(b.len().min(900));
                for (k, byte) in v.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            // Truncate.
            3 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            // Insert random bytes.
            4 => {
                let at = rng.below(b.len() + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, ins);
            }
            // Delete a run.
            5 => {
                let at = rng.below(b.len());
                let n = (1 + rng.below(16)).min(b.len() - at.min(b.len()));
                b.drain(at..at + n);
            }
            // Duplicate a chunk of the file elsewhere.
            _ => {
                let from = rng.below(b.len());
                let n = (1 + rng.below(64)).min(b.len() - from.min(b.len()));
                let chunk = b[from..from + n].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
        }
    }
    b
}

fn check(data: &[u8]) {
    if let Ok(h) = parse_header(data, data.len() as u64) {
        assert!(h.data_offset <= data.len() as u64);
        for t in &h.tensors {
            let r = h.tensor_range(t).expect("validated range");
            assert!(r.end <= data.len() as u64);
        }
    }
    // A prefix against the full length: Ok, Truncated or another error.
    let cut = data.len() / 2;
    let _ = parse_header(&data[..cut], data.len() as u64);
    // A claimed length longer than the bytes given.
    let _ = parse_header(data, data.len() as u64 + 4096);
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        for t in f.tensors() {
            assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes());
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let base = base_file();
    assert!(GgufFile::from_bytes(base.clone()).is_ok());
    let mut rng = Rng(0xC0FFEE);
    let (mut ok, mut err) = (0, 0);
    for case in 0..4000 {
        let data = mutate(&mut rng, &base);
        let r = catch_unwind(AssertUnwindSafe(|| check(&data)));
        if r.is_err() {
            panic!(
                "case {case} panicked on a {}-byte file: {:02x?}",
                data.len(),
                data
            );
        }
        match parse_header(&data, data.len() as u64) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    // The mutations reach both outcomes (byte flips inside tensor data parse).
    assert!(ok > 100 && err > 1000, "ok {ok}, err {err}");
}

#[test]
fn every_prefix_parses_or_errors() {
    let base = base_file();
    for len in 0..base.len() {
        check(&base[..len]);
    }
}
