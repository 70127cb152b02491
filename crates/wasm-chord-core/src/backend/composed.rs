//! The fused Backend methods written as calls of the basic ones: the
//! trait's default implementations, and the fallback of a backend whose
//! fused kernel does not apply to a call.

use super::{Backend, Result, RopeParams};

/// [`Backend::add_rms_norm`] as [`Backend::rms_norm`] (of `b`, when
/// `b_norm` is given, into `out`), [`Backend::add`] and
/// [`Backend::rms_norm`].
#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm<B: Backend + ?Sized>(
    be: &B,
    x: &mut B::Buffer,
    b: &B::Buffer,
    b_norm: Option<&B::Weight>,
    weight: &B::Weight,
    eps: f32,
    n_rows: usize,
    dim: usize,
    out: &mut B::Buffer,
) -> Result<()> {
    match b_norm {
        Some(bn) => {
            be.rms_norm(b, bn, eps, n_rows, dim, out)?;
            be.add(x, out, n_rows * dim)?;
        }
        None => be.add(x, b, n_rows * dim)?,
    }
    be.rms_norm(x, weight, eps, n_rows, dim, out)
}

/// [`Backend::qk_rope`] as [`Backend::rms_norm`] (QK-norm, when `norms`
/// are given), [`Backend::rope`] and [`Backend::scale`].
#[allow(clippy::too_many_arguments)]
pub fn qk_rope<B: Backend + ?Sized>(
    be: &B,
    q: &mut B::Buffer,
    k: &mut B::Buffer,
    norms: Option<(&B::Weight, &B::Weight, f32)>,
    q_out: &mut B::Buffer,
    k_out: &mut B::Buffer,
    positions: &[u32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    params: &RopeParams<'_>,
    q_scale: Option<f32>,
) -> Result<()> {
    let n = positions.len();
    let (qr, kr) = match norms {
        Some((qw, kw, eps)) => {
            be.rms_norm(q, qw, eps, n * n_heads, head_dim, q_out)?;
            be.rms_norm(k, kw, eps, n * n_kv_heads, head_dim, k_out)?;
            (q_out, k_out)
        }
        None => (q, k),
    };
    be.rope(qr, positions, n_heads, head_dim, params)?;
    be.rope(kr, positions, n_kv_heads, head_dim, params)?;
    if let Some(s) = q_scale {
        be.scale(qr, s, n * n_heads * head_dim)?;
    }
    Ok(())
}
