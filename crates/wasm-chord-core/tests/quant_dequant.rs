//! Dequantization agrees bit for bit with gguf-py's numpy dequantizers (and
//! llama.cpp's C `dequantize_row_*`, which the fixture script checks agree
//! with gguf-py on every fixture value) on random blocks of every type.
//!
//! Fixtures: `tests/fixtures/quant/dequant_<type>.bin`, made by
//! `scripts/fixtures/quant_dequant.py` (see the README there). Exceptions:
//! none. gguf-py lacks Q8_1 and Q8_K; their expected values come from
//! `d * q` in numpy float32 (Q8_1: llama.cpp has no dequantizer for it) and
//! from llama.cpp's `dequantize_row_q8_K`.

use wasm_chord_core::quant::dequantize;
use wasm_chord_core::GgmlType;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant");

const TYPES: [GgmlType; 17] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

struct Fixture {
    blocks: Vec<u8>,
    values: Vec<f32>,
}

fn load(ty: GgmlType) -> Fixture {
    let path = format!("{FIXTURES}/dequant_{}.bin", ty.name().to_lowercase());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let id = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let n = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(id, ty.id(), "{path}: type id");
    let nbytes = n * ty.type_size();
    let blocks = bytes[8..8 + nbytes].to_vec();
    let values: Vec<f32> = bytes[8 + nbytes..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), n * ty.block_size(), "{path}: value count");
    Fixture { blocks, values }
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for ty in TYPES {
        let fx = load(ty);
        // The fixture must exercise real data: non-constant, finite values.
        assert!(fx.values.iter().all(|v| v.is_finite()), "{ty}");
        assert!(
            fx.values.iter().any(|&v| v != fx.values[0]),
            "{ty}: constant fixture"
        );
        let mut out = vec![f32::NAN; fx.values.len()];
        dequantize(ty, &fx.blocks, &mut out).unwrap();
        let bad: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].to_bits() != fx.values[i].to_bits())
            .collect();
        assert!(
            bad.is_empty(),
            "{ty}: {} of {} values differ; first at {}: ours {:e} want {:e}",
            bad.len(),
            out.len(),
            bad[0],
            out[bad[0]],
            fx.values[bad[0]]
        );
    }
}

#[test]
fn dequantize_reads_unaligned_input() {
    // The same blocks one byte off any natural alignment decode identically.
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q8_K,
        GgmlType::Q6_K,
        GgmlType::F32,
    ] {
        let fx = load(ty);
        let mut shifted = vec![0u8; fx.blocks.len() + 1];
        shifted[1..].copy_from_slice(&fx.blocks);
        let mut out = vec![0f32; fx.values.len()];
        dequantize(ty, &shifted[1..], &mut out).unwrap();
        assert!(
            out.iter()
                .zip(&fx.values)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{ty}"
        );
    }
}
