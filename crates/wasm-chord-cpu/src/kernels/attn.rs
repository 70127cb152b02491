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

/// `q · row(j)` for each `j` of `idx`, appended to `out`: 16 lanes
/// reduced by [`reduce16`] (`q.len()` a multiple of 16, every row at least
/// as long).
pub(crate) fn dot_rows<'a, T: KvElem>(
    q: &[f32],
    idx: &[usize],
    row: impl Fn(usize) -> &'a [T],
    out: &mut Vec<f32>,
) {
    let n = q.len();
    assert!(n.is_multiple_of(16) && idx.iter().all(|&j| row(j).len() >= n));
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if has_avx512f() {
        // SAFETY: AVX-512F and F16C were detected; lengths checked above.
        unsafe { avx512::dot_rows(q, idx, &row, out) };
        return;
    }
    for &j in idx {
        let mut lanes = [0f32; 16];
        for (x, y) in q.chunks_exact(16).zip(row(j).chunks_exact(16)) {
            for l in 0..16 {
                lanes[l] += x[l] * y[l].f32();
            }
        }
        out.push(reduce16(&lanes));
    }
}

/// Buffers [`weighted_rows`] reuses from call to call (one per thread).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    lanes: Vec<f32>,
    #[cfg_attr(not(all(target_arch = "x86_64", wasm_chord_avx512)), allow(dead_code))]
    order: Vec<(usize, f32)>,
    #[cfg_attr(not(all(target_arch = "x86_64", wasm_chord_avx512)), allow(dead_code))]
    order4: Vec<(usize, [f32; 4])>,
}

/// `out[d] = Σ_j p_j · row_j[d]` over rows `idx` (increasing) with
/// weights `val` (`row(j)` at least `out.len()` long): row `j` into lane
/// `j % 16`, the lanes reduced by [`reduce16`].
pub(crate) fn weighted_rows<'a, T: KvElem>(
    idx: &[usize],
    val: &[f32],
    row: impl Fn(usize) -> &'a [T],
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    let hd = out.len();
    let lanes = &mut scratch.lanes;
    lanes.clear();
    lanes.resize(16 * hd, 0.0);
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if hd.is_multiple_of(16) && has_avx512f() {
        assert!(idx.iter().all(|&j| row(j).len() >= hd));
        let starts = by_lane(idx, |i| val[i], &mut scratch.order);
        let order = &scratch.order;
        // SAFETY: AVX-512F and F16C were detected; every row has at least
        // `hd` elements (checked above).
        unsafe { avx512::weighted_lanes(order, &starts, &row, lanes, out) };
        return;
    }
    for (&j, &p) in idx.iter().zip(val) {
        let lane = &mut lanes[(j % 16) * hd..(j % 16 + 1) * hd];
        for (a, &v) in lane.iter_mut().zip(row(j)) {
            *a += p * v.f32();
        }
    }
    reduce_lanes(lanes, out);
}

/// [`dot_rows`] for four query heads that read the same cache rows (a
/// GQA group): `out[h]` gets `q[h] · row(j)` for each `j` of `idx`, each
/// bit for bit as [`dot_rows`] computes it. With AVX-512 each row is loaded
/// (and converted from f16) once for the four heads instead of four times.
pub(crate) fn dot_rows4<'a, T: KvElem>(
    q: [&[f32]; 4],
    idx: &[usize],
    row: impl Fn(usize) -> &'a [T],
    out: &mut [Vec<f32>; 4],
) {
    let n = q[0].len();
    assert!(n.is_multiple_of(16) && q.iter().all(|q| q.len() == n));
    assert!(idx.iter().all(|&j| row(j).len() >= n));
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if has_avx512f() {
        // SAFETY: AVX-512F and F16C were detected; lengths checked above.
        unsafe { avx512::dot_rows4(q, idx, &row, out) };
        return;
    }
    for (q, out) in q.iter().zip(out.iter_mut()) {
        dot_rows(q, idx, &row, out);
    }
}

/// [`weighted_rows`] for four heads over the same cache rows `idx`, with
/// their own weights `val[h]`, into `out[h]`: bit for bit four calls of
/// [`weighted_rows`]. With AVX-512 the rows are grouped by lane once and
/// each row is loaded once for the four heads.
pub(crate) fn weighted_rows4<'a, T: KvElem>(
    idx: &[usize],
    val: [&[f32]; 4],
    row: impl Fn(usize) -> &'a [T],
    out: [&mut [f32]; 4],
    scratch: &mut Scratch,
) {
    let hd = out[0].len();
    assert!(out.iter().all(|o| o.len() == hd) && val.iter().all(|v| v.len() >= idx.len()));
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if hd.is_multiple_of(16) && has_avx512f() {
        assert!(idx.iter().all(|&j| row(j).len() >= hd));
        let starts = by_lane(
            idx,
            |i| [val[0][i], val[1][i], val[2][i], val[3][i]],
            &mut scratch.order4,
        );
        let order = &scratch.order4;
        let lanes = &mut scratch.lanes;
        lanes.clear();
        lanes.resize(4 * 16 * hd, 0.0);
        // SAFETY: AVX-512F and F16C were detected; every row has at least
        // `hd` elements (checked above), `lanes` 64 hd.
        unsafe { avx512::weighted_lanes4(order, &starts, &row, lanes, out) };
        return;
    }
    for (val, out) in val.iter().zip(out) {
        weighted_rows(idx, val, &row, out, scratch);
    }
}

/// `v[i] = ggml_expf(v[i] - max)` ([`crate::attention::ggml_expf`], the
/// polynomial of ggml's `ggml_v_expf`), 16 values at a time with AVX-512
/// (the same operations in each lane, so the same bits), the rest one by
/// one.
pub(crate) fn exp_shifted(v: &mut [f32], max: f32) {
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    let v = if has_avx512f() {
        let n = v.len() / 16 * 16;
        // SAFETY: AVX-512F was detected (F16C and FMA with it on every
        // AVX-512 CPU; `has_avx512f` checks F16C, FMA is checked here).
        if crate::kernels::has_avx2() {
            unsafe { avx512::exp_shifted_16s(&mut v[..n], max) };
            &mut v[n..]
        } else {
            v
        }
    } else {
        v
    };
    for x in v.iter_mut() {
        *x = crate::attention::ggml_expf(*x - max);
    }
}

/// `gate[i] = silu(gate[i]) · up[i]` as ggml-cpu's `ggml_vec_swiglu_f32`
/// computes it: in chunks of 16 from the start, `x / (1 + e)` with `e` from
/// ggml's exp polynomial ([`crate::attention::ggml_expf`] of `0 - x`), then
/// times `up`; the last `len % 16` values with libm's `expf`, as ggml's
/// scalar tail. With AVX-512 the chunks run in registers (same bits).
pub(crate) fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len()) / 16 * 16;
    let (head, tail) = gate.split_at_mut(n);
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    let done = has_avx512f() && crate::kernels::has_avx2();
    #[cfg(not(all(target_arch = "x86_64", wasm_chord_avx512)))]
    let done = false;
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    if done {
        // SAFETY: AVX-512F, F16C and FMA were detected; `up` holds at
        // least `n` values.
        unsafe { avx512::swiglu_16s(head, &up[..n]) };
    }
    if !done {
        for (g, &u) in head.iter_mut().zip(up) {
            let e = crate::attention::ggml_expf(0.0 - *g);
            *g = (*g / (1.0 + e)) * u;
        }
    }
    for (g, &u) in tail.iter_mut().zip(&up[n..]) {
        *g = (*g / (1.0 + (-*g).exp())) * u;
    }
}

/// The rows `idx` with their weights `p(i)` grouped by lane `j % 16` (a
/// counting sort, rows in order within a lane) into `order`; returns where
/// each lane's rows start (lane `l`: `starts[l]..starts[l + 1]`).
#[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
fn by_lane<P: Copy + Default>(
    idx: &[usize],
    p: impl Fn(usize) -> P,
    order: &mut Vec<(usize, P)>,
) -> [usize; 17] {
    let mut starts = [0usize; 17];
    for &j in idx {
        starts[j % 16 + 1] += 1;
    }
    for l in 0..16 {
        starts[l + 1] += starts[l];
    }
    order.clear();
    order.resize(idx.len(), (0, P::default()));
    let mut next = starts;
    for (i, &j) in idx.iter().enumerate() {
        order[next[j % 16]] = (j, p(i));
        next[j % 16] += 1;
    }
    starts
}

/// Each value rounded to the nearest f16 (ties to even), as
/// [`crate::round_f16`]; with AVX-512F's `vcvtps2ph`, 16 at a time.
pub(crate) fn round_f16_slice(v: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    let v = if has_avx512f() {
        let n = v.len() / 16 * 16;
        // SAFETY: AVX-512F and F16C were detected.
        unsafe { avx512::round_f16_16s(&mut v[..n]) };
        &mut v[n..]
    } else {
        v
    };
    for x in v.iter_mut() {
        *x = crate::round_f16(*x);
    }
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

    /// ggml's AVX-512 `ggml_v_expf`, operation for operation: the
    /// polynomial of [`crate::attention::ggml_expf`] in 16 lanes, `scalef`
    /// for `j · 2^n`, and 0 or infinity where `|n| > 192`.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    fn expf16(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
        let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        if d == 0 {
            return res;
        }
        let zero = _mm512_setzero_ps();
        let alt = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, zero),
            _mm512_set1_ps(f32::INFINITY),
            zero,
        );
        _mm512_mask_blend_ps(d, res, alt)
    }

    /// [`super::exp_shifted`] of a multiple of 16 values.
    ///
    /// # Safety
    /// AVX-512F and FMA.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn exp_shifted_16s(v: &mut [f32], max: f32) {
        let m = _mm512_set1_ps(max);
        for c in v.chunks_exact_mut(16) {
            // SAFETY: `c` has 16 values.
            unsafe {
                let x = _mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), m);
                _mm512_storeu_ps(c.as_mut_ptr(), expf16(x));
            }
        }
    }

    /// [`super::swiglu`]'s chunks of 16 (`gate.len()` a multiple of 16,
    /// `up` as long), as ggml's `ggml_v_silu` times `up`.
    ///
    /// # Safety
    /// AVX-512F and FMA.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn swiglu_16s(gate: &mut [f32], up: &[f32]) {
        let one = _mm512_set1_ps(1.0);
        for (g, u) in gate.chunks_exact_mut(16).zip(up.chunks_exact(16)) {
            // SAFETY: 16 values each.
            unsafe {
                let x = _mm512_loadu_ps(g.as_ptr());
                let e = expf16(_mm512_sub_ps(_mm512_setzero_ps(), x));
                let s = _mm512_div_ps(x, _mm512_add_ps(one, e));
                _mm512_storeu_ps(
                    g.as_mut_ptr(),
                    _mm512_mul_ps(s, _mm512_loadu_ps(u.as_ptr())),
                );
            }
        }
    }

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

    /// [`super::round_f16_slice`] of a multiple of 16 values.
    ///
    /// # Safety
    /// AVX-512F and F16C.
    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn round_f16_16s(v: &mut [f32]) {
        for c in v.chunks_exact_mut(16) {
            // SAFETY: `c` has 16 values.
            unsafe {
                let x = _mm512_loadu_ps(c.as_ptr());
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                _mm512_storeu_ps(c.as_mut_ptr(), _mm512_cvtph_ps(h));
            }
        }
    }

    /// See [`super::dot_rows`]: four rows at a time, then one.
    ///
    /// # Safety
    /// AVX-512F and F16C; `q.len()` a multiple of 16, every row at least
    /// as long.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn dot_rows<'a, T: KvElem>(
        q: &[f32],
        idx: &[usize],
        row: &impl Fn(usize) -> &'a [T],
        out: &mut Vec<f32>,
    ) {
        let mut quads = idx.chunks_exact(4);
        for c in &mut quads {
            let rows = [row(c[0]), row(c[1]), row(c[2]), row(c[3])];
            // SAFETY: per this function's contract.
            out.extend(unsafe { dot_n(q, rows) });
        }
        for &j in quads.remainder() {
            // SAFETY: per this function's contract.
            out.extend(unsafe { dot_n(q, [row(j)]) });
        }
    }

    /// `q ·` each of `N` rows, one register of 16 lanes each.
    ///
    /// # Safety
    /// As [`dot_rows`].
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn dot_n<T: KvElem, const N: usize>(q: &[f32], rows: [&[T]; N]) -> [f32; N] {
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

    /// Each lane `l` of [`super::weighted_rows`] from its rows
    /// `order[starts[l]..starts[l + 1]]`, then the lanes reduced into `out`.
    ///
    /// # Safety
    /// AVX-512F and F16C; `out.len()` a multiple of 16, `lanes` 16 times as
    /// long, every row at least as long as `out`.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn weighted_lanes<'a, T: KvElem>(
        order: &[(usize, f32)],
        starts: &[usize; 17],
        row: &impl Fn(usize) -> &'a [T],
        lanes: &mut [f32],
        out: &mut [f32],
    ) {
        let hd = out.len();
        for l in 0..16 {
            // SAFETY: per this function's contract.
            unsafe {
                weighted_lane(
                    &order[starts[l]..starts[l + 1]],
                    row,
                    &mut lanes[l * hd..(l + 1) * hd],
                )
            };
        }
        // SAFETY: per this function's contract.
        unsafe { reduce_lane_vectors(lanes, out) };
    }

    /// `out[d] = reduce16(lanes[0..16][d])`, 16 columns at a time (lane
    /// `k` at `k hd .. (k + 1) hd`, `hd = out.len()`).
    ///
    /// # Safety
    /// AVX-512F; `out.len()` a multiple of 16, `lanes` 16 times as long.
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce_lane_vectors(lanes: &[f32], out: &mut [f32]) {
        let hd = out.len();
        assert!(lanes.len() >= 16 * hd);
        // `reduce16` across the lanes, 16 columns at a time.
        for c in (0..hd).step_by(16) {
            // SAFETY: `c + 16 <= hd`; lane `k` spans `k hd .. (k + 1) hd`.
            unsafe {
                let a = |k: usize| _mm512_loadu_ps(lanes.as_ptr().add(k * hd + c));
                let mut t3 = [_mm512_setzero_ps(); 8];
                for (k, t) in t3.iter_mut().enumerate() {
                    *t = _mm512_add_ps(a(8 + k), a(k));
                }
                let t6 = [0, 1, 2, 3].map(|k| _mm512_add_ps(t3[4 + k], t3[k]));
                let r = _mm512_add_ps(_mm512_add_ps(t6[0], t6[2]), _mm512_add_ps(t6[1], t6[3]));
                _mm512_storeu_ps(out.as_mut_ptr().add(c), r);
            }
        }
    }

    /// `lane[d] += p · row(j)[d]` for each `(j, p)` in order, in blocks
    /// of up to 128 columns held in registers.
    ///
    /// # Safety
    /// AVX-512F and F16C; `lane.len()` a multiple of 16; every row at least
    /// as long.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn weighted_lane<'a, T: KvElem>(
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

    /// See [`super::dot_rows4`]: per row, each 16 values loaded once and
    /// multiplied into the four heads' registers.
    ///
    /// # Safety
    /// AVX-512F and F16C; the four `q` of one length, a multiple of 16;
    /// every row at least as long.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn dot_rows4<'a, T: KvElem>(
        q: [&[f32]; 4],
        idx: &[usize],
        row: &impl Fn(usize) -> &'a [T],
        out: &mut [Vec<f32>; 4],
    ) {
        let n = q[0].len();
        for &j in idx {
            let r = row(j).as_ptr();
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in (0..n).step_by(16) {
                // SAFETY: `c + 16 <= n`, inside every `q` and the row.
                unsafe {
                    let k = T::load16(r.add(c));
                    for (a, q) in acc.iter_mut().zip(q) {
                        *a = _mm512_fmadd_ps(_mm512_loadu_ps(q.as_ptr().add(c)), k, *a);
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                o.push(reduce16(a));
            }
        }
    }

    /// [`weighted_lanes`] for four heads: `order` holds each row with the
    /// four heads' weights; head `h`'s lanes at `lanes[h · 16 hd ..]`.
    ///
    /// # Safety
    /// AVX-512F and F16C; every `out[h]` of one length `hd`, a multiple of
    /// 16; `lanes` 64 hd long; every row at least `hd` long.
    #[target_feature(enable = "avx512f,f16c,fma")]
    pub(super) unsafe fn weighted_lanes4<'a, T: KvElem>(
        order: &[(usize, [f32; 4])],
        starts: &[usize; 17],
        row: &impl Fn(usize) -> &'a [T],
        lanes: &mut [f32],
        out: [&mut [f32]; 4],
    ) {
        let hd = out[0].len();
        assert!(lanes.len() >= 64 * hd);
        for l in 0..16 {
            let rows = &order[starts[l]..starts[l + 1]];
            let mut c0 = 0;
            while c0 < hd {
                let n = (hd - c0) / 16;
                // SAFETY: `c0 + 16 N <= hd`, per this function's contract.
                unsafe {
                    if n >= 4 {
                        lane_block4::<T, 4>(rows, row, lanes, hd, l, c0);
                        c0 += 64;
                    } else if n >= 2 {
                        lane_block4::<T, 2>(rows, row, lanes, hd, l, c0);
                        c0 += 32;
                    } else {
                        lane_block4::<T, 1>(rows, row, lanes, hd, l, c0);
                        c0 += 16;
                    }
                }
            }
        }
        for (h, out) in out.into_iter().enumerate() {
            // SAFETY: head `h`'s 16 lanes of `hd` values.
            unsafe { reduce_lane_vectors(&lanes[h * 16 * hd..(h + 1) * 16 * hd], out) };
        }
    }

    /// Columns `c0 .. c0 + 16 N` of lane `l` of the four heads, in `4 N`
    /// registers: each head's operations those of [`lane_block`].
    ///
    /// # Safety
    /// As [`weighted_lanes4`], and `c0 + 16 N <= hd`.
    #[inline]
    #[target_feature(enable = "avx512f,f16c,fma")]
    unsafe fn lane_block4<'a, T: KvElem, const N: usize>(
        rows: &[(usize, [f32; 4])],
        row: &impl Fn(usize) -> &'a [T],
        lanes: &mut [f32],
        hd: usize,
        l: usize,
        c0: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; 4];
        for &(j, p) in rows {
            let r = row(j).as_ptr();
            let pv = p.map(|x| _mm512_set1_ps(x));
            for k in 0..N {
                // SAFETY: `c0 + 16k + 16 <= hd <= row(j).len()`.
                let v = unsafe { T::load16(r.add(c0 + 16 * k)) };
                for (a, pv) in acc.iter_mut().zip(pv) {
                    a[k] = _mm512_fmadd_ps(pv, v, a[k]);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for (k, a) in a.iter().enumerate() {
                // SAFETY: inside head `h`'s lane `l` (`lanes` is 64 hd).
                unsafe {
                    _mm512_storeu_ps(lanes.as_mut_ptr().add((h * 16 + l) * hd + c0 + 16 * k), *a)
                };
            }
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

    /// f16-valued random numbers, with a spread of magnitudes.
    fn f16_values(n: usize, seed: u64) -> Vec<f16> {
        let mut rng = crate::test_rng::Rng(seed);
        (0..n)
            .map(|_| {
                let s = rng.next();
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
            // Seven rows (a group of four, then three alone), one masked.
            let rows16 = f16_values(8 * hd, 100 + hd as u64);
            let rows32: Vec<f32> = rows16.iter().map(|v| v.to_f32()).collect();
            let idx = [0usize, 1, 2, 4, 5, 6, 7];
            let want: Vec<f32> = idx
                .iter()
                .map(|&j| lanes_dot(&q, &rows32[j * hd..(j + 1) * hd]))
                .collect();
            let mut got32 = vec![];
            dot_rows(&q, &idx, |j| &rows32[j * hd..(j + 1) * hd], &mut got32);
            let mut got16 = vec![];
            dot_rows(&q, &idx, |j| &rows16[j * hd..(j + 1) * hd], &mut got16);
            assert_eq!(got32.len(), idx.len());
            for i in 0..idx.len() {
                assert_eq!(got32[i].to_bits(), want[i].to_bits(), "hd={hd} f32 row {i}");
                assert_eq!(got16[i].to_bits(), want[i].to_bits(), "hd={hd} f16 row {i}");
            }
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
            let (idx, val): (Vec<usize>, Vec<f32>) = probs.iter().copied().unzip();
            let mut got32 = vec![0f32; hd];
            weighted_rows(
                &idx,
                &val,
                |j| &rows32[j * hd..(j + 1) * hd],
                &mut got32,
                &mut scratch,
            );
            let mut got16 = vec![0f32; hd];
            weighted_rows(
                &idx,
                &val,
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

    /// Random values over the exp polynomial's whole range, with the ends.
    fn exp_inputs(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::test_rng::Rng(seed);
        let mut v: Vec<f32> = (0..n).map(|_| (rng.unit() - 0.5) * 220.0).collect();
        v.extend([0.0, -0.0, 88.7, 89.0, -103.0, -150.0, 1000.0, -1000.0]);
        v.extend([f32::INFINITY, f32::NEG_INFINITY, 1e-30, -1e-30, 0.5, -0.5]);
        v
    }

    #[test]
    fn exp_shifted_is_ggml_expf_bit_for_bit() {
        // 1000 + 14 values: the 16-value chunks and a tail.
        let x = exp_inputs(1000, 77);
        for max in [0.0f32, 3.25, -40.0] {
            let mut got = x.clone();
            exp_shifted(&mut got, max);
            for (g, &x) in got.iter().zip(&x) {
                let want = crate::attention::ggml_expf(x - max);
                assert_eq!(g.to_bits(), want.to_bits(), "exp({x} - {max})");
            }
        }
    }

    #[test]
    fn swiglu_is_the_16_lane_polynomial_then_libm_tail() {
        let x: Vec<f32> = exp_inputs(100, 5).iter().map(|v| v / 8.0).collect();
        let up = exp_inputs(x.len(), 6);
        let n16 = x.len() / 16 * 16;
        assert!(n16 < x.len());
        let mut got = x.clone();
        swiglu(&mut got, &up);
        for (i, ((g, &x), &u)) in got.iter().zip(&x).zip(&up).enumerate() {
            let e = if i < n16 {
                crate::attention::ggml_expf(0.0 - x)
            } else {
                (-x).exp()
            };
            let want = (x / (1.0 + e)) * u;
            assert_eq!(g.to_bits(), want.to_bits(), "silu({x}) * {u}");
        }
    }

    #[test]
    fn round_f16_slice_matches_round_f16() {
        let mut rng = crate::test_rng::Rng(0x1234_5678);
        let mut v: Vec<f32> = (0..1000i32)
            .map(|i| {
                let u = rng.unit();
                // Probabilities and q values, down to f16's subnormals.
                u * 2f32.powi(-(i % 30)) * if i % 3 == 0 { -1.0 } else { 1.0 }
            })
            .collect();
        // Exact ties between two f16 values, both parities.
        v.extend([
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            2f32.powi(-25),
        ]);
        let want: Vec<f32> = v.iter().map(|&x| crate::round_f16(x)).collect();
        let mut got = v.clone();
        round_f16_slice(&mut got);
        for ((g, w), x) in got.iter().zip(&want).zip(&v) {
            assert_eq!(g.to_bits(), w.to_bits(), "{x}");
        }
        assert!(want.iter().zip(&v).any(|(w, x)| w != x));
    }
}
