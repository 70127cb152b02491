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
