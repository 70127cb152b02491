//! Each fast kernel against the scalar reference (`GgmlBlock::vec_dot`) on
//! random blocks, at several lengths and a misaligned row start.

use super::*;
use crate::test_rng::Rng;
use wasm_chord_core::quant::{self, f32_to_f16_bits, BlockQ4_0, BlockQ5_0};
use wasm_chord_core::GgmlType;

/// Random bytes for `nb` weight blocks of type `B`, with every f16 scale set
/// to a finite random value (at `f16_at` offsets in each block) and, for
/// Q8_0, quants in -127..=127 as ggml's quantizer produces.
fn random_row<B: GgmlBlock>(rng: &mut Rng, nb: usize, f16_at: &[usize]) -> Vec<u8> {
    let mut row: Vec<u8> = (0..nb * B::TYPE_SIZE).map(|_| rng.byte()).collect();
    for blk in row.chunks_exact_mut(B::TYPE_SIZE) {
        for &o in f16_at {
            let v = 0.001 + 0.05 * rng.f32().abs();
            blk[o..o + 2].copy_from_slice(&f32_to_f16_bits(v).to_le_bytes());
        }
        if B::DTYPE == GgmlType::Q8_0 {
            for q in &mut blk[2..] {
                if *q == 0x80 {
                    *q = 0x81;
                }
            }
        }
    }
    row
}

/// Checks `fast` against the reference on random rows of 1, 3 and 8 blocks,
/// with the row starting at an odd address.
fn check<B: GgmlBlock>(f16_at: &[usize], fast: impl Fn(&[u8], &[B::VecDotType]) -> f32) {
    check4::<B>(f16_at, |r, a| {
        let [a0, a1, a2, a3] = a;
        [fast(r, a0), fast(r, a1), fast(r, a2), fast(r, a3)]
    });
}

/// As [`check`], for a kernel taking four tokens at once (each with its own
/// random activations).
fn check4<B: GgmlBlock>(f16_at: &[usize], fast: impl Fn(&[u8], [&[B::VecDotType]; 4]) -> [f32; 4]) {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ B::TYPE_SIZE as u64);
    for nb in [1usize, 3, 8] {
        for _ in 0..20 {
            let n = nb * B::BLCK_SIZE;
            let mut bytes = vec![0u8];
            bytes.extend(random_row::<B>(&mut rng, nb, f16_at));
            let row = &bytes[1..];
            let acts: Vec<Vec<B::VecDotType>> = (0..4)
                .map(|_| {
                    let x: Vec<f32> = (0..n).map(|_| rng.f32() * 3.0).collect();
                    let mut a = vec![B::VecDotType::default(); n / B::VecDotType::BLCK_SIZE];
                    B::VecDotType::from_float(&x, &mut a).expect("activations quantize");
                    a
                })
                .collect();
            let got = fast(row, [&acts[0], &acts[1], &acts[2], &acts[3]]);
            let blocks: Vec<B> = row.chunks_exact(B::TYPE_SIZE).map(B::read).collect();
            let mut w = vec![0f32; n];
            quant::dequantize(B::DTYPE, row, &mut w).expect("dequantize");
            for (acts, got) in acts.iter().zip(got) {
                let want = B::vec_dot(n, &blocks, acts).expect("reference dot");
                // Scale of the tolerance: Σ |w_i · a_i| of the dequantized values.
                let mut a = vec![0f32; n];
                B::VecDotType::to_float(acts, &mut a).expect("dequantize activations");
                let mag: f32 = w.iter().zip(&a).map(|(p, q)| (p * q).abs()).sum();
                assert!(mag > 0.0, "degenerate random input");
                assert!(
                    (got - want).abs() <= 1e-5 * mag,
                    "{:?} nb={nb}: fast {got} vs reference {want} (scale {mag})",
                    B::DTYPE
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
macro_rules! avx2_test {
    ($name:ident, $block:ty, $f16:expr, $kernel:ident) => {
        #[test]
        fn $name() {
            if !has_avx2() {
                eprintln!("skipped: no AVX2/FMA/F16C on this CPU");
                return;
            }
            // SAFETY: the features were detected just above.
            check::<$block>(&$f16, |r, a| unsafe { avx2::$kernel::<1>(r, [a])[0] });
            // SAFETY: as above.
            check4::<$block>(&$f16, |r, a| unsafe { avx2::$kernel::<4>(r, a) });
        }
    };
}

#[cfg(target_arch = "x86_64")]
avx2_test!(avx2_q8_0_matches_reference, BlockQ8_0, [0], dot_q8_0_q8_0);
#[cfg(target_arch = "x86_64")]
avx2_test!(avx2_q5_0_matches_reference, BlockQ5_0, [0], dot_q5_0_q8_0);
#[cfg(target_arch = "x86_64")]
avx2_test!(avx2_q4_0_matches_reference, BlockQ4_0, [0], dot_q4_0_q8_0);
#[cfg(target_arch = "x86_64")]
avx2_test!(avx2_q4_k_matches_reference, BlockQ4K, [0, 2], dot_q4_k_q8_k);
#[cfg(target_arch = "x86_64")]
avx2_test!(avx2_q5_k_matches_reference, BlockQ5K, [0, 2], dot_q5_k_q8_k);
#[cfg(target_arch = "x86_64")]
avx2_test!(avx2_q6_k_matches_reference, BlockQ6K, [208], dot_q6_k_q8_k);

#[test]
fn dispatched_entry_points_match_reference() {
    check::<BlockQ8_0>(&[0], Q8_0.one);
    check::<BlockQ5_0>(&[0], Q5_0.one);
    check::<BlockQ4_0>(&[0], Q4_0.one);
    check::<BlockQ4K>(&[0, 2], Q4_K.one);
    check::<BlockQ5K>(&[0, 2], Q5_K.one);
    check::<BlockQ6K>(&[208], Q6_K.one);
    check4::<BlockQ8_0>(&[0], Q8_0.four);
    check4::<BlockQ5_0>(&[0], Q5_0.four);
    check4::<BlockQ4_0>(&[0], Q4_0.four);
    check4::<BlockQ4K>(&[0, 2], Q4_K.four);
    check4::<BlockQ5K>(&[0, 2], Q5_K.four);
    check4::<BlockQ6K>(&[208], Q6_K.four);
}

#[test]
fn scalar_path_is_the_reference() {
    let mut rng = Rng(99);
    let row = random_row::<BlockQ6K>(&mut rng, 2, &[208]);
    let x: Vec<f32> = (0..512).map(|_| rng.f32()).collect();
    let mut acts = vec![BlockQ8K::default(); 2];
    BlockQ8K::from_float(&x, &mut acts).expect("quantize");
    let blocks: Vec<BlockQ6K> = row.chunks_exact(210).map(BlockQ6K::read).collect();
    let want = BlockQ6K::vec_dot(512, &blocks, &acts).expect("reference dot");
    assert_eq!(
        dot_scalar::<BlockQ6K>(&row, &acts).to_bits(),
        want.to_bits()
    );
}

#[test]
fn dot_f32_matches_f64_sum() {
    let mut rng = Rng(7);
    for n in [1usize, 7, 8, 9, 255, 256] {
        let a: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let b: Vec<f32> = (0..n + 3).map(|_| rng.f32()).collect();
        let want: f64 = a
            .iter()
            .zip(&b)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        let mag: f64 = a
            .iter()
            .zip(&b)
            .map(|(p, q)| f64::from((p * q).abs()))
            .sum();
        let got = f64::from(dot_f32(&a, &b));
        assert!((got - want).abs() <= 1e-6 * mag, "n={n}: {got} vs {want}");
    }
}

/// The portable kernels compute exactly what the reference computes.
#[test]
fn portable_kernels_are_bit_identical_to_reference() {
    fn same<B: GgmlBlock<VecDotType = BlockQ8_0>>(f: fn(&[u8], &[BlockQ8_0]) -> f32) {
        let mut rng = Rng(0xfeed ^ B::TYPE_SIZE as u64);
        for nb in [1usize, 5, 20] {
            let row = random_row::<B>(&mut rng, nb, &[0]);
            let x: Vec<f32> = (0..nb * 32).map(|_| rng.f32() * 2.0).collect();
            let mut acts = vec![BlockQ8_0::default(); nb];
            BlockQ8_0::from_float(&x, &mut acts).expect("quantize");
            let blocks: Vec<B> = row.chunks_exact(B::TYPE_SIZE).map(B::read).collect();
            let want = B::vec_dot(nb * 32, &blocks, &acts).expect("reference dot");
            assert_eq!(
                f(&row, &acts).to_bits(),
                want.to_bits(),
                "{:?} nb={nb}",
                B::DTYPE
            );
        }
    }
    same::<BlockQ8_0>(portable::dot_q8_0);
    same::<BlockQ5_0>(portable::dot_q5_0);
    same::<BlockQ4_0>(portable::dot_q4_0);
}

#[test]
fn q5_1_in_ggml_order_matches_reference() {
    // Scales d and m at bytes 0 and 2 of each block.
    check::<wasm_chord_core::quant::BlockQ5_1>(&[0, 2], portable::dot_q5_1);
    check4::<wasm_chord_core::quant::BlockQ5_1>(&[0, 2], Q5_1.four);
}

#[test]
fn iq4_nl_in_ggml_order_matches_reference() {
    check::<wasm_chord_core::quant::BlockIQ4NL>(&[0], portable::dot_iq4_nl);
}

/// The register-tiled kernels (`tiled`) against the AVX2 row kernels, bit
/// for bit (same arithmetic, same order), and against the scalar reference
/// within rounding, on random rows and tokens, for every tile shape
/// (rows 1-4 × token pairs 1-2, an odd token count paired with zeros).
#[test]
fn tiled_kernels_match_row_kernels_and_reference() {
    use tiled::{Kind, Tiling, TILE_PAIRS, TILE_ROWS};
    if !tiled::available() {
        eprintln!("skipped: no AVX-512 F/BW/VL/VNNI on this CPU or in this build");
        return;
    }
    fn run<B: GgmlBlock, K: Tiling<Act = B::VecDotType>>(
        kind: K,
        row_kernel: RowKernel<B::VecDotType>,
        f16_at: &[usize],
    ) {
        let mut rng = Rng(0x7115_d00d ^ B::TYPE_SIZE as u64);
        let ts = B::TYPE_SIZE;
        for nb in [1usize, 2, 7, 20] {
            let n = nb * B::BLCK_SIZE;
            for rows in 1..=TILE_ROWS {
                for n_tokens in 1..=2 * TILE_PAIRS {
                    let bytes = random_row::<B>(&mut rng, rows * nb, f16_at);
                    let mut acts = vec![B::VecDotType::default(); n_tokens * nb];
                    for t in 0..n_tokens {
                        let x: Vec<f32> = (0..n).map(|_| rng.f32() * 3.0).collect();
                        B::VecDotType::from_float(&x, &mut acts[t * nb..(t + 1) * nb])
                            .expect("activations quantize");
                    }
                    let w: Vec<_> = bytes.chunks_exact(ts).map(|b| kind.decode(b)).collect();
                    let pairs = kind.pairs(&acts, n_tokens, nb);
                    let got = kind.tile(&w, rows, &pairs, n_tokens.div_ceil(2), nb);
                    for r in 0..rows {
                        let row = &bytes[r * nb * ts..(r + 1) * nb * ts];
                        let blocks: Vec<B> = row.chunks_exact(ts).map(B::read).collect();
                        let mut wv = vec![0f32; n];
                        quant::dequantize(B::DTYPE, row, &mut wv).expect("dequantize");
                        for t in 0..n_tokens {
                            let a = &acts[t * nb..(t + 1) * nb];
                            let g = got[r][t / 2][t % 2];
                            let one = (row_kernel.one)(row, a);
                            assert_eq!(
                                g.to_bits(),
                                one.to_bits(),
                                "{:?} nb={nb} rows={rows} tokens={n_tokens} r={r} t={t}: {g} vs {one}",
                                B::DTYPE
                            );
                            let want = B::vec_dot(n, &blocks, a).expect("reference dot");
                            let mut av = vec![0f32; n];
                            B::VecDotType::to_float(a, &mut av).expect("dequantize activations");
                            let mag: f32 = wv.iter().zip(&av).map(|(p, q)| (p * q).abs()).sum();
                            assert!(mag > 0.0, "degenerate random input");
                            assert!(
                                (g - want).abs() <= 1e-5 * mag,
                                "{:?}: {g} vs reference {want}",
                                B::DTYPE
                            );
                        }
                    }
                }
            }
        }
    }
    run::<BlockQ8_0, _>(Kind::Q8_0, Q8_0, &[0]);
    run::<BlockQ5_0, _>(Kind::Q5_0, Q5_0, &[0]);
    run::<BlockQ4_0, _>(Kind::Q4_0, Q4_0, &[0]);
    run::<BlockQ4K, _>(tiled::Q4K, Q4_K, &[0, 2]);
    run::<BlockQ6K, _>(tiled::Q6K, Q6_K, &[208]);
}

/// The AVX-512 row kernel for one token (`tiled::row_dot`) against the AVX2
/// row kernels, bit for bit, on random rows and activations.
#[test]
fn tiled_row_dot_matches_row_kernels() {
    use tiled::{Kind, Tiling};
    if !tiled::available() {
        eprintln!("skipped: no AVX-512 F/BW/VL/VNNI on this CPU or in this build");
        return;
    }
    fn run<B: GgmlBlock<VecDotType = BlockQ8_0>>(kind: Kind, row_kernel: RowKernel<BlockQ8_0>) {
        let mut rng = Rng(0x0dd0_7e57 ^ B::TYPE_SIZE as u64);
        for nb in [1usize, 3, 20] {
            for _ in 0..20 {
                let row = random_row::<B>(&mut rng, nb, &[0]);
                let x: Vec<f32> = (0..nb * 32).map(|_| rng.f32() * 3.0).collect();
                let mut acts = vec![BlockQ8_0::default(); nb];
                BlockQ8_0::from_float(&x, &mut acts).expect("activations quantize");
                let pairs = kind.pairs(&acts, 1, nb);
                let got = tiled::row_dot(kind, &row, &pairs);
                let want = (row_kernel.one)(&row, &acts);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{kind:?} nb={nb}: {got} vs {want}"
                );
                assert!(want != 0.0);
            }
        }
    }
    run::<BlockQ8_0>(Kind::Q8_0, Q8_0);
    run::<BlockQ5_0>(Kind::Q5_0, Q5_0);
    run::<BlockQ4_0>(Kind::Q4_0, Q4_0);
}
