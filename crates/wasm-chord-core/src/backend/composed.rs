//! The fused Backend methods written as calls of the basic ones: the
//! trait's default implementations, and the fallback of a backend whose
//! fused kernel does not apply to a call.

use super::{Backend, QkRope, Result};

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

/// [`Backend::qk_rope`] as [`Backend::rms_norm`] (QK-norm, when
/// `rope.norms` are given), [`Backend::rope`] and [`Backend::scale`].
pub fn qk_rope<B: Backend + ?Sized>(
    be: &B,
    q: &mut B::Buffer,
    k: &mut B::Buffer,
    q_out: &mut B::Buffer,
    k_out: &mut B::Buffer,
    rope: &QkRope<'_, B::Weight>,
) -> Result<()> {
    let n = rope.positions.len();
    let (nh, nkv, hd) = (rope.n_heads, rope.n_kv_heads, rope.head_dim);
    let (qr, kr) = match rope.norms {
        Some((qw, kw, eps)) => {
            be.rms_norm(q, qw, eps, n * nh, hd, q_out)?;
            be.rms_norm(k, kw, eps, n * nkv, hd, k_out)?;
            (q_out, k_out)
        }
        None => (q, k),
    };
    be.rope(qr, rope.positions, nh, hd, &rope.params)?;
    be.rope(kr, rope.positions, nkv, hd, &rope.params)?;
    if let Some(s) = rope.q_scale {
        be.scale(qr, s, n * nh * hd)?;
    }
    Ok(())
}
