//! Attention over the KV cache (scalar reference): GQA, causal and
//! sliding-window masking by positions and soft-capping. Scores are kept
//! per query row only (never a full score matrix), and the rounding follows
//! llama.cpp's default path (f16 cache, q and probabilities converted to f16
//! for the two matmuls).

use crate::kernels::attn::{self, reduce16, KvElem};
use crate::{need, round_f16, shape};
use rayon::prelude::*;
use wasm_chord_core::backend::{AttentionParams, Result};

/// See [`wasm_chord_core::backend::Backend::attention`]. The cache rows
/// `k` and `v` are f32 or f16 values ([`KvElem`]), read as they are.
pub(crate) fn attention<T: KvElem>(
    q: &[f32],
    k: &[T],
    v: &[T],
    p: &AttentionParams<'_>,
    out: &mut [f32],
) -> Result<()> {
    attention_in_tasks(q, k, v, p, out, None)
}

/// [`attention`], one task per token and KV head (`Some(true)`), per token
/// and query head (`Some(false)`), or as the sizes suggest (`None`).
fn attention_in_tasks<T: KvElem>(
    q: &[f32],
    k: &[T],
    v: &[T],
    p: &AttentionParams<'_>,
    out: &mut [f32],
    by_kv_head: Option<bool>,
) -> Result<()> {
    let (nh, nkv, hd) = (p.n_heads, p.n_kv_heads, p.head_dim);
    if nkv == 0 || nh % nkv != 0 {
        return Err(shape(
            "attention",
            format!("{nh} heads over {nkv} kv heads"),
        ));
    }
    let n_tok = p.query_positions.len();
    let n_slots = p.cache_positions.len();
    let q_width = nh * hd;
    let kv_width = nkv * hd;
    need("attention", "q", q.len(), n_tok * q_width)?;
    need("attention", "out", out.len(), n_tok * q_width)?;
    need("attention", "k", k.len(), n_slots * kv_width)?;
    need("attention", "v", v.len(), n_slots * kv_width)?;
    let group = nh / nkv;
    // One task per token and KV head: the query heads sharing that KV head
    // share the list of visible cache rows. With few tokens (generation),
    // one task per query head instead, so that every thread has work.
    let by_kv_head = by_kv_head.unwrap_or_else(|| n_tok * nkv >= 4 * rayon::current_num_threads());
    let per_task = if by_kv_head { group } else { 1 };
    out[..n_tok * q_width]
        .par_chunks_exact_mut(per_task * hd)
        .enumerate()
        .for_each_init(Buffers::default, |bufs, (i, o)| {
            let Buffers {
                qv,
                visible,
                idx,
                val,
                q4,
                s4,
                scratch,
            } = bufs;
            let (t, h0) = (i * per_task / nh, i * per_task % nh);
            let kvh = h0 / group;
            let qpos = p.query_positions[t];
            let kr = |j: usize| &k[j * kv_width + kvh * hd..j * kv_width + (kvh + 1) * hd];
            visible.clear();
            visible.extend(
                p.cache_positions
                    .iter()
                    .enumerate()
                    .filter_map(|(j, slot)| {
                        let kpos = (*slot)?;
                        let masked = kpos > qpos || p.window.is_some_and(|w| qpos - kpos >= w);
                        (!masked).then_some(j)
                    }),
            );
            let vr = |j: usize| &v[j * kv_width + kvh * hd..j * kv_width + (kvh + 1) * hd];
            // ggml multiplies an f16 cache by q converted to f16.
            let q_f16 = |h: usize, qv: &mut Vec<f32>| {
                qv.clear();
                qv.extend(
                    q[t * q_width + h * hd..t * q_width + (h + 1) * hd]
                        .iter()
                        .map(|&x| round_f16(x)),
                );
            };
            if per_task % 4 == 0 && hd % 16 == 0 {
                // The heads of a GQA group in fours: each cache row is read
                // once for four heads (same arithmetic as one at a time).
                for (g, o) in o.chunks_exact_mut(4 * hd).enumerate() {
                    for (e, qh) in q4.iter_mut().enumerate() {
                        q_f16(h0 + 4 * g + e, qh);
                    }
                    s4.iter_mut().for_each(Vec::clear);
                    attn::dot_rows4([&q4[0], &q4[1], &q4[2], &q4[3]], visible, kr, s4);
                    for s in s4.iter_mut() {
                        softmax(visible, s, p);
                    }
                    attn::weighted_rows4(
                        visible,
                        [&s4[0], &s4[1], &s4[2], &s4[3]],
                        vr,
                        split4(o, hd),
                        scratch,
                    );
                }
                return;
            }
            for (g, o) in o.chunks_exact_mut(hd).enumerate() {
                q_f16(h0 + g, qv);
                // Pass 1: scores of the visible rows (one vector per query
                // row, never a full score matrix), four rows at a time.
                idx.clear();
                idx.extend_from_slice(visible);
                val.clear();
                if hd % 16 == 0 {
                    attn::dot_rows(qv, visible, kr, val);
                } else {
                    let mut row = vec![0f32; hd];
                    for &j in visible.iter() {
                        for (r, x) in row.iter_mut().zip(kr(j)) {
                            *r = x.f32();
                        }
                        val.push(crate::kernels::dot_f32(qv, &row));
                    }
                }
                softmax(idx, val, p);
                // `p · v` in the order of ggml's f16 GEMM (see `attn`).
                attn::weighted_rows(idx, val, vr, o, scratch);
            }
        });
    Ok(())
}

/// `exp(x)` as ggml-cpu computes it in `ggml_v_expf` (the vector exp of
/// its soft_max, from ARM's optimized-routines): a degree-5 polynomial on
/// `x - n·ln2` scaled by `2^n`, within ~1.5 ulp of the true value. It is
/// not libm's correctly rounded `expf`, and the difference is enough to flip
/// the f16 rounding of an attention probability now and then, so we compute
/// the same polynomial, operation for operation (every `mul_add` is one
/// fused multiply-add there).
#[inline(always)]
pub(crate) fn ggml_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // `scalef(j, n)`: j · 2^n rounded once (exact in f64, then to f32);
    // |n| <= 192 here, well inside f64's exponent range.
    let two_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (f64::from(j) * two_n) as f32
}

/// The scores `val` of the visible cache rows `idx` scaled, soft-capped,
/// and turned into probabilities as ggml's soft_max does (its exp
/// polynomial, sums of 16-lane chunks of cache rows added in f64, see
/// [`softmax_sum`]), rounded to f16 as ggml's `kq · v` matmul converts them.
fn softmax(idx: &[usize], val: &mut [f32], p: &AttentionParams<'_>) {
    match p.softcap {
        None => val.iter_mut().for_each(|s| *s *= p.scale),
        Some(cap) => val
            .iter_mut()
            .for_each(|s| *s = cap * ((*s * p.scale) * (1.0 / cap)).tanh()),
    }
    let max = max_of(val);
    attn::exp_shifted(val, max);
    let sum = softmax_sum_split(idx, val);
    let inv = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
    for s in val.iter_mut() {
        *s *= inv;
    }
    attn::round_f16_slice(val);
}

/// `o` (four heads of `hd` values) as four slices.
fn split4(o: &mut [f32], hd: usize) -> [&mut [f32]; 4] {
    let (a, rest) = o.split_at_mut(hd);
    let (b, rest) = rest.split_at_mut(hd);
    let (c, d) = rest.split_at_mut(hd);
    [a, b, c, &mut d[..hd]]
}

/// The largest value (ignoring NaNs; `-inf` for none), in 16 independent
/// lanes so that it vectorizes: one `max` chain over every score was a
/// serial dependency. The maximum does not depend on the order.
fn max_of(v: &[f32]) -> f32 {
    let chunks = v.chunks_exact(16);
    let rest = chunks.remainder();
    let mut lanes = [f32::NEG_INFINITY; 16];
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// The softmax denominator (rows `idx`, values `val`) as ggml-cpu's
/// AVX-512 `ggml_vec_soft_max_f32` adds it: cache rows in chunks of 16 (rows `16c .. 16c + 15`; masked rows
/// hold 0), each chunk reduced in f32 by the tree of `_mm512_reduce_add_ps`
/// (halves of 8, 4, then pairs), the chunk sums added in f64.
fn softmax_sum_split(idx: &[usize], val: &[f32]) -> f64 {
    let mut sum = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let chunk = idx[i] / 16;
        let mut lanes = [0f32; 16];
        while i < idx.len() && idx[i] / 16 == chunk {
            lanes[idx[i] % 16] = val[i];
            i += 1;
        }
        sum += f64::from(reduce16(&lanes));
    }
    sum
}

/// [`softmax_sum_split`] of `(row, value)` pairs.
#[cfg(test)]
fn softmax_sum(scores: &[(usize, f32)]) -> f64 {
    let (idx, val): (Vec<usize>, Vec<f32>) = scores.iter().copied().unzip();
    softmax_sum_split(&idx, &val)
}

/// Buffers one thread reuses from query row to query row.
#[derive(Default)]
struct Buffers {
    qv: Vec<f32>,
    visible: Vec<usize>,
    /// Visible cache rows, then their scores and probabilities.
    idx: Vec<usize>,
    val: Vec<f32>,
    /// Four heads' q (f16-valued) and scores.
    q4: [Vec<f32>; 4],
    s4: [Vec<f32>; 4],
    scratch: attn::Scratch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn rand_vec(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn max_of_is_the_serial_maximum() {
        for n in [0usize, 1, 15, 16, 17, 100, 515] {
            let mut v = rand_vec(n, n as u32 + 3);
            if n > 20 {
                v[7] = f32::NAN;
                v[n - 2] += 4.0;
            }
            let want = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            assert_eq!(max_of(&v).to_bits(), want.to_bits(), "n = {n}");
        }
    }

    /// Two-pass softmax reference with an explicit score vector.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        nh: usize,
        nkv: usize,
        hd: usize,
        qpos: &[u32],
        kpos: &[Option<u32>],
        window: Option<u32>,
        softcap: Option<f32>,
        scale: f32,
    ) -> Vec<f32> {
        let mut out = vec![0.0; qpos.len() * nh * hd];
        for (t, &qp) in qpos.iter().enumerate() {
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                // As documented: q and the probabilities are rounded to f16.
                let qv: Vec<f32> = q[(t * nh + h) * hd..(t * nh + h + 1) * hd]
                    .iter()
                    .map(|&x| round_f16(x))
                    .collect();
                let mut scores = Vec::new();
                for (j, kp) in kpos.iter().enumerate() {
                    let ok = kp.is_some_and(|kp| kp <= qp && window.is_none_or(|w| qp - kp < w));
                    if !ok {
                        continue;
                    }
                    let kr = &k[(j * nkv + kvh) * hd..(j * nkv + kvh + 1) * hd];
                    let mut s =
                        qv.iter().zip(kr).map(|(a, b)| (a * b) as f64).sum::<f64>() * scale as f64;
                    if let Some(c) = softcap {
                        s = c as f64 * (s / c as f64).tanh();
                    }
                    scores.push((j, s));
                }
                let mx = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s.1 - mx).exp()).sum();
                for (j, s) in scores {
                    let w = round_f16(((s - mx).exp() / z) as f32) as f64;
                    for d in 0..hd {
                        out[(t * nh + h) * hd + d] +=
                            (w * v[(j * nkv + kvh) * hd + d] as f64) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_two_pass_reference_with_gqa_window_softcap_and_ring_slots() {
        // A ring buffer of 6 slots holding positions 4..9 out of order, one
        // empty; then groups of four heads of 64 values (the four-head
        // kernels) over 40 slots, two empty.
        let ring = vec![Some(6), Some(7), Some(8), None, Some(4), Some(5)];
        let long: Vec<Option<u32>> = (0..40u32)
            .map(|j| (j % 17 != 5).then_some((j * 7) % 40))
            .collect();
        for (nh, nkv, hd, kpos, qpos) in [
            (4, 2, 8, ring, vec![7u32, 8]),
            (8, 2, 64, long, vec![30u32, 39, 12]),
        ] {
            check_against_reference(nh, nkv, hd, &kpos, &qpos);
        }
    }

    fn check_against_reference(
        nh: usize,
        nkv: usize,
        hd: usize,
        kpos: &[Option<u32>],
        qpos: &[u32],
    ) {
        let q = rand_vec(qpos.len() * nh * hd, 1);
        // The cache holds f16; the reference reads the same values widened.
        let k16: Vec<f16> = rand_vec(kpos.len() * nkv * hd, 2)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        let v16: Vec<f16> = rand_vec(kpos.len() * nkv * hd, 3)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        let k: Vec<f32> = k16.iter().map(|x| x.to_f32()).collect();
        let v: Vec<f32> = v16.iter().map(|x| x.to_f32()).collect();
        for (window, softcap) in [(None, None), (Some(3), None), (Some(2), Some(0.5))] {
            let p = AttentionParams {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                scale: 0.35,
                softcap,
                window,
                query_positions: qpos,
                cache_positions: kpos,
            };
            let mut out = vec![0.0; qpos.len() * nh * hd];
            attention(&q, &k16, &v16, &p, &mut out).unwrap();
            let want = reference(&q, &k, &v, nh, nkv, hd, qpos, kpos, window, softcap, 0.35);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{window:?} {softcap:?}: {a} vs {b}");
            }
            // Both ways of splitting the work give the same bits.
            for by_kv_head in [true, false] {
                let mut split = vec![0.0; out.len()];
                attention_in_tasks(&q, &k16, &v16, &p, &mut split, Some(by_kv_head)).unwrap();
                let same = split
                    .iter()
                    .zip(&out)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{nh}x{hd} by_kv_head {by_kv_head}");
            }
        }
    }

    #[test]
    fn ggml_expf_is_within_two_ulp_of_exp_and_handles_the_ends() {
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            // Softmax arguments: x - max in [-90, 0], plus a few positives.
            let x = -90.0 * rng.unit() + 1.0;
            let want = f64::from(x).exp();
            let got = f64::from(ggml_expf(x));
            if want < f64::from(f32::MIN_POSITIVE) {
                assert!((got - want).abs() <= f64::from(f32::MIN_POSITIVE), "{x}");
                continue;
            }
            let ulp = f64::from(f32::EPSILON) * want;
            assert!((got - want).abs() <= 2.0 * ulp, "exp({x}): {got} vs {want}");
        }
        assert_eq!(ggml_expf(0.0), 1.0);
        assert_eq!(ggml_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(ggml_expf(-1000.0), 0.0);
        assert_eq!(ggml_expf(1000.0), f32::INFINITY);
    }

    #[test]
    fn softmax_sum_adds_16_lane_chunks_in_reduction_order() {
        let scores: Vec<(usize, f32)> = (0..40).map(|j| (j, 1.0 + j as f32 * 1e-3)).collect();
        let exact: f64 = scores.iter().map(|s| f64::from(s.1)).sum();
        assert!((softmax_sum(&scores) - exact).abs() < 1e-5);
        // Rows missing from a chunk (masked) count as zero lanes.
        let sparse = [(3usize, 2.0f32), (17, 3.0), (18, 4.0)];
        assert_eq!(softmax_sum(&sparse), 9.0);
        let mut lanes = [0f32; 16];
        lanes[0] = 1.0;
        lanes[8] = 1e8;
        lanes[1] = -1e8;
        // (a[8] + a[0]) is formed before anything meets a[1].
        assert_eq!(reduce16(&lanes), (1e8f32 + 1.0) + -1e8);
    }

    #[test]
    fn rejects_bad_head_counts_and_short_buffers() {
        let p = AttentionParams {
            n_heads: 3,
            n_kv_heads: 2,
            head_dim: 4,
            scale: 1.0,
            softcap: None,
            window: None,
            query_positions: &[0],
            cache_positions: &[Some(0)],
        };
        let mut out = vec![0.0; 12];
        let z = f16::ZERO;
        assert!(attention(&[0.0; 12], &[z; 8], &[z; 8], &p, &mut out).is_err());
        let p = AttentionParams { n_heads: 2, ..p };
        assert!(attention(&[0.0; 8], &[z; 4], &[z; 8], &p, &mut out).is_err());
    }
}
