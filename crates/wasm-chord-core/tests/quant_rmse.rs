//! Reference quantizers against llama.cpp's `quantize_row_<type>_ref`.
//!
//! Fixtures (`tests/fixtures/quant/rmse_*`, made by
//! `scripts/fixtures/quant_rmse.py`): a random 64 x 256 input with outliers,
//! llama.cpp's quantized bytes for it per type, and llama.cpp's round-trip
//! RMSE. Our quantize -> dequantize RMSE must be within 1% of llama.cpp's,
//! and, since the quantizers are ports that keep llama.cpp's float operation
//! order, every block must be byte-identical to llama.cpp's.

use wasm_chord_core::quant::{dequantize, quantize};
use wasm_chord_core::GgmlType;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant");

fn read(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn input() -> Vec<f32> {
    read("rmse_input.bin")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    (s / a.len() as f64).sqrt()
}

fn type_by_name(name: &str) -> GgmlType {
    GgmlType::ALL
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

#[test]
fn quantize_matches_llama_cpp_reference() {
    let x = input();
    assert_eq!(x.len(), 64 * 256);
    let table = String::from_utf8(read("rmse.txt")).unwrap();
    let mut checked = 0;
    let (mut same_total, mut blocks_total) = (0usize, 0usize);
    let mut report = String::new();
    for line in table.lines() {
        let (name, want) = line.split_once(' ').unwrap();
        let want: f64 = want.parse().unwrap();
        let ty = type_by_name(name);
        let nbytes = ty.row_bytes(x.len() as u64).unwrap() as usize;
        let mut q = vec![0u8; nbytes];
        quantize(ty, &x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize(ty, &q, &mut y).unwrap();
        let ours = rmse(&x, &y);

        let reference = read(&format!("rmse_{name}.bin"));
        assert_eq!(reference.len(), nbytes, "{ty}");
        let ts = ty.type_size();
        let same = q
            .chunks(ts)
            .zip(reference.chunks(ts))
            .filter(|(a, b)| a == b)
            .count();
        let nblocks = nbytes / ts;
        same_total += same;
        blocks_total += nblocks;
        report += &format!(
            "{ty:6} rmse ours {ours:.6e} llama.cpp {want:.6e}  identical blocks {same}/{nblocks}\n"
        );
        assert!(
            (ours - want).abs() <= 0.01 * want,
            "{ty}: rmse {ours:e} vs llama.cpp {want:e}"
        );
        assert!(
            ours > 0.0,
            "{ty}: a lossy round trip of random data cannot be exact"
        );
        assert_eq!(
            same, nblocks,
            "{ty}: blocks differing from llama.cpp's reference quantizer"
        );
        checked += 1;
    }
    println!("{report}total identical blocks {same_total}/{blocks_total}");
    assert_eq!(checked, 14, "every quantizable type is in the fixture");
}
