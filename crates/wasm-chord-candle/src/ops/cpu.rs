//! CPU implementations of the custom ops, with ggml-cpu's arithmetic (the
//! same rounding points as `wasm-chord-cpu`, so both backends agree closely).

use super::{Attention, Rope};
use half::f16;
use rayon::prelude::*;
use wasm_chord_core::backend::{GluKind, RopeKind};

/// `v` rounded to the nearest f16.
pub(crate) fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// RMSNorm per row of `dim` (sum of squares in f64, like ggml).
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, dim: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let sum: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
        let mean = (sum / dim as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * wv;
        }
    }
}

/// RoPE in place (`ggml_rope_ext` without YaRN): θ_i = pos · base^(-2i/n_rot)
/// built by repeated multiplication, divided by the frequency factor.
pub(crate) fn rope(p: &Rope, x: &mut [f32], positions: &[u32], ff: &[f32]) {
    let n_rot = p.n_rot;
    let theta_scale = p.freq_base.powf(-2.0 / n_rot as f32);
    let mut cache = vec![0.0f32; n_rot];
    for (t, &pos) in positions.iter().enumerate().take(p.n_tok) {
        let mut theta = pos as f32;
        for i0 in (0..n_rot).step_by(2) {
            let th = p.freq_scale * (theta / ff[i0 / 2]);
            cache[i0] = th.cos();
            cache[i0 + 1] = th.sin();
            theta *= theta_scale;
        }
        for h in 0..p.n_heads {
            let base = (t * p.n_heads + h) * p.head_dim;
            let v = &mut x[base..base + p.head_dim];
            let half = n_rot / 2;
            for i0 in (0..n_rot).step_by(2) {
                let (c, s) = (cache[i0], cache[i0 + 1]);
                let (a, b) = match p.kind {
                    RopeKind::Normal => (i0, i0 + 1),
                    RopeKind::Neox => (i0 / 2, i0 / 2 + half),
                };
                let (x0, x1) = (v[a], v[b]);
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU (tanh approximation) as ggml-cpu computes it through an f16 table:
/// input and result rounded to f16, saturating outside ±10.
pub(crate) fn gelu_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let x = round_f16(x);
        round_f16(0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh()))
    }
}

/// `act(g) · u`.
pub(crate) fn glu(kind: GluKind, g: f32, u: f32) -> f32 {
    match kind {
        GluKind::Silu => g / (1.0 + (-g).exp()) * u,
        GluKind::GeluTanh => gelu_f16(g) * u,
    }
}

/// Row writes into the cache, rounded to f16 (llama.cpp's default cache type).
pub(crate) fn write_rows(dst: &mut [f32], src: &[f32], rows: &[u32], width: usize) {
    for (i, &r) in rows.iter().enumerate() {
        let r = r as usize;
        for (d, &v) in dst[r * width..(r + 1) * width]
            .iter_mut()
            .zip(&src[i * width..(i + 1) * width])
        {
            *d = round_f16(v);
        }
    }
}

/// Attention per (token, head), one score vector at a time: q rounded to
/// f16 (ggml multiplies the f16 cache by q converted to f16), scores scaled
/// then soft-capped, softmax summed in f64, probabilities rounded to f16.
pub(crate) fn attention(p: &Attention, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    let (nh, hd) = (p.n_heads, p.head_dim);
    let (q_width, kv_width) = (p.q_width(), p.kv_width());
    let group = nh / p.n_kv_heads;
    out.par_chunks_exact_mut(hd).enumerate().for_each(|(i, o)| {
        let (t, h) = (i / nh, i % nh);
        let qpos = p.query_positions[t] as i64;
        let qv: Vec<f32> = q[t * q_width + h * hd..t * q_width + (h + 1) * hd]
            .iter()
            .map(|&x| round_f16(x))
            .collect();
        let kvh = h / group;
        let mut scores: Vec<(usize, f32)> = Vec::new();
        let mut max = f32::NEG_INFINITY;
        for (j, &kpos) in p.cache_positions.iter().enumerate() {
            let kpos = i64::from(kpos);
            if kpos < 0 || kpos > qpos || p.window.is_some_and(|w| qpos - kpos >= i64::from(w)) {
                continue;
            }
            let kr = &k[j * kv_width + kvh * hd..j * kv_width + (kvh + 1) * hd];
            let mut s: f32 = qv.iter().zip(kr).map(|(a, b)| a * b).sum();
            s *= p.scale;
            if let Some(cap) = p.softcap {
                s = cap * (s * (1.0 / cap)).tanh();
            }
            max = max.max(s);
            scores.push((j, s));
        }
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
}
