//! AVX-512 (F, BW, VL, VNNI) register-tiled micro-kernels for prompt
//! batches (see `tiled` for the data layout and the arithmetic).
//!
//! Every function here is `unsafe` only because it needs the CPU features it
//! is compiled for; `super` calls them after checking them at run time.
//!
//! The module is compiled only where `build.rs` found Rust 1.89 or later
//! (the AVX-512 intrinsics' release), above the crate's MSRV.
#![allow(clippy::incompatible_msrv)]
// Tiles index their accumulators by row and pair.
#![allow(clippy::needless_range_loop)]

use super::tiled::{PairBlock, PairBlockK, WBlock, WBlockQ4K, WBlockQ6K};
use std::arch::x86_64::*;

/// Sum of the 8 lanes of `x`, in ggml's `hsum_float_8` order.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_float_8(x: __m256) -> f32 {
    let mut res = _mm256_extractf128_ps(x, 1);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

/// `R` decoded weight rows × `P` token pairs over `nb` blocks: `w` holds
/// `R · nb` blocks (row-major), `acts` `P · nb` (pair-major). Returns
/// `out[r][p] = [row r · token 2p, row r · token 2p+1]`.
///
/// Per block, each row's 32 values are broadcast to both 256-bit halves and
/// dotted with a pair's two tokens at once: `vpdpbusd` from the pair's
/// correction gives the exact integer sums of the eight groups of four of
/// both tokens; then, per lane, `acc = fma(d_w · d_x, sum, acc)`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI, AVX2 and FMA;
/// `w.len() >= R · nb` and `acts.len() >= P · nb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(super) unsafe fn q8_0_partner_tile<const R: usize, const P: usize>(
    w: &[WBlock],
    acts: &[PairBlock],
    nb: usize,
) -> [[[f32; 2]; P]; R] {
    assert!(w.len() >= R * nb && acts.len() >= P * nb);
    let wp = w.as_ptr();
    let ap = acts.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for i in 0..nb {
        let mut a = [_mm512_setzero_si512(); P];
        let mut c = [_mm512_setzero_si512(); P];
        let mut dy = [_mm512_setzero_ps(); P];
        for p in 0..P {
            // SAFETY: `p · nb + i < P · nb <= acts.len()`; `PairBlock` is
            // 64-byte aligned and its fields are 64 bytes each.
            unsafe {
                let b = &*ap.add(p * nb + i);
                a[p] = _mm512_load_si512(b.qs.as_ptr().cast());
                c[p] = _mm512_load_si512(b.corr.as_ptr().cast());
                dy[p] = _mm512_load_ps(b.d.as_ptr());
            }
        }
        for r in 0..R {
            // SAFETY: `r · nb + i < R · nb <= w.len()`; `q` has 32 bytes.
            let (wv, dx) = unsafe {
                let b = &*wp.add(r * nb + i);
                let q = _mm256_loadu_si256(b.q.as_ptr().cast());
                (_mm512_broadcast_i64x4(q), _mm512_set1_ps(b.d))
            };
            for p in 0..P {
                let s = _mm512_dpbusd_epi32(c[p], wv, a[p]);
                let d = _mm512_mul_ps(dx, dy[p]);
                acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[r][p]);
            }
        }
    }
    halves_hsum(acc)
}

/// The low and high 256-bit halves of `a`.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
fn halves(a: __m512) -> (__m256, __m256) {
    let lo = _mm512_castps512_ps256(a);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    (lo, hi)
}

/// `hsum_float_8` of both halves of every accumulator.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn halves_hsum<const R: usize, const P: usize>(acc: [[__m512; P]; R]) -> [[[f32; 2]; P]; R] {
    let mut out = [[[0f32; 2]; P]; R];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, a) in o.iter_mut().zip(a) {
            let (lo, hi) = halves(a);
            *o = [hsum_float_8(lo), hsum_float_8(hi)];
        }
    }
    out
}

/// `R` decoded Q6_K rows × `P` token pairs over `nb` blocks (see
/// `tiled::Q6K` for the arithmetic): per chunk of 32 values,
/// `vpmaddubsw` of the values (broadcast to both halves) with both tokens'
/// quants, then `vpdpwssd` with the chunk's scales into the block's int32
/// lanes, which start from `-32 · Σ bsum · scale` (also `vpdpwssd`).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI, AVX2 and FMA;
/// `w.len() >= R · nb` and `acts.len() >= P · nb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(super) unsafe fn q6_k_tile<const R: usize, const P: usize>(
    w: &[WBlockQ6K],
    acts: &[PairBlockK],
    nb: usize,
) -> [[[f32; 2]; P]; R] {
    assert!(w.len() >= R * nb && acts.len() >= P * nb);
    let wp = w.as_ptr();
    let ap = acts.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for i in 0..nb {
        // SAFETY (all the loads below): `p · nb + i < P · nb <= acts.len()`
        // and `r · nb + i < R · nb <= w.len()`; every load is inside one
        // field (`qs` 512 bytes read as 8 × 64, `bsums` and `d` 64 bytes,
        // `q` 256 bytes as 8 × 32, `sc` 8 × 32 bytes, `neg32_sc` 32 bytes);
        // the aligned loads are at multiples of 64 in 64-aligned blocks.
        let mut sumi = [[_mm512_setzero_si512(); P]; R];
        let mut bs = [_mm512_setzero_si512(); P];
        for (p, b) in bs.iter_mut().enumerate() {
            *b = unsafe { _mm512_load_si512((*ap.add(p * nb + i)).bsums.as_ptr().cast()) };
        }
        for (r, s) in sumi.iter_mut().enumerate() {
            let n32 = unsafe {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    (*wp.add(r * nb + i)).neg32_sc.as_ptr().cast(),
                ))
            };
            for (s, b) in s.iter_mut().zip(bs) {
                *s = _mm512_dpwssd_epi32(*s, b, n32);
            }
        }
        for c in 0..8 {
            let mut a = [_mm512_setzero_si512(); P];
            for (p, a) in a.iter_mut().enumerate() {
                *a = unsafe {
                    _mm512_load_si512((*ap.add(p * nb + i)).qs.as_ptr().add(64 * c).cast())
                };
            }
            for (r, s) in sumi.iter_mut().enumerate() {
                let (wq, sc) = unsafe {
                    let b = &*wp.add(r * nb + i);
                    (
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(b.q.as_ptr().add(32 * c).cast())),
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(b.sc[c].as_ptr().cast())),
                    )
                };
                for (s, a) in s.iter_mut().zip(a) {
                    *s = _mm512_dpwssd_epi32(*s, _mm512_maddubs_epi16(wq, a), sc);
                }
            }
        }
        for p in 0..P {
            let dy = unsafe { _mm512_load_ps((*ap.add(p * nb + i)).d.as_ptr()) };
            for r in 0..R {
                let dx = unsafe { _mm512_set1_ps((*wp.add(r * nb + i)).d) };
                let d = _mm512_mul_ps(dy, dx);
                acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[r][p]), acc[r][p]);
            }
        }
    }
    halves_hsum(acc)
}

/// `R` decoded Q4_K rows × `P` token pairs over `nb` blocks (see
/// `tiled::Q4K` for the arithmetic): per chunk of 32 values, `vpmaddubsw`
/// of the values (broadcast to both halves) with both tokens' quants, then
/// `vpdpwssd` with the chunk's scale; the mins' lanes in a second pass.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI, AVX2 and FMA;
/// `w.len() >= R · nb` and `acts.len() >= P · nb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(super) unsafe fn q4_k_tile<const R: usize, const P: usize>(
    w: &[WBlockQ4K],
    acts: &[PairBlockK],
    nb: usize,
) -> [[[f32; 2]; P]; R] {
    assert!(w.len() >= R * nb && acts.len() >= P * nb);
    let wp = w.as_ptr();
    let ap = acts.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for i in 0..nb {
        // SAFETY (all the loads below): as in `q6_k_tile` (`q` 256 bytes
        // read as 8 × 32, `sc` 8 × 4 bytes).
        let mut sumi = [[_mm512_setzero_si512(); P]; R];
        for c in 0..8 {
            let mut a = [_mm512_setzero_si512(); P];
            for (p, a) in a.iter_mut().enumerate() {
                *a = unsafe {
                    _mm512_load_si512((*ap.add(p * nb + i)).qs.as_ptr().add(64 * c).cast())
                };
            }
            for (r, s) in sumi.iter_mut().enumerate() {
                let (wq, sc) = unsafe {
                    let b = &*wp.add(r * nb + i);
                    (
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(b.q.as_ptr().add(32 * c).cast())),
                        _mm512_set1_epi32(b.sc[c] as i32),
                    )
                };
                for (s, a) in s.iter_mut().zip(a) {
                    *s = _mm512_dpwssd_epi32(*s, _mm512_maddubs_epi16(wq, a), sc);
                }
            }
        }
        for p in 0..P {
            let dy = unsafe { _mm512_load_ps((*ap.add(p * nb + i)).d.as_ptr()) };
            for r in 0..R {
                let dx = unsafe { _mm512_set1_ps((*wp.add(r * nb + i)).d) };
                let d = _mm512_mul_ps(dy, dx);
                acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[r][p]), acc[r][p]);
            }
        }
    }
    let mut acc_m = [[_mm256_setzero_ps(); P]; R];
    for i in 0..nb {
        for p in 0..P {
            // SAFETY: as above (`sums32` and `neg_d` 32 bytes each, `mins`
            // 32 bytes).
            let (s32, nd) = unsafe {
                let b = &*ap.add(p * nb + i);
                (
                    _mm256_loadu_si256(b.sums32.as_ptr().cast()),
                    _mm256_loadu_ps(b.neg_d.as_ptr()),
                )
            };
            for r in 0..R {
                let (mins, dmin) = unsafe {
                    let b = &*wp.add(r * nb + i);
                    (
                        _mm256_loadu_si256(b.mins.as_ptr().cast()),
                        _mm256_set1_ps(b.dmin),
                    )
                };
                let prod = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, s32));
                acc_m[r][p] = _mm256_fmadd_ps(_mm256_mul_ps(nd, dmin), prod, acc_m[r][p]);
            }
        }
    }
    let mut out = [[[0f32; 2]; P]; R];
    for ((o, a), m) in out.iter_mut().zip(acc).zip(acc_m) {
        for ((o, a), m) in o.iter_mut().zip(a).zip(m) {
            let (lo, hi) = halves(a);
            let (mlo, mhi) = (_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            *o = [hsum_float_8(lo) + hsum4(mlo), hsum_float_8(hi) + hsum4(mhi)];
        }
    }
    out
}

/// Sum of 4 lanes as the Q4_K AVX2 kernel reduces its mins: lanes 2-3 onto
/// 0-1, then lane 1 onto 0.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum4(m: __m128) -> f32 {
    let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
}

/// One stored weight row of a Q8_0-partner type (`KIND`: 0 Q8_0, 1 Q5_0,
/// 2 Q4_0; `ts` bytes a block) against one token's activations (the low
/// halves of `acts`, see `tiled::PairBlock`), for generation: per block the
/// values are decoded as unsigned bytes (`tiled::Kind::decode`'s), dotted
/// by `vpdpbusd` from the block's correction, and
/// `acc = fma(d_w · d_x, sum, acc)` per lane, then `hsum_float_8`: the
/// AVX2 row kernels' arithmetic and order, in fewer instructions. The
/// weight scale is read from `f16_table` (all 65536 f16 values as f32).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI, AVX2 and FMA;
/// `f16_table.len() == 65536`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(super) unsafe fn q8_0_partner_row<const KIND: u8>(
    row: &[u8],
    ts: usize,
    acts: &[PairBlock],
    f16_table: &[f32],
) -> f32 {
    assert!(f16_table.len() == 65536 && ts >= 18);
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    for (x, a) in row.chunks_exact(ts).zip(acts) {
        // SAFETY: `x` is one whole block (`ts` bytes: 34 for Q8_0, whose
        // quants are 32 bytes at 2; 22 for Q5_0, qh 4 bytes at 2 and 16
        // nibble bytes at 6; 18 for Q4_0, 16 nibble bytes at 2); `a`'s
        // fields are 64-byte aligned and at least 32 bytes; the table
        // index is a u16.
        unsafe {
            let dx = *f16_table.get_unchecked(usize::from(u16::from_le_bytes([x[0], x[1]])));
            let d = _mm256_mul_ps(_mm256_set1_ps(dx), _mm256_load_ps(a.d.as_ptr()));
            let w = match KIND {
                0 => _mm256_xor_si256(
                    _mm256_loadu_si256(x.as_ptr().add(2).cast()),
                    _mm256_set1_epi8(0x80u8 as i8),
                ),
                1 => {
                    let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                    let b = _mm_loadu_si128(x.as_ptr().add(6).cast());
                    let n = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), m4);
                    _mm256_mask_add_epi8(n, qh, n, _mm256_set1_epi8(0x10))
                }
                _ => {
                    let b = _mm_loadu_si128(x.as_ptr().add(2).cast());
                    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), m4)
                }
            };
            let s = _mm256_dpbusd_epi32(
                _mm256_load_si256(a.corr.as_ptr().cast()),
                w,
                _mm256_load_si256(a.qs.as_ptr().cast()),
            );
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
        }
    }
    hsum_float_8(acc)
}
