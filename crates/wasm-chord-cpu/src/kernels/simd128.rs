//! WebAssembly `simd128` row dot products over raw GGUF weight bytes, after
//! the algorithms of ggml-cpu's `arch/wasm/quants.c` (`ggml_vec_dot_*` under
//! `__wasm_simd128__`): Q8_0·Q8_0, Q5_0·Q8_0, Q4_0·Q8_0, Q4_K·Q8_K,
//! Q5_K·Q8_K and Q6_K·Q8_K, each for `N` tokens sharing one decoded weight
//! block.
//!
//! wasm has no run-time feature detection: a module either uses SIMD
//! instructions and then needs an engine with SIMD (every current browser,
//! Node 16+), or it does not. This module is compiled only where the build
//! enables `simd128` (`-C target-feature=+simd128`, as the browser package
//! does); other wasm builds keep the portable and scalar kernels.
//!
//! simd128 has no 8-bit multiply: as in ggml, bytes are sign- or
//! zero-extended to 16 bits and multiplied with `i32x4.dot_i16x8_s` (8
//! products summed in adjacent pairs onto 4 int32 lanes). Every kernel uses
//! lane totals only, so the integer parts are exact whatever the grouping.
//! Unlike ggml, the weight half is decoded once per block for all `N` tokens
//! and, for the K-quants, already multiplied by its 6- or 8-bit sub-block
//! scale in 16 bits (`|q·s| ≤ 63·128`, exact), which leaves each token two
//! extends, two dots and two adds per 16 values.
//!
//! Each kernel walks the row's blocks and every token's activation blocks
//! together and stops at the shortest, so a short slice only shortens the
//! dot. The entry points are safe: the intrinsics are safe functions on wasm
//! except the loads, which read only from bounds-checked 16-byte slices. The
//! tests below run every kernel, for one and four tokens, against the scalar
//! reference on random blocks (`scripts/wasm-test.sh` runs them in Node).

use core::arch::wasm32::*;
use wasm_chord_core::quant::{f16_bits_to_f32, BlockQ8K, BlockQ8_0};

/// The f16 at `b[at..at + 2]` (little-endian) as f32.
#[inline]
fn fp16_at(b: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// 16 bytes of `b` from `at` (bounds-checked) as a vector.
#[inline(always)]
fn load(b: &[u8], at: usize) -> v128 {
    let s = &b[at..at + 16];
    // SAFETY: `s` has 16 readable bytes; `v128.load` has no alignment
    // requirement.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// 16 int8 of `b` from `at` (bounds-checked) as a vector.
#[inline(always)]
fn load_i8(b: &[i8], at: usize) -> v128 {
    let s = &b[at..at + 16];
    // SAFETY: as in `load`.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// The 16 i16 of `b` as two vectors.
#[inline(always)]
fn load_i16x16(b: &[i16; 16]) -> [v128; 2] {
    // SAFETY: `b` has 32 readable bytes, read as two unaligned 16-byte loads.
    unsafe {
        let p = b.as_ptr();
        [v128_load(p.cast()), v128_load(p.add(8).cast())]
    }
}

/// Blocks all inputs have: the shortest of the row and the activations.
#[inline]
fn n_blocks<A, const N: usize>(row: &[u8], type_size: usize, acts: &[&[A]; N]) -> usize {
    acts.iter()
        .fold(row.len() / type_size, |m, a| m.min(a.len()))
}

/// Sum of the 4 i32 lanes.
#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    let v = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let v = i32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
    i32x4_extract_lane::<0>(v)
}

/// Sum of the 4 f32 lanes (as ggml: lane 0 + 1 + 2 + 3).
#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

/// 16 signed bytes as two i16x8 (values 0-7, 8-15).
#[inline(always)]
fn widen(v: v128) -> [v128; 2] {
    [i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v)]
}

/// 16 bytes in 0..128 as two i16x8, each multiplied by `s` (an i16 splat;
/// exact while `|value · s| < 2^15`).
#[inline(always)]
fn widen_scaled(v: v128, s: v128) -> [v128; 2] {
    [
        i16x8_mul(u16x8_extend_low_u8x16(v), s),
        i16x8_mul(u16x8_extend_high_u8x16(v), s),
    ]
}

/// `acc` plus the dot of 16 weights (as two i16x8) with 16 int8 activations,
/// onto the 4 int32 lanes (each product at most `2^15 · 2^7`, so pairs and
/// lanes cannot overflow over a block).
#[inline(always)]
fn dot16(acc: v128, w: &[v128; 2], y: v128) -> v128 {
    let lo = i32x4_dot_i16x8(w[0], i16x8_extend_low_i8x16(y));
    let hi = i32x4_dot_i16x8(w[1], i16x8_extend_high_i8x16(y));
    i32x4_add(acc, i32x4_add(lo, hi))
}

/// A weight type of 32-value blocks paired with Q8_0 activations.
trait Q8_0Partner {
    /// Bytes per block.
    const TS: usize;
    /// The block's 32 values as signed bytes, values 0-15 then 16-31
    /// (`x` holds one whole block).
    fn decode(x: &[u8]) -> [v128; 2];
}

/// Q8_0 weights (34-byte blocks: f16 d, 32 quants at 2).
struct Q8_0;

impl Q8_0Partner for Q8_0 {
    const TS: usize = 34;
    #[inline(always)]
    fn decode(x: &[u8]) -> [v128; 2] {
        [load(x, 2), load(x, 18)]
    }
}

/// Q4_0 weights (18-byte blocks: f16 d, 16 nibble bytes at 2): value `j`
/// is the low nibble of byte `j` (`j < 16`) or the high nibble of byte
/// `j - 16`, minus 8.
struct Q4_0;

impl Q8_0Partner for Q4_0 {
    const TS: usize = 18;
    #[inline(always)]
    fn decode(x: &[u8]) -> [v128; 2] {
        let v = load(x, 2);
        let s8 = i8x16_splat(8);
        [
            i8x16_sub(v128_and(v, u8x16_splat(0x0F)), s8),
            i8x16_sub(u8x16_shr(v, 4), s8),
        ]
    }
}

/// Bit `k % 8` in lane `k`: tests one bit of a byte spread over 8 lanes.
const BIT_IN_LANE: v128 = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
/// Swizzle indices spreading bytes 0 and 1 of a vector over 8 lanes each.
const SPREAD_01: v128 = u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
/// As [`SPREAD_01`], for bytes 2 and 3.
const SPREAD_23: v128 = u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);

/// Q5_0 weights (22-byte blocks: f16 d, `qh` 4 bytes at 2, 16 nibble bytes
/// at 6): value `j` is its nibble plus 16 times bit `j` of `qh`, minus 16.
struct Q5_0;

impl Q8_0Partner for Q5_0 {
    const TS: usize = 22;
    #[inline(always)]
    fn decode(x: &[u8]) -> [v128; 2] {
        let qh = i32x4_splat(i32::from_le_bytes([x[2], x[3], x[4], x[5]]));
        let v = load(x, 6);
        // 16 where a value's fifth bit is clear (ggml's `table_b2b_1`), so
        // that `nibble - it` is the value.
        let m16 = u8x16_splat(0x10);
        let clear = |spread: v128| {
            let bits = v128_and(u8x16_swizzle(qh, spread), BIT_IN_LANE);
            v128_and(i8x16_eq(bits, u8x16_splat(0)), m16)
        };
        [
            i8x16_sub(v128_and(v, u8x16_splat(0x0F)), clear(SPREAD_01)),
            i8x16_sub(u8x16_shr(v, 4), clear(SPREAD_23)),
        ]
    }
}

/// A Q8_0 partner row against `N` tokens, two blocks at a time into two
/// accumulators per token (as ggml's Q4_0), summed across lanes at the end.
#[inline(always)]
fn q8_0_partner<W: Q8_0Partner, const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    let nb = n_blocks(row, W::TS, &acts);
    let zero = f32x4_splat(0.0);
    let (mut acc0, mut acc1) = ([zero; N], [zero; N]);
    let mut blocks = row.chunks_exact(W::TS).take(nb).enumerate();
    while let Some((i, x)) = blocks.next() {
        q8_0_step::<W, N>(&mut acc0, x, &acts, i);
        if let Some((i, x)) = blocks.next() {
            q8_0_step::<W, N>(&mut acc1, x, &acts, i);
        }
    }
    let mut out = [0f32; N];
    for ((o, a0), a1) in out.iter_mut().zip(acc0).zip(acc1) {
        *o = hsum_f32(a0) + hsum_f32(a1);
    }
    out
}

/// Block `i` (bytes `x`) against every token's block `i`, added onto `acc`
/// lane by lane (`d_x·d_y` times the int32 lanes).
#[inline(always)]
fn q8_0_step<W: Q8_0Partner, const N: usize>(
    acc: &mut [v128; N],
    x: &[u8],
    acts: &[&[BlockQ8_0]; N],
    i: usize,
) {
    let [v0, v1] = W::decode(x);
    let w = [widen(v0), widen(v1)];
    let dx = fp16_at(x, 0);
    for (a, ys) in acc.iter_mut().zip(acts) {
        let y = &ys[i];
        let p = dot16(i32x4_splat(0), &w[0], load_i8(&y.qs, 0));
        let p = dot16(p, &w[1], load_i8(&y.qs, 16));
        let scale = f32x4_splat(dx * f16_bits_to_f32(y.d));
        *a = f32x4_add(*a, f32x4_mul(f32x4_convert_i32x4(p), scale));
    }
}

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block (its 12 scale
/// bytes), as ggml's `utmp` unpacking: `[scales, mins]`.
#[inline]
fn k4_scales_mins(s: &[u8]) -> [[u8; 8]; 2] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let sc = [u0 & KMASK1, (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4)];
    let mn = [
        u1 & KMASK1,
        ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
    ];
    let bytes = |p: [u32; 2]| {
        let (a, b) = (p[0].to_le_bytes(), p[1].to_le_bytes());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    };
    [bytes(sc), bytes(mn)]
}

/// A Q4_K/Q5_K row against `N` tokens. `values(x, c)` gives chunk `c` (of
/// 4) of block `x`: group `2c` (values `64c..64c + 32`) as two vectors, then
/// group `2c + 1`, all in 0..32. Per block
/// `d·Σ_g sc_g·Σ w·q − dmin·Σ_g m_g·Σ q`, the first sum over weights
/// already multiplied by their group's scale.
#[inline(always)]
fn k4_min_kernel<const N: usize>(
    row: &[u8],
    acts: [&[BlockQ8K]; N],
    ts: usize,
    values: impl Fn(&[u8], usize) -> [v128; 4],
) -> [f32; N] {
    let nb = n_blocks(row, ts, &acts);
    let mut sumf = [0f32; N];
    for (i, x) in row.chunks_exact(ts).take(nb).enumerate() {
        let xd = fp16_at(x, 0);
        let xdmin = fp16_at(x, 2);
        let [sc, mn] = k4_scales_mins(&x[4..16]);
        let m = mn.map(i16::from);
        // Each min twice: it weighs two 16-value sums of `bsums`.
        let mins = [
            i16x8(m[0], m[0], m[1], m[1], m[2], m[2], m[3], m[3]),
            i16x8(m[4], m[4], m[5], m[5], m[6], m[6], m[7], m[7]),
        ];
        let mut isum = [i32x4_splat(0); N];
        for c in 0..4 {
            let q = values(x, c);
            let s_lo = i16x8_splat(i16::from(sc[2 * c]));
            let s_hi = i16x8_splat(i16::from(sc[2 * c + 1]));
            let w = [
                widen_scaled(q[0], s_lo),
                widen_scaled(q[1], s_lo),
                widen_scaled(q[2], s_hi),
                widen_scaled(q[3], s_hi),
            ];
            for (acc, ys) in isum.iter_mut().zip(&acts) {
                let y = &ys[i].qs;
                let mut a = *acc;
                for (k, wk) in w.iter().enumerate() {
                    a = dot16(a, wk, load_i8(y, 64 * c + 16 * k));
                }
                *acc = a;
            }
        }
        for ((s, ys), acc) in sumf.iter_mut().zip(&acts).zip(isum) {
            let y = &ys[i];
            let b = load_i16x16(&y.bsums);
            let summs = hsum_i32(i32x4_add(
                i32x4_dot_i16x8(b[0], mins[0]),
                i32x4_dot_i16x8(b[1], mins[1]),
            ));
            *s -= y.d * xdmin * summs as f32;
            *s += y.d * xd * hsum_i32(acc) as f32;
        }
    }
    sumf
}

/// Q4_K weights (144-byte blocks: f16 d, f16 dmin, 12 scale bytes, 128
/// nibble bytes at 16): group `2c` holds the low nibbles of bytes
/// `32c..32c+32`, group `2c+1` their high nibbles.
fn q4_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    k4_min_kernel::<N>(row, acts, 144, |x, c| {
        let m4 = u8x16_splat(0x0F);
        let b0 = load(x, 16 + 32 * c);
        let b1 = load(x, 16 + 32 * c + 16);
        [
            v128_and(b0, m4),
            v128_and(b1, m4),
            u8x16_shr(b0, 4),
            u8x16_shr(b1, 4),
        ]
    })
}

/// Q5_K weights (176-byte blocks: f16 d, f16 dmin, 12 scale bytes, `qh` 32
/// bytes at 16, 128 nibble bytes at 48): as Q4_K, plus 16 where bit `g` of
/// `qh[l]` is set, for value `l` of group `g`.
fn q5_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    k4_min_kernel::<N>(row, acts, 176, |x, c| {
        let m4 = u8x16_splat(0x0F);
        let (one, two) = (u8x16_splat(1), u8x16_splat(2));
        // Bits 2c and 2c+1 of qh, moved to bit 4.
        let sh = [
            u8x16_shr(load(x, 16), 2 * c as u32),
            u8x16_shr(load(x, 32), 2 * c as u32),
        ];
        let lo_bit = |h: v128| i8x16_shl(v128_and(h, one), 4);
        let hi_bit = |h: v128| i8x16_shl(v128_and(h, two), 3);
        let b0 = load(x, 48 + 32 * c);
        let b1 = load(x, 48 + 32 * c + 16);
        [
            v128_or(v128_and(b0, m4), lo_bit(sh[0])),
            v128_or(v128_and(b1, m4), lo_bit(sh[1])),
            v128_or(u8x16_shr(b0, 4), hi_bit(sh[0])),
            v128_or(u8x16_shr(b1, 4), hi_bit(sh[1])),
        ]
    })
}

/// Q6_K weights (210-byte blocks: `ql` 128 bytes, `qh` 64 at 128, 16 int8
/// scales at 192, f16 d at 208), values `q − 32` with `q` in 0..64: each
/// half of 128 values takes the low then the high nibbles of its 64 `ql`
/// bytes, and two bits of each of its 32 `qh` bytes. Computed as
/// `d·(Σ_g s_g·Σ q·y − 32·Σ_g s_g·Σ y)` over the 16 groups of 16 values,
/// with `s_g·q` formed in 16 bits.
fn q6_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    let nb = n_blocks(row, 210, &acts);
    let mut sumf = [0f32; N];
    let m3 = u8x16_splat(0x03);
    let m4 = u8x16_splat(0x0F);
    let m30 = u8x16_splat(0x30);
    for (i, x) in row.chunks_exact(210).take(nb).enumerate() {
        let xd = fp16_at(x, 208);
        let sc = &x[192..208];
        let scales = widen(load(x, 192));
        let mut isum = [i32x4_splat(0); N];
        for h in 0..2 {
            for j in 0..2 {
                // Groups 8h+j and 8h+2+j (values 16j.. and 32+16j.. of the
                // half): low nibbles of `lo` and `hi`; groups 8h+4+j and
                // 8h+6+j: their high nibbles. Bits 0-1, 2-3, 4-5 and 6-7 of
                // `qh`, moved to 4-5, complete the four.
                let lo = load(x, 64 * h + 16 * j);
                let hi = load(x, 64 * h + 32 + 16 * j);
                let qh = load(x, 128 + 32 * h + 16 * j);
                let g = 8 * h + j;
                let q = [
                    v128_or(v128_and(lo, m4), i8x16_shl(v128_and(qh, m3), 4)),
                    v128_or(v128_and(hi, m4), v128_and(i8x16_shl(qh, 2), m30)),
                    v128_or(u8x16_shr(lo, 4), v128_and(qh, m30)),
                    v128_or(u8x16_shr(hi, 4), v128_and(u8x16_shr(qh, 2), m30)),
                ];
                let s = |k: usize| i16x8_splat(i16::from(sc[g + 2 * k] as i8));
                let w = [
                    widen_scaled(q[0], s(0)),
                    widen_scaled(q[1], s(1)),
                    widen_scaled(q[2], s(2)),
                    widen_scaled(q[3], s(3)),
                ];
                for (acc, ys) in isum.iter_mut().zip(&acts) {
                    let y = &ys[i].qs;
                    let mut a = *acc;
                    for (k, wk) in w.iter().enumerate() {
                        a = dot16(a, wk, load_i8(y, 16 * (g + 2 * k)));
                    }
                    *acc = a;
                }
            }
        }
        for ((s, ys), acc) in sumf.iter_mut().zip(&acts).zip(isum) {
            let y = &ys[i];
            let b = load_i16x16(&y.bsums);
            let isum_mins = hsum_i32(i32x4_add(
                i32x4_dot_i16x8(b[0], scales[0]),
                i32x4_dot_i16x8(b[1], scales[1]),
            ));
            *s += xd * y.d * (hsum_i32(acc) - 32 * isum_mins) as f32;
        }
    }
    sumf
}

/// Q8_0 weights · Q8_0 activations, `N` tokens.
pub(super) fn dot_q8_0_q8_0<const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    q8_0_partner::<Q8_0, N>(row, acts)
}

/// Q5_0 weights · Q8_0 activations, `N` tokens.
pub(super) fn dot_q5_0_q8_0<const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    q8_0_partner::<Q5_0, N>(row, acts)
}

/// Q4_0 weights · Q8_0 activations, `N` tokens.
pub(super) fn dot_q4_0_q8_0<const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    q8_0_partner::<Q4_0, N>(row, acts)
}

/// Q4_K weights · Q8_K activations, `N` tokens.
pub(super) fn dot_q4_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    q4_k::<N>(row, acts)
}

/// Q5_K weights · Q8_K activations, `N` tokens.
pub(super) fn dot_q5_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    q5_k::<N>(row, acts)
}

/// Q6_K weights · Q8_K activations, `N` tokens.
pub(super) fn dot_q6_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    q6_k::<N>(row, acts)
}

#[cfg(test)]
mod tests {
    //! Each kernel, for one and four tokens, against the scalar reference
    //! (`dot_scalar`, core's `dot_block`) on random blocks.

    use super::*;
    use crate::kernels::dot_scalar;
    use crate::kernels::row_check::{self, random_acts, random_row, Rng};
    use wasm_chord_core::quant::{
        f32_to_f16_bits, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, GgmlBlock,
    };

    type Dot<A, const N: usize> = fn(&[u8], [&[A]; N]) -> [f32; N];

    /// A kernel's one- and four-token forms through the shared random-block
    /// check (`row_check::check`).
    fn check<B: GgmlBlock>(
        f16_at: &[usize],
        one: Dot<B::VecDotType, 1>,
        four: Dot<B::VecDotType, 4>,
    ) {
        row_check::check::<B>("simd128", f16_at, one, four);
    }

    #[test]
    fn simd128_q8_0_matches_reference() {
        check::<BlockQ8_0>(&[0], dot_q8_0_q8_0::<1>, dot_q8_0_q8_0::<4>);
    }

    #[test]
    fn simd128_q4_0_matches_reference() {
        check::<BlockQ4_0>(&[0], dot_q4_0_q8_0::<1>, dot_q4_0_q8_0::<4>);
    }

    #[test]
    fn simd128_q5_0_matches_reference() {
        check::<BlockQ5_0>(&[0], dot_q5_0_q8_0::<1>, dot_q5_0_q8_0::<4>);
    }

    #[test]
    fn simd128_q4_k_matches_reference() {
        check::<BlockQ4K>(&[0, 2], dot_q4_k_q8_k::<1>, dot_q4_k_q8_k::<4>);
    }

    #[test]
    fn simd128_q5_k_matches_reference() {
        check::<BlockQ5K>(&[0, 2], dot_q5_k_q8_k::<1>, dot_q5_k_q8_k::<4>);
    }

    #[test]
    fn simd128_q6_k_matches_reference() {
        check::<BlockQ6K>(&[208], dot_q6_k_q8_k::<1>, dot_q6_k_q8_k::<4>);
    }

    /// Not a test: the throughput of each kernel (one token) against its
    /// fallback (the portable kernel or the scalar reference, compiled here
    /// with simd128 too, i.e. what simd128 builds ran before these kernels),
    /// in GB/s of weight bytes, over ~3 MB of random rows (mostly
    /// cache-resident). Run by hand:
    ///
    /// ```sh
    /// RUSTFLAGS="-C target-feature=+simd128" \
    /// CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $PWD/scripts/wasi-run.mjs" \
    /// cargo test --release --target wasm32-wasip1 -p wasm-chord-cpu -- \
    ///   simd128_throughput --ignored --nocapture
    /// ```
    #[test]
    #[ignore = "benchmark, prints figures"]
    fn simd128_throughput_against_fallback() {
        use crate::kernels::portable;
        fn run<B: GgmlBlock>(
            name: &str,
            f16_at: &[usize],
            simd: Dot<B::VecDotType, 1>,
            fallback: fn(&[u8], &[B::VecDotType]) -> f32,
        ) {
            let mut rng = Rng(7);
            // 640-value rows (the default model's width) for the 32-value
            // blocks, 1024 for the 256-value ones.
            let nb = if B::BLCK_SIZE == 32 { 20 } else { 4 };
            let rows = (3 << 20) / (nb * B::TYPE_SIZE);
            let mut bytes = random_row::<B>(&mut rng, nb * rows, &[]);
            for blk in bytes.chunks_exact_mut(B::TYPE_SIZE) {
                for &o in f16_at {
                    let d = f32_to_f16_bits(0.01 + 0.01 * rng.f32());
                    blk[o..o + 2].copy_from_slice(&d.to_le_bytes());
                }
            }
            let acts = random_acts::<B>(&mut rng, nb, 1.0);
            let time = |f: &dyn Fn(&[u8]) -> f32| {
                let mut best = f64::INFINITY;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    let mut s = 0f32;
                    for row in bytes.chunks_exact(nb * B::TYPE_SIZE) {
                        s += f(std::hint::black_box(row));
                    }
                    std::hint::black_box(s);
                    best = best.min(t.elapsed().as_secs_f64());
                }
                bytes.len() as f64 / best / 1e9
            };
            let a = time(&|row| simd(row, [&acts])[0]);
            let b = time(&|row| fallback(row, &acts));
            eprintln!(
                "{name}: simd128 {a:.2} GB/s, fallback {b:.2} GB/s ({:.1}x)",
                a / b
            );
        }
        run::<BlockQ8_0>("Q8_0", &[0], dot_q8_0_q8_0::<1>, portable::dot_q8_0);
        run::<BlockQ4_0>("Q4_0", &[0], dot_q4_0_q8_0::<1>, portable::dot_q4_0);
        run::<BlockQ5_0>("Q5_0", &[0], dot_q5_0_q8_0::<1>, portable::dot_q5_0);
        run::<BlockQ4K>("Q4_K", &[0, 2], dot_q4_k_q8_k::<1>, dot_scalar::<BlockQ4K>);
        run::<BlockQ5K>("Q5_K", &[0, 2], dot_q5_k_q8_k::<1>, dot_scalar::<BlockQ5K>);
        run::<BlockQ6K>("Q6_K", &[208], dot_q6_k_q8_k::<1>, dot_scalar::<BlockQ6K>);
    }

    /// The dispatched entry points are these kernels in a simd128 build.
    #[test]
    fn entry_points_are_the_simd128_kernels() {
        let mut rng = Rng(42);
        let row = random_row::<BlockQ4K>(&mut rng, 4, &[0, 2]);
        let acts = random_acts::<BlockQ4K>(&mut rng, 4, 2.0);
        let [want] = dot_q4_k_q8_k::<1>(&row, [&acts]);
        assert_eq!(
            (super::super::Q4_K.one)(&row, &acts).to_bits(),
            want.to_bits()
        );
        let row = random_row::<BlockQ5_0>(&mut rng, 4, &[0]);
        let acts = random_acts::<BlockQ5_0>(&mut rng, 4, 2.0);
        let [want] = dot_q5_0_q8_0::<1>(&row, [&acts]);
        let got = (super::super::Q5_0.four)(&row, [&acts, &acts, &acts, &acts]);
        assert_eq!(got.map(f32::to_bits), [want.to_bits(); 4]);
    }
}
