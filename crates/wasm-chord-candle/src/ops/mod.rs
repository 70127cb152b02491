//! The fused ops candle lacks, as candle custom ops: RMSNorm, RoPE (normal
//! and NeoX, with frequency factors), attention over the KV cache (GQA,
//! causal and sliding-window masking by positions, soft-capping), gated
//! activations, KV-cache row writes (rounded to f16 like llama.cpp's cache),
//! argmax, and two of the decode step's fusions: a residual add with the
//! RMSNorm after it, and QK-norm with RoPE and q's scale. Each has a CPU implementation (module `cpu`, also the
//! reference the CUDA kernels are tested against) and a CUDA kernel
//! (module `cuda`, PTX built by `build.rs`).
//!
//! Tensors handed to these ops are contiguous f32 vectors (the backend's
//! buffers); shapes are carried by the op structs and checked by the caller.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;

use candle_core::{CpuStorage, Layout, Result, Shape};
use wasm_chord_core::backend::{GluKind, RopeKind};

/// RMSNorm of `n_rows` rows of `dim` values times a weight vector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RmsNorm {
    pub n_rows: usize,
    pub dim: usize,
    pub eps: f32,
}

/// RoPE over `n_tok × n_heads × head_dim` values; inputs are `x`, the
/// positions (u32, one per token) and the frequency factors (`n_rot / 2`
/// f32, ones when the model has none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rope {
    pub n_tok: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub kind: RopeKind,
    pub freq_base: f32,
    pub freq_scale: f32,
}

/// A residual add and the RMSNorm after it (`Backend::add_rms_norm`):
/// x += b, b first RMS-normalized and times `b_norm` when given, then
/// y = rms_norm(x) · w. Inputs x, b, w; the output holds the new x
/// (`n_rows · dim` values) followed by y.
#[derive(Debug, Clone)]
pub(crate) struct AddRmsNorm {
    pub n_rows: usize,
    pub dim: usize,
    pub eps: f32,
    /// The added branch's norm weight (Gemma's post-norms).
    pub b_norm: Option<candle_core::Tensor>,
}

/// QK-norm (when `norms`), RoPE of q and k, then q times `q_scale`
/// (`Backend::qk_rope`) in one op. Inputs q, k and the positions (u32, one
/// per token); the output holds q (`n_tok · n_heads · head_dim` values)
/// followed by k.
#[derive(Debug, Clone)]
pub(crate) struct QkRope {
    pub rope: Rope,
    pub n_kv_heads: usize,
    pub q_scale: Option<f32>,
    /// q's and k's norm weights and eps.
    pub norms: Option<(candle_core::Tensor, candle_core::Tensor, f32)>,
    /// The frequency factors (`n_rot / 2` f32, ones when the model has none).
    pub freq_factors: candle_core::Tensor,
}

/// Attention of `q` over cache rows `k`, `v`.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
    pub window: Option<u32>,
    pub query_positions: Vec<u32>,
    /// Position of each cache row, -1 for an empty row.
    pub cache_positions: Vec<i32>,
    /// The same two vectors on the device (u32; -1 stored as its bits).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub dev_positions: (candle_core::Tensor, candle_core::Tensor),
}

/// `out = act(gate) · up` over `n` values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Glu {
    pub kind: GluKind,
    pub n: usize,
}

/// Writes `rows.len()` rows of `width` values into rows `rows[i]` of the
/// destination, rounded to f16.
#[derive(Debug, Clone)]
pub(crate) struct WriteRows {
    pub rows: Vec<u32>,
    pub width: usize,
    /// `rows` on the device.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub dev_rows: candle_core::Tensor,
}

/// Index of the largest of the first `n` values (ties: lowest index; NaN
/// never wins), as a one-element u32 tensor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Argmax {
    pub n: usize,
}

/// The f32 values of a contiguous CPU storage.
pub(crate) fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let v = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("expected a contiguous f32 tensor"),
    }
}

/// The u32 values of a contiguous CPU storage.
pub(crate) fn cpu_u32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [u32]> {
    let v = s.as_slice::<u32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("expected a contiguous u32 tensor"),
    }
}

fn check_len(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        candle_core::bail!("{op}: {what} has {have} values, needs {need}");
    }
    Ok(())
}

impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "wc-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?);
        let n = self.n_rows * self.dim;
        check_len("rms_norm", "x", x.len(), n)?;
        check_len("rms_norm", "weight", w.len(), self.dim)?;
        let mut out = vec![0.0; n];
        cpu::rms_norm(&x[..n], &w[..self.dim], self.eps, self.dim, &mut out);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::rms_norm(self, s1, l1, s2, l2)
    }
}

impl candle_core::CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "wc-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s1, l1)?;
        let pos = cpu_u32(s2, l2)?;
        let ff = cpu_f32(s3, l3)?;
        let n = self.n_tok * self.n_heads * self.head_dim;
        check_len("rope", "x", x.len(), n)?;
        check_len("rope", "positions", pos.len(), self.n_tok)?;
        check_len("rope", "freq_factors", ff.len(), self.n_rot / 2)?;
        let mut out = x[..n].to_vec();
        cpu::rope(self, &mut out, pos, ff);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::rope(self, s1, l1, s2, l2, s3, l3)
    }
}

/// The f32 values of a CPU tensor carried by an op (a weight vector).
fn tensor_f32(t: &candle_core::Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl candle_core::CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "wc-add-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b, w) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_f32(s3, l3)?);
        let (n, dim) = (self.n_rows * self.dim, self.dim);
        check_len("add_rms_norm", "x", x.len(), n)?;
        check_len("add_rms_norm", "b", b.len(), n)?;
        check_len("add_rms_norm", "weight", w.len(), dim)?;
        let mut out = vec![0.0; 2 * n];
        let (sum, y) = out.split_at_mut(n);
        match &self.b_norm {
            Some(bn) => {
                let bn = tensor_f32(bn)?;
                check_len("add_rms_norm", "b's norm", bn.len(), dim)?;
                cpu::rms_norm(&b[..n], &bn[..dim], self.eps, dim, sum);
            }
            None => sum.copy_from_slice(&b[..n]),
        }
        // x + branch (f32 addition is commutative: the composed ops' sum).
        for (s, &v) in sum.iter_mut().zip(&x[..n]) {
            *s += v;
        }
        cpu::rms_norm(sum, &w[..dim], self.eps, dim, y);
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::add_rms_norm(self, s1, l1, s2, l2, s3, l3)
    }
}

impl candle_core::CustomOp3 for QkRope {
    fn name(&self) -> &'static str {
        "wc-qk-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, pos) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_u32(s3, l3)?);
        let r = &self.rope;
        let hd = r.head_dim;
        let nq = r.n_tok * r.n_heads * hd;
        let nk = r.n_tok * self.n_kv_heads * hd;
        check_len("qk_rope", "q", q.len(), nq)?;
        check_len("qk_rope", "k", k.len(), nk)?;
        check_len("qk_rope", "positions", pos.len(), r.n_tok)?;
        let ff = tensor_f32(&self.freq_factors)?;
        check_len("qk_rope", "freq_factors", ff.len(), r.n_rot / 2)?;
        let mut out = vec![0.0; nq + nk];
        let (qo, ko) = out.split_at_mut(nq);
        match &self.norms {
            Some((qw, kw, eps)) => {
                let (qw, kw) = (tensor_f32(qw)?, tensor_f32(kw)?);
                check_len("qk_rope", "q norm", qw.len(), hd)?;
                check_len("qk_rope", "k norm", kw.len(), hd)?;
                cpu::rms_norm(&q[..nq], &qw[..hd], *eps, hd, qo);
                cpu::rms_norm(&k[..nk], &kw[..hd], *eps, hd, ko);
            }
            None => {
                qo.copy_from_slice(&q[..nq]);
                ko.copy_from_slice(&k[..nk]);
            }
        }
        cpu::rope(r, qo, pos, &ff);
        let rk = Rope {
            n_heads: self.n_kv_heads,
            ..*r
        };
        cpu::rope(&rk, ko, pos, &ff);
        if let Some(s) = self.q_scale {
            for v in qo.iter_mut() {
                *v *= s;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(nq + nk)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::qk_rope(self, s1, l1, s2, l2, s3, l3)
    }
}

impl Attention {
    pub(crate) fn q_width(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub(crate) fn kv_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    fn check(&self, q: usize, k: usize, v: usize) -> Result<()> {
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            candle_core::bail!(
                "attention: {} heads over {} kv heads",
                self.n_heads,
                self.n_kv_heads
            );
        }
        let n_tok = self.query_positions.len();
        let n_slots = self.cache_positions.len();
        check_len("attention", "q", q, n_tok * self.q_width())?;
        check_len("attention", "k", k, n_slots * self.kv_width())?;
        check_len("attention", "v", v, n_slots * self.kv_width())
    }
}

impl candle_core::CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "wc-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?, cpu_f32(s3, l3)?);
        self.check(q.len(), k.len(), v.len())?;
        let n = self.query_positions.len() * self.q_width();
        let mut out = vec![0.0; n];
        cpu::attention(self, q, k, v, &mut out);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.check(
            l1.shape().elem_count(),
            l2.shape().elem_count(),
            l3.shape().elem_count(),
        )?;
        cuda::attention(self, s1, l1, s2, l2, s3, l3)
    }
}

impl candle_core::CustomOp2 for Glu {
    fn name(&self) -> &'static str {
        "wc-glu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (cpu_f32(s1, l1)?, cpu_f32(s2, l2)?);
        check_len("glu", "gate", g.len(), self.n)?;
        check_len("glu", "up", u.len(), self.n)?;
        let out = g[..self.n]
            .iter()
            .zip(&u[..self.n])
            .map(|(&g, &u)| cpu::glu(self.kind, g, u))
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(self.n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda::glu(self, s1, l1, s2, l2)
    }
}

impl WriteRows {
    pub(crate) fn check(&self, dst: usize, src: usize) -> Result<()> {
        check_len("write_rows", "src", src, self.rows.len() * self.width)?;
        for &r in &self.rows {
            let end = (r as usize + 1)
                .checked_mul(self.width)
                .ok_or_else(|| candle_core::Error::Msg(format!("write_rows: row {r} overflows")))?;
            check_len("write_rows", "dst", dst, end)?;
        }
        Ok(())
    }
}

impl candle_core::InplaceOp2 for WriteRows {
    fn name(&self) -> &'static str {
        "wc-write-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let src = cpu_f32(s2, l2)?;
        let Some((a, b)) = l1.contiguous_offsets() else {
            candle_core::bail!("write_rows: destination is not contiguous");
        };
        let CpuStorage::F32(dst) = s1 else {
            candle_core::bail!("write_rows: destination is not f32");
        };
        let dst = &mut dst[a..b];
        self.check(dst.len(), src.len())?;
        cpu::write_rows(dst, src, &self.rows, self.width);
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        self.check(l1.shape().elem_count(), l2.shape().elem_count())?;
        cuda::write_rows(self, s1, l1, s2, l2)
    }
}

impl candle_core::CustomOp1 for Argmax {
    fn name(&self) -> &'static str {
        "wc-argmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l)?;
        check_len("argmax", "x", x.len(), self.n)?;
        let i = wasm_chord_core::backend::host_argmax(&x[..self.n]);
        Ok((CpuStorage::U32(vec![i]), Shape::from(1)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        check_len("argmax", "x", l.shape().elem_count(), self.n)?;
        cuda::argmax(self, s, l)
    }
}
