//! AVX2 + FMA (+ F16C) row dot products over raw GGUF weight bytes, ported
//! from ggml-cpu's `arch/x86/quants.c` (`ggml_vec_dot_*` under `__AVX2__`).
//!
//! Each function takes one weight row as its stored bytes and the row's
//! activation blocks, walks both together (`chunks_exact(TYPE_SIZE).zip`, so
//! a short slice only shortens the dot, never reads out of bounds), and
//! returns the dot product. Loads are unaligned: GGUF rows sit at any offset.
//!
//! Every function here is `unsafe` only because it needs the CPU features it
//! is compiled for; `super` calls them after checking them at run time.
// The intrinsics are safe inside `#[target_feature]` functions from Rust 1.87
// on; the crate's MSRV (1.80) still needs them inside `unsafe` blocks.
#![allow(unused_unsafe)]

use std::arch::x86_64::*;
use wasm_chord_core::quant::{BlockQ8K, BlockQ8_0};

/// f16 bits to f32 with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fp16(bits: u16) -> f32 {
    // SAFETY: F16C is enabled for this function; its callers run only where
    // the CPU has it.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)))) }
}

/// Little-endian u16 at `b[0..2]`.
#[inline]
fn le16(b: &[u8]) -> u16 {
    match b {
        [a, c, ..] => u16::from_le_bytes([*a, *c]),
        _ => 0,
    }
}

/// Sum of the 8 lanes, in ggml's `hsum_float_8` order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_float_8(x: __m256) -> f32 {
    // SAFETY: AVX is enabled for this function.
    unsafe {
        let mut res = _mm256_extractf128_ps(x, 1);
        res = _mm_add_ps(res, _mm256_castps256_ps128(x));
        res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }
}

/// 32 bits to 32 bytes: 0xFF where the bit is set (`bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_from_bits_32(x32: u32) -> __m256i {
    // SAFETY: AVX2 is enabled for this function.
    unsafe {
        let shuf_mask = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32 as i32), shuf_mask);
        let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        let bytes = _mm256_or_si256(bytes, bit_mask);
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }
}

/// 16 bytes of nibbles to 32 bytes: low nibbles first, then high nibbles.
///
/// # Safety
/// `p` must be valid for reading 16 bytes; AVX2 must be available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `p` (unaligned load).
    unsafe {
        let tmp = _mm_loadu_si128(p.cast());
        let bytes = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
        _mm256_and_si256(_mm256_set1_epi8(0xF), bytes)
    }
}

/// Unsigned × signed int8 products summed in groups of 4, as 8 floats: the
/// second half of ggml's `mul_sum_i8_pairs_float`, for a weight vector whose
/// absolute value `ax` is shared by several activation vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    // SAFETY: AVX2 is enabled for this function.
    unsafe {
        let dot = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
    }
}

/// Blocks all inputs have: the shortest of the row and the activations.
#[inline]
fn n_blocks<A, const N: usize>(row: &[u8], type_size: usize, acts: &[&[A]; N]) -> usize {
    acts.iter()
        .fold(row.len() / type_size, |m, a| m.min(a.len()))
}

/// One row of 32-value weight blocks, each decoded by `decode` into 32 signed
/// bytes (never -128), against `N` tokens' Q8_0 activations: the weight block
/// is decoded once for all tokens. For each token the arithmetic and its
/// order are ggml's (`mul_sum_i8_pairs_float`, one FMA per block, then
/// `hsum_float_8`).
macro_rules! q8_0_partner {
    ($(#[$doc:meta])* $name:ident, $ts:expr, |$x:ident| $decode:block) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $name<const N: usize>(
            row: &[u8],
            acts: [&[BlockQ8_0]; N],
        ) -> [f32; N] {
            // SAFETY: features per this function's contract. `$x` is one
            // whole block of `$ts` bytes (the decoder's loads stay inside it,
            // see each decoder); `i < nb` bounds every activation slice, and
            // `y.qs` has 32 bytes.
            unsafe {
                let nb = n_blocks(row, $ts, &acts);
                let mut acc = [_mm256_setzero_ps(); N];
                for (i, $x) in row.chunks_exact($ts).take(nb).enumerate() {
                    let dx = fp16(le16($x));
                    let qx: __m256i = $decode;
                    let ax = _mm256_sign_epi8(qx, qx);
                    for (a, ys) in acc.iter_mut().zip(&acts) {
                        let y = &ys[i];
                        let d = _mm256_set1_ps(dx * fp16(y.d));
                        let qy = _mm256_loadu_si256(y.qs.as_ptr().cast());
                        let p = mul_sum_us8_pairs_float(ax, _mm256_sign_epi8(qy, qx));
                        *a = _mm256_fmadd_ps(d, p, *a);
                    }
                }
                let mut out = [0f32; N];
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = hsum_float_8(a);
                }
                out
            }
        }
    };
}

q8_0_partner!(
    /// Q8_0 weights · Q8_0 activations (34-byte blocks: d, 32 quants at 2).
    dot_q8_0_q8_0,
    34,
    |x| { _mm256_loadu_si256(x.as_ptr().add(2).cast()) }
);

q8_0_partner!(
    /// Q5_0 weights · Q8_0 activations (22-byte blocks: d, qh 4 bytes at 2,
    /// 16 nibble bytes at 6); values without their fifth bit become
    /// `nibble - 16` through the `0xF0` or-mask, as in ggml.
    dot_q5_0_q8_0,
    22,
    |x| {
        let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
        let bxhi = _mm256_andnot_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0xF0u8 as i8));
        _mm256_or_si256(bytes_from_nibbles_32(x.as_ptr().add(6)), bxhi)
    }
);

q8_0_partner!(
    /// Q4_0 weights · Q8_0 activations (18-byte blocks: d, 16 nibble bytes
    /// at 2); values are `nibble - 8`.
    dot_q4_0_q8_0,
    18,
    |x| { _mm256_sub_epi8(bytes_from_nibbles_32(x.as_ptr().add(2)), _mm256_set1_epi8(8)) }
);

/// `get_scale_shuffle_k4`: picks scale `i` for 32 int16 lanes.
static K_SHUFFLE_K4: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let row = i / 32;
        t[i] = (2 * row + (i % 2)) as u8;
        i += 1;
    }
    t
};

/// `get_scale_shuffle`: scales `2i` and `2i+1`, 8 copies each.
static K_SHUFFLE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = (i / 8) as u8;
        i += 1;
    }
    t
};

/// The 8 scales and 8 mins of a Q4_K/Q5_K block, as ggml's `utmp` unpacking.
#[inline]
fn k4_scales_mins(s: &[u8]) -> [u32; 4] {
    let w = |i: usize| {
        s.get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let mut u = [w(0), w(1), w(2), 0];
    u[3] = ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4);
    let uaux = u[1] & KMASK1;
    u[1] = (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4);
    u[2] = uaux;
    u[0] &= KMASK1;
    u
}

/// Q4_K weights · Q8_K activations, for `N` tokens at once (the scales and
/// the nibbles of each weight block are unpacked once for all tokens).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    // SAFETY: features per this function's contract. Each `x` has 144 bytes
    // (d 2, dmin 2, scales 12, qs 128): the four 32-byte loads from offset 16
    // end at 144. `i < nb` bounds every activation slice; `y.qs` has 256
    // bytes (eight 32-byte loads), `y.bsums` 16 i16 (one 32-byte load). The
    // shuffle table has 8 rows of 32 bytes.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let nb = n_blocks(row, 144, &acts);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut acc_m = [_mm_setzero_ps(); N];
        let shuf = K_SHUFFLE_K4.as_ptr().cast::<__m256i>();
        for (i, x) in row.chunks_exact(144).take(nb).enumerate() {
            let xd = fp16(le16(x));
            let xdmin = fp16(le16(&x[2..]));
            let u = k4_scales_mins(&x[4..16]);
            let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(
                u[3] as i32,
                u[2] as i32,
                u[1] as i32,
                u[0] as i32,
            ));
            let mins = _mm256_extracti128_si256(mins_and_scales, 1);
            let sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
            let scales = _mm256_set_m128i(sc128, sc128);
            for (am, ys) in acc_m.iter_mut().zip(&acts) {
                let y = &ys[i];
                let q8sums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                let q8s = _mm_hadd_epi16(
                    _mm256_extracti128_si256(q8sums, 0),
                    _mm256_extracti128_si256(q8sums, 1),
                );
                let prod = _mm_madd_epi16(mins, q8s);
                *am = _mm_fmadd_ps(_mm_set1_ps(-y.d * xdmin), _mm_cvtepi32_ps(prod), *am);
            }
            let mut sumi = [_mm256_setzero_si256(); N];
            let q4 = x.as_ptr().add(16);
            for j in 0..4 {
                let scale_l = _mm256_shuffle_epi8(scales, _mm256_loadu_si256(shuf.add(2 * j)));
                let scale_h = _mm256_shuffle_epi8(scales, _mm256_loadu_si256(shuf.add(2 * j + 1)));
                let q4bits = _mm256_loadu_si256(q4.add(32 * j).cast());
                let q4l = _mm256_and_si256(q4bits, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
                for (s, ys) in sumi.iter_mut().zip(&acts) {
                    let q8 = ys[i].qs.as_ptr();
                    let q8l = _mm256_loadu_si256(q8.add(64 * j).cast());
                    let p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, q8l));
                    let q8h = _mm256_loadu_si256(q8.add(64 * j + 32).cast());
                    let p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, q8h));
                    *s = _mm256_add_epi32(*s, _mm256_add_epi32(p16l, p16h));
                }
            }
            for ((a, s), ys) in acc.iter_mut().zip(sumi).zip(&acts) {
                let d = _mm256_set1_ps(ys[i].d * xd);
                *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *a);
            }
        }
        let mut out = [0f32; N];
        for ((o, a), mut m) in out.iter_mut().zip(acc).zip(acc_m) {
            m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            *o = hsum_float_8(a) + _mm_cvtss_f32(m);
        }
        out
    }
}

/// Q5_K weights · Q8_K activations, for `N` tokens at once (scales and the
/// 5-bit values of each weight block are unpacked once for all tokens).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q5_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    // SAFETY: features per this function's contract. Each `x` has 176 bytes
    // (d 2, dmin 2, scales 12, qh 32 at 16, qs 128 at 48): qh is one 32-byte
    // load, qs four 32-byte loads ending at 176. `i < nb` bounds every
    // activation slice; `y.qs` has 256 bytes (eight 32-byte loads),
    // `y.bsums` 16 i16 (one 32-byte load). The shuffle table has 8 rows of 32.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let mzero = _mm_setzero_si128();
        let nb = n_blocks(row, 176, &acts);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut summs = [0f32; N];
        let shuf = K_SHUFFLE_K4.as_ptr().cast::<__m256i>();
        for (i, x) in row.chunks_exact(176).take(nb).enumerate() {
            let xd = fp16(le16(x));
            let xdmin = fp16(le16(&x[2..]));
            let u = k4_scales_mins(&x[4..16]);
            let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(
                u[3] as i32,
                u[2] as i32,
                u[1] as i32,
                u[0] as i32,
            ));
            let mins = _mm256_extracti128_si256(mins_and_scales, 1);
            for (sm, ys) in summs.iter_mut().zip(&acts) {
                let y = &ys[i];
                let q8sums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                let q8s = _mm_hadd_epi16(
                    _mm256_extracti128_si256(q8sums, 0),
                    _mm256_extracti128_si256(q8sums, 1),
                );
                let prod = _mm_madd_epi16(mins, q8s);
                let hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
                *sm += -y.d * xdmin * _mm_cvtsi128_si32(hsum) as f32;
            }
            let sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
            let scales = _mm256_set_m128i(sc128, sc128);
            let hbits = _mm256_loadu_si256(x.as_ptr().add(16).cast());
            let q5 = x.as_ptr().add(48);
            let mut sumi = [_mm256_setzero_si256(); N];
            for j in 0..4 {
                let scale_0 = _mm256_shuffle_epi8(scales, _mm256_loadu_si256(shuf.add(2 * j)));
                let scale_1 = _mm256_shuffle_epi8(scales, _mm256_loadu_si256(shuf.add(2 * j + 1)));
                let q5bits = _mm256_loadu_si256(q5.add(32 * j).cast());
                // Bits 2j and 2j+1 of each qh byte are the fifth bits.
                let shift = _mm_cvtsi32_si128(2 * j as i32);
                let h = _mm256_srl_epi16(hbits, shift);
                let q5h_0 = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(1)), 4);
                let q5h_1 = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(2)), 3);
                let q5_0 = _mm256_add_epi8(_mm256_and_si256(q5bits, m4), q5h_0);
                let q5_1 =
                    _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4), q5h_1);
                for (s, ys) in sumi.iter_mut().zip(&acts) {
                    let q8 = ys[i].qs.as_ptr();
                    let q8_0 = _mm256_loadu_si256(q8.add(64 * j).cast());
                    let q8_1 = _mm256_loadu_si256(q8.add(64 * j + 32).cast());
                    let p16_0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, q8_0));
                    let p16_1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, q8_1));
                    *s = _mm256_add_epi32(*s, _mm256_add_epi32(p16_0, p16_1));
                }
            }
            for ((a, s), ys) in acc.iter_mut().zip(sumi).zip(&acts) {
                let d = _mm256_set1_ps(ys[i].d * xd);
                *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *a);
            }
        }
        let mut out = [0f32; N];
        for ((o, a), sm) in out.iter_mut().zip(acc).zip(summs) {
            *o = hsum_float_8(a) + sm;
        }
        out
    }
}

/// Two Q6_K sub-block scales picked by one `K_SHUFFLE` row, as 16 int16.
///
/// # Safety
/// `row` must be valid for reading 16 bytes; AVX2 must be available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale16(scales: __m128i, row: *const __m128i) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `row`.
    unsafe { _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, _mm_loadu_si128(row))) }
}

/// Q6_K weights · Q8_K activations, for `N` tokens at once (each weight
/// block's 6-bit values and scales are unpacked once for all tokens).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q6_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    // SAFETY: features per this function's contract. Each `x` has 210 bytes
    // (ql 128, qh 64, scales 16, d 2): ql is read as 4×32 bytes from 0, qh as
    // 2×32 from 128, scales as 16 from 192. `i < nb` bounds every activation
    // slice; `y.qs` (256 bytes) is read as 8×32, `y.bsums` (16 i16) as 32
    // bytes; `K_SHUFFLE` has 8 rows of 16.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let nb = n_blocks(row, 210, &acts);
        let mut acc = [_mm256_setzero_ps(); N];
        let shuf = K_SHUFFLE.as_ptr().cast::<__m128i>();
        for (i, x) in row.chunks_exact(210).take(nb).enumerate() {
            let xd = fp16(le16(&x[208..]));
            let scales = _mm_loadu_si128(x.as_ptr().add(192).cast());
            let scales_16 = _mm256_cvtepi8_epi16(scales);
            let mut sumi = [_mm256_setzero_si256(); N];
            for j in 0..2 {
                let q4 = x.as_ptr().add(64 * j);
                let qh = x.as_ptr().add(128 + 32 * j);
                let q4bits1 = _mm256_loadu_si256(q4.cast());
                let q4bits2 = _mm256_loadu_si256(q4.add(32).cast());
                let q4bits_h = _mm256_loadu_si256(qh.cast());

                let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m3), 4);
                let q4h_1 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)), 2);
                let q4h_2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
                let q4h_3 = _mm256_srli_epi16(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)), 2);

                let q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0);
                let q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1);
                let q4_2 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m15), q4h_2);
                let q4_3 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m15), q4h_3);
                let is = 4 * j;
                let sc_0 = scale16(scales, shuf.add(is));
                let sc_1 = scale16(scales, shuf.add(is + 1));
                let sc_2 = scale16(scales, shuf.add(is + 2));
                let sc_3 = scale16(scales, shuf.add(is + 3));

                for (s, ys) in sumi.iter_mut().zip(&acts) {
                    let q8 = ys[i].qs.as_ptr().add(128 * j);
                    let p16_0 = _mm256_maddubs_epi16(q4_0, _mm256_loadu_si256(q8.cast()));
                    let p16_1 = _mm256_maddubs_epi16(q4_1, _mm256_loadu_si256(q8.add(32).cast()));
                    let p16_2 = _mm256_maddubs_epi16(q4_2, _mm256_loadu_si256(q8.add(64).cast()));
                    let p16_3 = _mm256_maddubs_epi16(q4_3, _mm256_loadu_si256(q8.add(96).cast()));
                    let p16_0 = _mm256_madd_epi16(sc_0, p16_0);
                    let p16_1 = _mm256_madd_epi16(sc_1, p16_1);
                    let p16_2 = _mm256_madd_epi16(sc_2, p16_2);
                    let p16_3 = _mm256_madd_epi16(sc_3, p16_3);
                    *s = _mm256_add_epi32(*s, _mm256_add_epi32(p16_0, p16_1));
                    *s = _mm256_add_epi32(*s, _mm256_add_epi32(p16_2, p16_3));
                }
            }
            for ((a, s), ys) in acc.iter_mut().zip(sumi).zip(&acts) {
                let y = &ys[i];
                let q8sums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                let q8sclsub = _mm256_slli_epi32(_mm256_madd_epi16(q8sums, scales_16), 5);
                let s = _mm256_sub_epi32(s, q8sclsub);
                let d = _mm256_set1_ps(y.d * xd);
                *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *a);
            }
        }
        let mut out = [0f32; N];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum_float_8(a);
        }
        out
    }
}
