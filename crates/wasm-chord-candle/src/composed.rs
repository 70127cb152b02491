//! The fused ops written as chains of candle's built-in tensor ops, for
//! devices without custom kernels (Metal) and as a second implementation
//! the tests compare against the custom ops on the CPU device. Same
//! rounding points as `ops::cpu` (f16 cache rows, q and probabilities
//! rounded to f16, GELU through f16); slower, as each step is a kernel.

use crate::ops::Attention;
use candle_core::{DType, Device, Result, Tensor, D};
use wasm_chord_core::backend::{GluKind, RopeKind, RopeParams};

/// `t` rounded to f16 and back.
fn round_f16(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

/// RMSNorm of `x` (`n_rows × dim`, flat) times `w` (`dim`).
pub(crate) fn rms_norm(
    x: &Tensor,
    w: &Tensor,
    eps: f32,
    n_rows: usize,
    dim: usize,
) -> Result<Tensor> {
    let x = x.reshape((n_rows, dim))?;
    let ms = x.sqr()?.mean_keepdim(1)?;
    let scale = ms.affine(1.0, f64::from(eps))?.sqrt()?.recip()?;
    x.broadcast_mul(&scale)?.broadcast_mul(w)?.flatten_all()
}

/// RoPE of `x` (`positions.len() × n_heads × head_dim`, flat) with
/// cos/sin tables built on the host as `ops::cpu::rope` builds them.
pub(crate) fn rope(
    x: &Tensor,
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    p: &RopeParams<'_>,
    dev: &Device,
) -> Result<Tensor> {
    let (n_tok, n_rot, half) = (positions.len(), p.n_rot, p.n_rot / 2);
    let theta_scale = p.freq_base.powf(-2.0 / n_rot as f32);
    let mut cos = Vec::with_capacity(n_tok * half);
    let mut sin = Vec::with_capacity(n_tok * half);
    for &pos in positions {
        let mut theta = pos as f32;
        for i in 0..half {
            let ff = p.freq_factors.map_or(1.0, |f| f[i]);
            let th = p.freq_scale * (theta / ff);
            cos.push(th.cos());
            sin.push(th.sin());
            theta *= theta_scale;
        }
    }
    let cos = Tensor::from_vec(cos, (n_tok, 1, half), dev)?;
    let sin = Tensor::from_vec(sin, (n_tok, 1, half), dev)?;
    let x = x.reshape((n_tok, n_heads, head_dim))?;
    let rot = x.narrow(2, 0, n_rot)?;
    let (x0, x1) = match p.kind {
        RopeKind::Neox => (rot.narrow(2, 0, half)?, rot.narrow(2, half, half)?),
        RopeKind::Normal => {
            let pairs = rot.reshape((n_tok, n_heads, half, 2))?;
            (
                pairs.narrow(3, 0, 1)?.squeeze(3)?,
                pairs.narrow(3, 1, 1)?.squeeze(3)?,
            )
        }
    };
    let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let y1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    let rotated = match p.kind {
        RopeKind::Neox => Tensor::cat(&[&y0, &y1], 2)?,
        RopeKind::Normal => Tensor::stack(&[&y0, &y1], 3)?.reshape((n_tok, n_heads, n_rot))?,
    };
    let out = if n_rot < head_dim {
        Tensor::cat(&[&rotated, &x.narrow(2, n_rot, head_dim - n_rot)?], 2)?
    } else {
        rotated
    };
    out.flatten_all()
}

/// `act(gate) · up`; GELU's input and result rounded to f16 as ggml-cpu's
/// table does (saturation outside ±10 is within f16 rounding of GELU).
pub(crate) fn glu(kind: GluKind, g: &Tensor, u: &Tensor) -> Result<Tensor> {
    let a = match kind {
        GluKind::Silu => g.silu()?,
        GluKind::GeluTanh => round_f16(&round_f16(g)?.gelu()?)?,
    };
    a * u
}

/// Writes rows of `src` into `dst` rows `rows[i]` in place, rounded to f16,
/// one `slice_set` per run of consecutive rows.
pub(crate) fn write_rows(dst: &Tensor, src: &Tensor, rows: &[u32], width: usize) -> Result<()> {
    let n_dst = dst.elem_count() / width.max(1);
    let dst2 = dst.reshape((n_dst, width))?;
    let src = round_f16(&src.reshape((rows.len(), width))?)?;
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && rows[j] == rows[j - 1] + 1 {
            j += 1;
        }
        dst2.slice_set(&src.narrow(0, i, j - i)?.contiguous()?, 0, rows[i] as usize)?;
        i = j;
    }
    Ok(())
}

/// Attention over the cache with a host-built additive mask (causal,
/// window, empty rows), GQA by grouping query heads per KV head.
pub(crate) fn attention(
    p: &Attention,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    dev: &Device,
) -> Result<Tensor> {
    let (nh, nkv, hd) = (p.n_heads, p.n_kv_heads, p.head_dim);
    let group = nh / nkv;
    let n_tok = p.query_positions.len();
    let n_slots = p.cache_positions.len();
    let mut mask = vec![f32::NEG_INFINITY; n_tok * n_slots];
    for (t, &qp) in p.query_positions.iter().enumerate() {
        let qp = i64::from(qp);
        for (j, &kp) in p.cache_positions.iter().enumerate() {
            let kp = i64::from(kp);
            if kp >= 0 && kp <= qp && p.window.is_none_or(|w| qp - kp < i64::from(w)) {
                mask[t * n_slots + j] = 0.0;
            }
        }
    }
    // (t, nh, hd) → (nkv, group·t, hd), rows of a KV head's group together.
    let q = round_f16(&q.reshape((n_tok, nkv, group, hd))?)?
        .permute((1, 2, 0, 3))?
        .reshape((nkv, group * n_tok, hd))?;
    let k = k
        .narrow(0, 0, n_slots * nkv * hd)?
        .reshape((n_slots, nkv, hd))?
        .transpose(0, 1)?
        .contiguous()?;
    let v = v
        .narrow(0, 0, n_slots * nkv * hd)?
        .reshape((n_slots, nkv, hd))?
        .transpose(0, 1)?
        .contiguous()?;
    let mut s = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? * f64::from(p.scale))?;
    if let Some(cap) = p.softcap {
        s = (s.affine(f64::from(1.0 / cap), 0.0)?.tanh()? * f64::from(cap))?;
    }
    let mask = Tensor::from_vec(mask, (1, n_tok, n_slots), dev)?
        .repeat((1, group, 1))?
        .reshape((1, group * n_tok, n_slots))?;
    let s = s.broadcast_add(&mask)?;
    let m = s.max_keepdim(D::Minus1)?;
    let e = s.broadcast_sub(&m)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    let pr = round_f16(&e.broadcast_div(&sum)?)?;
    // (nkv, group·t, hd) → (t, nh, hd).
    pr.matmul(&v)?
        .reshape((nkv, group, n_tok, hd))?
        .permute((2, 0, 1, 3))?
        .flatten_all()
}
