//! The random-block check the NEON and simd128 row kernels share: each
//! kernel's one- and four-token forms against the scalar reference
//! (`dot_scalar`, core's `dot_block`), with the random rows, activations
//! and tolerance both test modules use.

use super::dot_scalar;
pub(super) use crate::test_rng::Rng;
use wasm_chord_core::quant::{self, f32_to_f16_bits, GgmlBlock};

/// A nonzero f16 scale of either sign, from f16's subnormals (2^-24) up to
/// 2^10, log-uniform.
fn scale(rng: &mut Rng) -> u16 {
    let e = ((rng.next() >> 32) % 35) as i32 - 24;
    let m = 1.0 + 0.99 * rng.f32().abs();
    let v = m * 2f32.powi(e);
    f32_to_f16_bits(if rng.next() & 1 == 0 { v } else { -v })
}

/// Random bytes for `nb` weight blocks of type `B` (every byte value, -128
/// in Q8_0 quants and Q6_K scales included), a random f16 scale at each of
/// the `f16_at` offsets of every block.
pub(super) fn random_row<B: GgmlBlock>(rng: &mut Rng, nb: usize, f16_at: &[usize]) -> Vec<u8> {
    let mut row: Vec<u8> = (0..nb * B::TYPE_SIZE).map(|_| rng.next() as u8).collect();
    for blk in row.chunks_exact_mut(B::TYPE_SIZE) {
        for &o in f16_at {
            blk[o..o + 2].copy_from_slice(&scale(rng).to_le_bytes());
        }
    }
    row
}

/// `nb` blocks of activations quantized from random values of magnitude
/// up to `amp`.
pub(super) fn random_acts<B: GgmlBlock>(rng: &mut Rng, nb: usize, amp: f32) -> Vec<B::VecDotType> {
    let n = nb * B::BLCK_SIZE;
    let x: Vec<f32> = (0..n).map(|_| rng.f32() * amp).collect();
    let mut a = vec![B::VecDotType::default(); n / B::VecDotType::BLCK_SIZE];
    B::VecDotType::from_float(&x, &mut a).expect("activations quantize");
    a
}

/// `Σ |w_i · a_i|` over the blocks both inputs have, of the dequantized
/// values: the scale of the tolerance.
fn magnitude<B: GgmlBlock>(row: &[u8], acts: &[B::VecDotType]) -> f32 {
    let nb = (row.len() / B::TYPE_SIZE).min(acts.len());
    let n = nb * B::BLCK_SIZE;
    let mut w = vec![0f32; n];
    quant::dequantize(B::DTYPE, &row[..nb * B::TYPE_SIZE], &mut w).expect("dequantize");
    let mut a = vec![0f32; n];
    B::VecDotType::to_float(&acts[..nb], &mut a).expect("dequantize activations");
    w.iter().zip(&a).map(|(p, q)| (p * q).abs()).sum()
}

/// Runs a kernel (its one- and four-token forms; weights `B`, scales at
/// `f16_at` in each block; `label` names the variant in failures) on rows
/// of 1, 2, 3 and 8 blocks starting at an odd address, for four tokens
/// whose activations span 1e-3..1e3 (one token at a time and four at once),
/// and for a token with one block fewer than the row: every result within
/// `1e-5 · Σ|w·a|` of the reference, and the four-token results equal to
/// the one-token ones bit for bit.
pub(super) fn check<B: GgmlBlock>(
    label: &str,
    f16_at: &[usize],
    one: impl Fn(&[u8], [&[B::VecDotType]; 1]) -> [f32; 1],
    four: impl Fn(&[u8], [&[B::VecDotType]; 4]) -> [f32; 4],
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ B::TYPE_SIZE as u64);
    for nb in [1usize, 2, 3, 8] {
        for _ in 0..12 {
            let mut bytes = vec![0u8];
            bytes.extend(random_row::<B>(&mut rng, nb, f16_at));
            let row = &bytes[1..];
            let acts: Vec<Vec<B::VecDotType>> = [1e-3, 1.0, 30.0, 1e3]
                .into_iter()
                .map(|amp| random_acts::<B>(&mut rng, nb, amp))
                .collect();
            let close = |t: usize, a: &[B::VecDotType], got: f32| {
                let want = dot_scalar::<B>(row, a);
                let mag = magnitude::<B>(row, a);
                assert!(mag > 0.0 || a.is_empty(), "degenerate random input");
                assert!(
                    (got - want).abs() <= 1e-5 * mag,
                    "{:?} {label} nb={nb} token {t} ({} blocks): {got} vs reference {want} (scale {mag})",
                    B::DTYPE,
                    a.len()
                );
            };
            let got4 = four(row, [&acts[0], &acts[1], &acts[2], &acts[3]]);
            for (t, a) in acts.iter().enumerate() {
                let [got1] = one(row, [a]);
                close(t, a, got1);
                assert_eq!(
                    got4[t].to_bits(),
                    got1.to_bits(),
                    "{:?} {label} nb={nb} token {t}: four-token {} vs one-token {got1}",
                    B::DTYPE,
                    got4[t]
                );
            }
            // Activations one block shorter than the row.
            let short = &acts[1][..nb - 1];
            let [got1] = one(row, [short]);
            close(1, short, got1);
        }
    }
}
