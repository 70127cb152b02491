//! Portable row dot products for the Q8_0 partners (Q8_0, Q5_0, Q4_0): no
//! intrinsics and no per-block struct copy; each block's integer dot is a
//! plain loop over fixed-size arrays that LLVM vectorizes for whatever the
//! target offers (SSE2, NEON, wasm `simd128`). The integer sums are exact,
//! and the float steps are written in the scalar reference's order, so the
//! results are bit-identical to core's `dot_block`.

use wasm_chord_core::quant::{f16_bits_to_f32, BlockQ8_0};

/// f16 scale at the start of a block.
#[inline]
fn d_at(x: &[u8]) -> f32 {
    match x {
        [a, b, ..] => f16_bits_to_f32(u16::from_le_bytes([*a, *b])),
        _ => 0.0,
    }
}

/// The 32 quants of `x` (bytes `from..from + 32`) as i8.
#[inline]
fn i8s<const N: usize>(x: &[u8], from: usize) -> [i8; N] {
    let mut q = [0i8; N];
    if let Some(src) = x.get(from..from + N) {
        for (d, s) in q.iter_mut().zip(src) {
            *d = *s as i8;
        }
    }
    q
}

/// `Σ a_j · b_j` over 32 int8 pairs.
#[inline]
fn idot32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| i32::from(p) * i32::from(q))
        .sum()
}

/// Q8_0 weight row · Q8_0 activations.
pub(crate) fn dot_q8_0(row: &[u8], acts: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(34).zip(acts) {
        let sumi = idot32(&i8s::<32>(x, 2), &y.qs);
        sumf += sumi as f32 * (d_at(x) * f16_bits_to_f32(y.d));
    }
    sumf
}

/// Q5_0 weight row · Q8_0 activations.
pub(crate) fn dot_q5_0(row: &[u8], acts: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(22).zip(acts) {
        let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
        let mut v = [0i8; 32];
        for (j, &q) in x[6..22].iter().enumerate() {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            v[j] = ((q & 0x0F) | h0) as i8 - 16;
            v[j + 16] = ((q >> 4) | h1) as i8 - 16;
        }
        let sumi = idot32(&v, &y.qs);
        sumf += (d_at(x) * f16_bits_to_f32(y.d)) * sumi as f32;
    }
    sumf
}

/// Q4_0 weight row · Q8_0 activations.
pub(crate) fn dot_q4_0(row: &[u8], acts: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(18).zip(acts) {
        let mut v = [0i8; 32];
        for (j, &q) in x[2..18].iter().enumerate() {
            v[j] = (q & 0x0F) as i8 - 8;
            v[j + 16] = (q >> 4) as i8 - 8;
        }
        let sumi = idot32(&v, &y.qs);
        sumf += sumi as f32 * d_at(x) * f16_bits_to_f32(y.d);
    }
    sumf
}

/// The eight lanes of ggml's x86 `hsum_float_8`: upper half onto lower,
/// then lanes 2-3 onto 0-1, then lane 1 onto 0.
#[inline]
fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// Q5_1 weight row · Q8_1 activations, in the order of ggml-cpu's x86
/// kernel (`ggml_vec_dot_q5_1_q8_1`): eight float lanes, lane k taking the
/// exact integer dot of values 4k..4k+3 of every block times `d_x · d_y` by
/// a fused multiply-add, the lanes summed by `hsum_float_8`, and the
/// blocks' `m_x · s_y` terms summed apart and added last. Unlike the other
/// types, Q5_1's rounding differs from core's reference order often enough
/// to flip an int8 activation downstream, so this order is the one we use.
pub(crate) fn dot_q5_1(row: &[u8], acts: &[wasm_chord_core::quant::BlockQ8_1]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (x, y) in row.chunks_exact(24).zip(acts) {
        let dx = d_at(x);
        let mx = f16_bits_to_f32(u16::from_le_bytes([x[2], x[3]]));
        summs = mx.mul_add(f16_bits_to_f32(y.s), summs);
        let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
        let mut v = [0i32; 32];
        for (j, &q) in x[8..24].iter().enumerate() {
            v[j] = i32::from(q & 0x0F) | (((qh >> j) & 1) << 4) as i32;
            v[j + 16] = i32::from(q >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32;
        }
        let d = dx * f16_bits_to_f32(y.d);
        for (k, lane) in acc.iter_mut().enumerate() {
            let q: i32 = (4 * k..4 * k + 4).map(|j| v[j] * i32::from(y.qs[j])).sum();
            *lane = (q as f32).mul_add(d, *lane);
        }
    }
    hsum8(&acc) + summs
}

/// IQ4_NL weight row · Q8_0 activations, in the order ggml-cpu computes it
/// on x86 with AVX2: there IQ4_NL matrices (rows a multiple of 8) are
/// repacked at load into 8-row interleaved blocks, and each output adds
/// every block's exact integer dot times `d_x · d_y` with a fused
/// multiply-add (`gemv_q4_b32_8x8_q8_0_lut_avx`). The reference order
/// (separate multiply and add) flips int8 activations downstream often
/// enough to matter.
pub(crate) fn dot_iq4_nl(row: &[u8], acts: &[BlockQ8_0]) -> f32 {
    use wasm_chord_core::quant::KVALUES_IQ4NL;
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(18).zip(acts) {
        let mut sumi = 0i32;
        for (j, &q) in x[2..18].iter().enumerate() {
            sumi += i32::from(KVALUES_IQ4NL[usize::from(q & 0x0F)]) * i32::from(y.qs[j]);
            sumi += i32::from(KVALUES_IQ4NL[usize::from(q >> 4)]) * i32::from(y.qs[j + 16]);
        }
        sumf = (sumi as f32).mul_add(d_at(x) * f16_bits_to_f32(y.d), sumf);
    }
    sumf
}
