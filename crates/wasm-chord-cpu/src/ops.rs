//! Element-wise and per-row ops, following ggml-cpu's arithmetic.

use wasm_chord_core::backend::{GluKind, RopeKind, RopeParams};
use wasm_chord_core::quant::{f16_bits_to_f32, f32_to_f16_bits};

/// RMSNorm per row of `dim`: sum of squares in f64 like ggml (`ggml_float`),
/// then `x · 1/sqrt(mean + eps) · w`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, dim: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let sum: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
        let mean = (sum / dim as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * wv;
        }
    }
}

/// RoPE in place, as `ggml_rope_ext` with no YaRN extension: per position a
/// cos/sin cache built by repeated multiplication of θ, like ggml's
/// `rope_cache_init`.
pub fn rope(x: &mut [f32], positions: &[u32], n_heads: usize, head_dim: usize, p: &RopeParams<'_>) {
    let n_rot = p.n_rot;
    let theta_scale = p.freq_base.powf(-2.0 / n_rot as f32);
    let mut cache = vec![0.0f32; n_rot];
    for (t, &pos) in positions.iter().enumerate() {
        let mut theta = pos as f32;
        for i0 in (0..n_rot).step_by(2) {
            let ff = p.freq_factors.map_or(1.0, |f| f[i0 / 2]);
            let th = p.freq_scale * (theta / ff);
            cache[i0] = th.cos();
            cache[i0 + 1] = th.sin();
            theta *= theta_scale;
        }
        for h in 0..n_heads {
            let base = (t * n_heads + h) * head_dim;
            let v = &mut x[base..base + head_dim];
            match p.kind {
                RopeKind::Normal => {
                    for i0 in (0..n_rot).step_by(2) {
                        let (c, s) = (cache[i0], cache[i0 + 1]);
                        let (x0, x1) = (v[i0], v[i0 + 1]);
                        v[i0] = x0 * c - x1 * s;
                        v[i0 + 1] = x0 * s + x1 * c;
                    }
                }
                RopeKind::Neox => {
                    let half = n_rot / 2;
                    for i0 in (0..n_rot).step_by(2) {
                        let ic = i0 / 2;
                        let (c, s) = (cache[i0], cache[i0 + 1]);
                        let (x0, x1) = (v[ic], v[ic + half]);
                        v[ic] = x0 * c - x1 * s;
                        v[ic + half] = x0 * s + x1 * c;
                    }
                }
            }
        }
    }
}

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU, tanh approximation (`ggml_gelu_f32`).
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// GELU as ggml-cpu computes it: through an f16 table, so input and result
/// are rounded to f16 (saturating to 0 and x outside ±10).
pub fn gelu_f16_table(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        f16_bits_to_f32(gelu_table()[usize::from(f32_to_f16_bits(x))])
    }
}

/// `gelu` of every f16 value, as f16 bits (ggml's `ggml_table_gelu_f16`,
/// 128 KiB): one lookup instead of a `tanh` per value.
fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|h| f32_to_f16_bits(gelu(f16_bits_to_f32(h))))
            .collect()
    })
}

/// `out = act(gate) · up`. SiLU as ggml-cpu's `ggml_vec_swiglu_f32` on
/// x86 (its exp polynomial for chunks of 16, libm's `expf` for the tail:
/// `kernels::attn::swiglu`), so a row's results match llama.cpp's bits.
pub fn glu(kind: GluKind, gate: &mut [f32], up: &[f32]) {
    match kind {
        GluKind::Silu => crate::kernels::attn::swiglu(gate, up),
        GluKind::GeluTanh => {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = gelu_f16_table(*g) * u;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_neox_rotates_pairs_half_apart_and_keeps_norm() {
        let mut x: Vec<f32> = (0..8).map(|i| (i as f32 * 0.37).sin() + 0.1).collect();
        let orig = x.clone();
        let p = RopeParams {
            kind: RopeKind::Neox,
            n_rot: 8,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: None,
        };
        rope(&mut x, &[3], 1, 8, &p);
        // Dim pair (0, 4) rotated by angle 3 (θ_0 = pos).
        let (c, s) = (3f32.cos(), 3f32.sin());
        assert!((x[0] - (orig[0] * c - orig[4] * s)).abs() < 1e-6);
        assert!((x[4] - (orig[0] * s + orig[4] * c)).abs() < 1e-6);
        for i in 0..4 {
            let before = orig[i].hypot(orig[i + 4]);
            let after = x[i].hypot(x[i + 4]);
            assert!((before - after).abs() < 1e-5);
        }
        // Position 0 is the identity.
        let mut y = orig.clone();
        rope(&mut y, &[0], 1, 8, &p);
        assert_eq!(y, orig);
    }

    #[test]
    fn rms_norm_matches_definition() {
        let x: Vec<f32> = (0..16).map(|i| (i as f32 - 7.3) * 0.41).collect();
        let w: Vec<f32> = (0..8).map(|i| 0.5 + i as f32 * 0.1).collect();
        let mut out = vec![0.0; 16];
        rms_norm(&x, &w, 1e-6, 8, &mut out);
        for r in 0..2 {
            let row = &x[r * 8..r * 8 + 8];
            let ms: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 8.0;
            for i in 0..8 {
                let want = row[i] as f64 / (ms + 1e-6).sqrt() * w[i] as f64;
                assert!((out[r * 8 + i] as f64 - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gelu_table_is_close_to_exact_gelu() {
        for i in -200..200 {
            let x = i as f32 * 0.061;
            let d = (gelu_f16_table(x) - gelu(x)).abs();
            assert!(d <= 2e-3 * (1.0 + x.abs()), "x={x} d={d}");
        }
        assert_eq!(gelu_f16_table(-11.0), 0.0);
        assert_eq!(gelu_f16_table(12.5), 12.5);
    }
}
