//! Attention over the KV cache (scalar reference): GQA, causal and
//! sliding-window masking by positions and soft-capping. Scores are kept
//! per query row only (never a full score matrix), and the rounding follows
//! llama.cpp's default path (f16 cache, q and probabilities converted to f16
//! for the two matmuls).

use crate::{need, round_f16, shape};
use rayon::prelude::*;
use wasm_chord_core::backend::{AttentionParams, Result};

/// See [`wasm_chord_core::backend::Backend::attention`].
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &AttentionParams<'_>,
    out: &mut [f32],
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
    out[..n_tok * q_width]
        .par_chunks_exact_mut(hd)
        .enumerate()
        .for_each(|(i, o)| {
            let (t, h) = (i / nh, i % nh);
            let qpos = p.query_positions[t];
            // ggml multiplies an f16 cache by q converted to f16.
            let qv: Vec<f32> = q[t * q_width + h * hd..t * q_width + (h + 1) * hd]
                .iter()
                .map(|&x| round_f16(x))
                .collect();
            let kvh = h / group;
            // Pass 1: scores of the visible rows (one vector per query row,
            // never a full score matrix).
            let mut scores: Vec<(usize, f32)> = Vec::new();
            let mut max = f32::NEG_INFINITY;
            for (j, slot) in p.cache_positions.iter().enumerate() {
                let Some(kpos) = *slot else { continue };
                if kpos > qpos || p.window.is_some_and(|w| qpos - kpos >= w) {
                    continue;
                }
                let kr = &k[j * kv_width + kvh * hd..j * kv_width + (kvh + 1) * hd];
                let mut s = crate::kernels::dot_f32(&qv, kr);
                s *= p.scale;
                if let Some(cap) = p.softcap {
                    s = cap * (s * (1.0 / cap)).tanh();
                }
                max = max.max(s);
                scores.push((j, s));
            }
            // Softmax as ggml's soft_max (sum in f64), probabilities rounded
            // to f16 as ggml's `kq · v` matmul converts them.
            let mut sum = 0.0f64;
            for s in scores.iter_mut() {
                s.1 = (s.1 - max).exp();
                sum += f64::from(s.1);
            }
            let inv = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
            o.iter_mut().for_each(|x| *x = 0.0);
            for &(j, e) in &scores {
                let pr = round_f16(e * inv);
                let vr = &v[j * kv_width + kvh * hd..j * kv_width + (kvh + 1) * hd];
                for (a, &vv) in o.iter_mut().zip(vr) {
                    *a += pr * vv;
                }
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (nh, nkv, hd) = (4, 2, 8);
        // A ring buffer of 6 slots holding positions 4..9 out of order, one empty.
        let kpos = [Some(6), Some(7), Some(8), None, Some(4), Some(5)];
        let qpos = [7u32, 8];
        let q = rand_vec(qpos.len() * nh * hd, 1);
        let k = rand_vec(kpos.len() * nkv * hd, 2);
        let v = rand_vec(kpos.len() * nkv * hd, 3);
        for (window, softcap) in [(None, None), (Some(3), None), (Some(2), Some(0.5))] {
            let p = AttentionParams {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                scale: 0.35,
                softcap,
                window,
                query_positions: &qpos,
                cache_positions: &kpos,
            };
            let mut out = vec![0.0; qpos.len() * nh * hd];
            attention(&q, &k, &v, &p, &mut out).unwrap();
            let want = reference(&q, &k, &v, nh, nkv, hd, &qpos, &kpos, window, softcap, 0.35);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{window:?} {softcap:?}: {a} vs {b}");
            }
        }
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
        assert!(attention(&[0.0; 12], &[0.0; 8], &[0.0; 8], &p, &mut out).is_err());
        let p = AttentionParams { n_heads: 2, ..p };
        assert!(attention(&[0.0; 8], &[0.0; 4], &[0.0; 8], &p, &mut out).is_err());
    }
}
