//! Attention's two products in the order of ggml's f16 GEMM (llamafile's
//! tinyBLAS with 16 lanes), with AVX-512F where the CPU has it:
//!
//! - [`dot_rows`]: `q · k` for up to four cache rows at once; element `i`
//!   adds into lane `i % 16`, chunks in order, then [`reduce16`];
//! - [`weighted_rows`]: `Σ_j p_j · v_j` with row `j` adding into lane
//!   `j % 16` of each output, rows in order, the lanes reduced by
//!   [`reduce16`] at the end.
//!
//! Every factor is f16-valued (the cache, and `q` and the probabilities
//! rounded to f16 as ggml converts them), so each product is exact in f32
//! and a fused multiply-add gives the same sum as a multiply then an add:
//! the SIMD paths are bit-identical to the portable ones.
//!
//! The AVX-512 code is compiled where `build.rs` found Rust 1.89 or later
//! (the AVX-512 intrinsics' release), above the crate's MSRV.
#![cfg_attr(wasm_chord_avx512, allow(clippy::incompatible_msrv))]

use half::f16;

/// A cache element: f32 or f16.
pub(crate) trait KvElem: Copy + Send + Sync + 'static {
    /// The value as f32.
    fn f32(self) -> f32;
    /// Loads 16 values at `p` as f32.
    ///
    /// # Safety
    /// `p` must be valid for reading 16 elements; AVX-512F (and F16C for
    /// f16) must be available.
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl KvElem for f32 {
    #[inline]
    fn f32(self) -> f32 {
        self
    }
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const f32) -> std::arch::x86_64::__m512 {
        // SAFETY: per this function's contract.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
}

impl KvElem for f16 {
    #[inline]
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    #[inline]
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn load16(p: *const f16) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: per this function's contract (32 bytes at `p`).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
}

/// Whether the AVX-512F paths run (detected once).
#[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
fn has_avx512f() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("f16c"))
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves of 8, then of 4, then
/// `(t[0] + t[2]) + (t[1] + t[3])`.
pub(crate) fn reduce16(a: &[f32; 16]) -> f32 {
    let mut t3 = [0f32; 8];
    for k in 0..8 {
        t3[k] = a[8 + k] + a[k];
    }
    let mut t6 = [0f32; 4];
    for k in 0..4 {
        t6[k] = t3[4 + k] + t3[k];
    }
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// `q · row` for each of `rows` (each at least `q.len()` long, `q.len()` a
/// multiple of 16), in 16 lanes reduced by [`reduce16`].
pub(crate) fn dot_rows<T: KvElem, const N: usize>(q: &[f32], rows: [&[T]; N]) -> [f32; N] {
    let n = q.len();
    assert!(n % 16 == 0 && rows.iter().all(|r| r.len() >= n));
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if has_avx512f() {
        // SAFETY: AVX-512F and F16C were detected; lengths checked above.
        return unsafe { avx512::dot_rows(q, rows) };
    }
    rows.map(|r| {
        let mut lanes = [0f32; 16];
        for (x, y) in q.chunks_exact(16).zip(r.chunks_exact(16)) {
            for l in 0..16 {
                lanes[l] += x[l] * y[l].f32();
            }
        }
        reduce16(&lanes)
    })
}

/// Buffers [`weighted_rows`] reuses from call to call (one per thread).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    lanes: Vec<f32>,
    order: Vec<(usize, f32)>,
}

/// `out[d] = Σ_j p_j · row_j[d]` over `probs` (`(j, p_j)` in increasing
/// `j`, `row(j)` at least `out.len()` long): row `j` into lane `j % 16`,
/// the lanes reduced by [`reduce16`].
pub(crate) fn weighted_rows<'a, T: KvElem>(
    probs: &[(usize, f32)],
    row: impl Fn(usize) -> &'a [T],
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    let hd = out.len();
    let lanes = &mut scratch.lanes;
    lanes.clear();
    lanes.resize(16 * hd, 0.0);
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if hd % 16 == 0 && has_avx512f() {
        // Rows grouped by lane (a counting sort), in order within each.
        let mut starts = [0usize; 17];
        for &(j, _) in probs {
            assert!(row(j).len() >= hd);
            starts[j % 16 + 1] += 1;
        }
        for l in 0..16 {
            starts[l + 1] += starts[l];
        }
        let order = &mut scratch.order;
        order.clear();
        order.resize(probs.len(), (0, 0.0));
        let mut next = starts;
        for &(j, p) in probs {
            order[next[j % 16]] = (j, p);
            next[j % 16] += 1;
        }
        for l in 0..16 {
            // SAFETY: AVX-512F and F16C were detected; every row has at
            // least `hd` elements (checked above).
            unsafe {
                avx512::weighted_lane(
                    &order[starts[l]..starts[l + 1]],
                    &row,
                    &mut lanes[l * hd..(l + 1) * hd],
                )
            };
        }
        reduce_lanes(lanes, out);
        return;
    }
    for &(j, p) in probs {
        let lane = &mut lanes[(j % 16) * hd..(j % 16 + 1) * hd];
        for (a, &v) in lane.iter_mut().zip(row(j)) {
            *a += p * v.f32();
        }
    }
    reduce_lanes(lanes, out);
}

/// `out[d] = reduce16(lanes[0..16][d])`.
fn reduce_lanes(lanes: &[f32], out: &mut [f32]) {
    let hd = out.len();
    for (d, a) in out.iter_mut().enumerate() {
        let mut l = [0f32; 16];
        for (k, x) in l.iter_mut().enumerate() {
            *x = lanes[k * hd + d];
        }
        *a = reduce16(&l);
    }
}

#[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
mod avx512 {
    use super::KvElem;
    use std::arch::x86_64::*;

    /// [`super::reduce16`] of a register.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce16(a: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(a);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
        let t3 = _mm256_add_ps(hi, lo);
        let t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
        let x = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
        _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
    }

    /// See [`super::dot_rows`].
    ///
    /// # Safety
    /// AVX-512F and F16C; `q.len()` a multiple of 16, every row at least
    /// as long.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn dot_rows<T: KvElem, const N: usize>(
        q: &[f32],
        rows: [&[T]; N],
    ) -> [f32; N] {
        let mut acc = [_mm512_setzero_ps(); N];
        for c in (0..q.len()).step_by(16) {
            // SAFETY: `c + 16 <= q.len() <= row.len()`.
            unsafe {
                let qv = _mm512_loadu_ps(q.as_ptr().add(c));
                for (a, r) in acc.iter_mut().zip(&rows) {
                    *a = _mm512_fmadd_ps(qv, T::load16(r.as_ptr().add(c)), *a);
                }
            }
        }
        acc.map(|a| reduce16(a))
    }

    /// `lane[d] += p · row(j)[d]` for each `(j, p)` in order, in blocks
    /// of up to 128 columns held in registers.
    ///
    /// # Safety
    /// AVX-512F and F16C; `lane.len()` a multiple of 16; every row at least
    /// as long.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn weighted_lane<'a, T: KvElem>(
        rows: &[(usize, f32)],
        row: &impl Fn(usize) -> &'a [T],
        lane: &mut [f32],
    ) {
        let hd = lane.len();
        let mut c0 = 0;
        while c0 < hd {
            let n = ((hd - c0) / 16).min(8);
            // SAFETY: `c0 + 16 n <= hd`, per this function's contract.
            unsafe {
                match n {
                    8 => lane_block::<T, 8>(rows, row, lane, c0),
                    4..=7 => lane_block::<T, 4>(rows, row, lane, c0),
                    2 | 3 => lane_block::<T, 2>(rows, row, lane, c0),
                    _ => lane_block::<T, 1>(rows, row, lane, c0),
                }
            }
            c0 += 16
                * if n >= 8 {
                    8
                } else if n >= 4 {
                    4
                } else if n >= 2 {
                    2
                } else {
                    1
                };
        }
    }

    /// Columns `c0 .. c0 + 16 N` of [`weighted_lane`], in `N` registers.
    ///
    /// # Safety
    /// As [`weighted_lane`], and `c0 + 16 N <= lane.len()`.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn lane_block<'a, T: KvElem, const N: usize>(
        rows: &[(usize, f32)],
        row: &impl Fn(usize) -> &'a [T],
        lane: &mut [f32],
        c0: usize,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for &(j, p) in rows {
            let r = row(j).as_ptr();
            let pv = _mm512_set1_ps(p);
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: `c0 + 16k + 16 <= lane.len() <= row(j).len()`.
                let v = unsafe { T::load16(r.add(c0 + 16 * k)) };
                *a = _mm512_fmadd_ps(pv, v, *a);
            }
        }
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: `c0 + 16k + 16 <= lane.len()`.
            unsafe { _mm512_storeu_ps(lane.as_mut_ptr().add(c0 + 16 * k), *a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f16-valued random numbers (xorshift), with a spread of magnitudes.
    fn f16_values(n: usize, seed: u64) -> Vec<f16> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                let e = ((s >> 20) % 8) as i32 - 4;
                f16::from_f32(u * 2f32.powi(e))
            })
            .collect()
    }

    /// The written-out order: 16 lanes, separate multiply and add.
    fn lanes_dot(q: &[f32], r: &[f32]) -> f32 {
        let mut lanes = [0f32; 16];
        for (i, (x, y)) in q.iter().zip(r).enumerate() {
            lanes[i % 16] += x * y;
        }
        reduce16(&lanes)
    }

    #[test]
    fn dot_rows_is_the_16_lane_order_bit_for_bit() {
        for hd in [16usize, 48, 256, 272] {
            let q: Vec<f32> = f16_values(hd, hd as u64 + 1)
                .iter()
                .map(|v| v.to_f32())
                .collect();
            let rows16: Vec<Vec<f16>> = (0..4).map(|i| f16_values(hd, 100 + i)).collect();
            let rows32: Vec<Vec<f32>> = rows16
                .iter()
                .map(|r| r.iter().map(|v| v.to_f32()).collect())
                .collect();
            let want: Vec<f32> = rows32.iter().map(|r| lanes_dot(&q, r)).collect();
            let got32 = dot_rows(&q, [&rows32[0][..], &rows32[1], &rows32[2], &rows32[3]]);
            let got16 = dot_rows(&q, [&rows16[0][..], &rows16[1], &rows16[2], &rows16[3]]);
            let [one] = dot_rows(&q, [&rows32[2][..]]);
            for i in 0..4 {
                assert_eq!(got32[i].to_bits(), want[i].to_bits(), "hd={hd} f32 row {i}");
                assert_eq!(got16[i].to_bits(), want[i].to_bits(), "hd={hd} f16 row {i}");
            }
            assert_eq!(one.to_bits(), want[2].to_bits());
            assert!(want.iter().all(|&w| w != 0.0));
        }
    }

    #[test]
    fn weighted_rows_is_the_16_lane_order_bit_for_bit() {
        let mut scratch = Scratch::default();
        for (hd, n_rows) in [
            (16usize, 5usize),
            (48, 40),
            (64, 50),
            (112, 20),
            (256, 70),
            (272, 33),
        ] {
            let rows16 = f16_values(hd * n_rows, hd as u64 + 7);
            let rows32: Vec<f32> = rows16.iter().map(|v| v.to_f32()).collect();
            // Every third row masked; probabilities f16-valued.
            let probs: Vec<(usize, f32)> = f16_values(n_rows, 9)
                .iter()
                .enumerate()
                .filter(|(j, _)| j % 3 != 1)
                .map(|(j, p)| (j, p.to_f32().abs()))
                .collect();
            let mut lanes = vec![0f32; 16 * hd];
            for &(j, p) in &probs {
                for d in 0..hd {
                    lanes[(j % 16) * hd + d] += p * rows32[j * hd + d];
                }
            }
            let mut want = vec![0f32; hd];
            reduce_lanes(&lanes, &mut want);
            let mut got32 = vec![0f32; hd];
            weighted_rows(
                &probs,
                |j| &rows32[j * hd..(j + 1) * hd],
                &mut got32,
                &mut scratch,
            );
            let mut got16 = vec![0f32; hd];
            weighted_rows(
                &probs,
                |j| &rows16[j * hd..(j + 1) * hd],
                &mut got16,
                &mut scratch,
            );
            for d in 0..hd {
                assert_eq!(got32[d].to_bits(), want[d].to_bits(), "hd={hd} d={d}");
                assert_eq!(got16[d].to_bits(), want[d].to_bits(), "hd={hd} d={d}");
            }
            assert!(want.iter().any(|&w| w != 0.0));
        }
    }
}
