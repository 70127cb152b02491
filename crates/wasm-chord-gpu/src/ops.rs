//! The ops: argument checks on the host, then one or more recorded
//! dispatches of the WGSL kernels in `shaders/`.

use crate::context::{Bind, Pipe};
use crate::weight::wgsl_name;
use crate::{GpuBackend, GpuBuffer, GpuWeight, Quantized, NAME};
use wasm_chord_core::backend::{BackendError, GluKind, Result, RopeKind, RopeParams};
use wasm_chord_core::GgmlType;

const DEQUANT: &str = include_str!("shaders/dequant.wgsl");
const MATVEC: &str = include_str!("shaders/matvec.wgsl");
const MATVEC32: &str = include_str!("shaders/matvec32.wgsl");
const MATMUL: &str = include_str!("shaders/matmul.wgsl");
const EMBED: &str = include_str!("shaders/embed.wgsl");
const QUANTIZE: &str = include_str!("shaders/quantize.wgsl");
const RMS_NORM: &str = include_str!("shaders/rms_norm.wgsl");
const ADD_RMS_NORM: &str = include_str!("shaders/add_rms_norm.wgsl");
const ROPE: &str = include_str!("shaders/rope.wgsl");
const ADD: &str = include_str!("shaders/add.wgsl");
const ADD_BIAS: &str = include_str!("shaders/add_bias.wgsl");
const MAP: &str = include_str!("shaders/map.wgsl");
const GLU: &str = include_str!("shaders/glu.wgsl");
const GLU_ACT: &str = include_str!("shaders/glu_act.wgsl");

/// The store of `matvec32.wgsl` and its replacement in the variant fused
/// with the gated activation (`y` holds the gate product when it runs).
const STORE: &str = "fn store(i: u32, v: f32) { y[i] = v; }";
const STORE_GLU: &str = "fn store(i: u32, v: f32) { y[i] = glu_act(y[i], p[8]) * v; }";
const WRITE_ROWS: &str = include_str!("shaders/write_rows.wgsl");
const WRITE_KV: &str = include_str!("shaders/write_kv.wgsl");
const QK_ROPE: &str = include_str!("shaders/qk_rope.wgsl");

/// Bindings and loads/stores of `qk_rope.wgsl` rotating q and k in place.
const QK_ROPE_PLAIN: &str = "
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read> d: array<u32>;

fn norm_scale(is_q: bool, base: u32, hd: u32, lid: u32) -> f32 { return 1.0; }
fn ld(is_q: bool, base: u32, j: u32, sc: f32) -> f32 {
    if (is_q) { return q[base + j]; }
    return k[base + j];
}
fn st(is_q: bool, i: u32, v: f32) {
    if (is_q) { q[i] = v; } else { k[i] = v; }
}
";

/// Bindings and loads/stores of `qk_rope.wgsl` with QK-norm: q and k are
/// read, normalized per head (as `rms_norm.wgsl`: (x · scale) · w) and the
/// results written to qn and kn.
const QK_ROPE_NORM: &str = "
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> qn: array<f32>;
@group(0) @binding(4) var<storage, read_write> kn: array<f32>;
@group(0) @binding(5) var<storage, read> qw: array<f32>;
@group(0) @binding(6) var<storage, read> kw: array<f32>;
@group(0) @binding(7) var<storage, read> d: array<u32>;

fn raw(is_q: bool, i: u32) -> f32 {
    if (is_q) { return q[i]; }
    return k[i];
}
fn norm_scale(is_q: bool, base: u32, hd: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var j = lid; j < hd; j += WG) {
        let v = raw(is_q, base + j);
        s += v * v;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) {
            red[lid] += red[lid + h];
        }
        workgroupBarrier();
    }
    return 1.0 / sqrt(red[0] / f32(hd) + bitcast<f32>(p[11]));
}
fn ld(is_q: bool, base: u32, j: u32, sc: f32) -> f32 {
    if (is_q) { return (q[base + j] * sc) * qw[j]; }
    return (k[base + j] * sc) * kw[j];
}
fn st(is_q: bool, i: u32, v: f32) {
    if (is_q) { qn[i] = v; } else { kn[i] = v; }
}
";

/// Most tokens the matrix-vector kernel takes at once; longer batches use
/// the tiled kernel.
const MV_TOKENS: usize = 8;
/// Most workgroups along one dispatch dimension (WebGPU's default limit).
pub(crate) const MAX_GROUPS: u64 = 65_535;

pub(crate) fn shape(op: &'static str, detail: String) -> BackendError {
    BackendError::Shape { op, detail }
}

pub(crate) fn need(op: &'static str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(shape(op, format!("{what} has {have} values, needs {need}")));
    }
    Ok(())
}

pub(crate) fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| shape(op, format!("{v} does not fit 32 bits")))
}

/// Workgroups for `n` of them, spread over y beyond the x limit; returns
/// the grid and its x extent.
pub(crate) fn grid(n: u64) -> ((u32, u32, u32), u32) {
    if n <= MAX_GROUPS {
        ((n as u32, 1, 1), n as u32)
    } else {
        let y = n.div_ceil(MAX_GROUPS);
        ((MAX_GROUPS as u32, y as u32, 1), MAX_GROUPS as u32)
    }
}

/// Grid for `n` threads in workgroups of 64, and the threads along x.
pub(crate) fn grid64(n: u64) -> ((u32, u32, u32), u32) {
    let (g, gx) = grid(n.div_ceil(64));
    (g, gx.saturating_mul(64))
}

fn with_deq(body: &str, ty: &str) -> String {
    format!(
        "{body}\n{DEQUANT}\nfn deq4(base: u32, i: u32) -> vec4<f32> {{ return deq4_{ty}(base, i); }}\n\
         fn deq32(base: u32, i: u32) -> array<vec4<f32>, 8> {{ return deq32_{ty}(base, i); }}\n"
    )
}

/// The reduction of `matvec32.wgsl` with subgroup shuffles: each row's TPR
/// lanes are an aligned part of one subgroup, so a butterfly over them
/// leaves every lane with the row's sums.
const SUBGROUP_REDUCE: &str = "    for (var t = 0u; t < nt; t++) {
        var v = acc[t];
        for (var s = TPR / 2u; s > 0u; s >>= 1u) {
            v += subgroupShuffleXor(v, s);
        }
        acc[t] = v;
    }
    if (r < rows && lane < nt) {
        store((t0 + lane) * p[3] + p[4] + r, acc[lane]);
    }
";

/// `matvec32.wgsl` with its reduction done by subgroup shuffles.
fn subgroup_variant(src: &str) -> String {
    match (
        src.find("    // REDUCE-BEGIN"),
        src.find("    // REDUCE-END"),
    ) {
        (Some(a), Some(b)) => {
            // Browsers' WGSL compilers require the directive; naga (native)
            // rejects it and takes the subgroup builtins as they are.
            let enable = if cfg!(target_arch = "wasm32") {
                "enable subgroups;\n"
            } else {
                ""
            };
            let src = format!("{enable}{}{SUBGROUP_REDUCE}{}", &src[..a], &src[b..]);
            // Rows are assigned by subgroup position, so that a row's lanes
            // are one aligned part of one subgroup whatever the driver's
            // layout of invocations into subgroups.
            match (src.find("    // SLOT-BEGIN"), src.find("    // SLOT-END")) {
                (Some(a), Some(b)) => format!(
                    "{}    let slot = sg_id * sg_size + sg_lane;\n{}",
                    &src[..a],
                    &src[b..]
                )
                .replace(
                    "@builtin(local_invocation_index) lid: u32)",
                    "@builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg_id: u32, \
                     @builtin(subgroup_size) sg_size: u32, @builtin(subgroup_invocation_id) sg_lane: u32)",
                ),
                _ => src,
            }
        }
        _ => src.to_string(),
    }
}

fn unsupported(op: &'static str, ty: GgmlType) -> BackendError {
    BackendError::UnsupportedType {
        backend: NAME,
        op,
        ty,
    }
}

/// The rounding ggml-cpu applies to activations before a dot product with
/// weights of `ty` (as the WGSL quantize mode), or `None` for f32 weights.
fn act_mode(ty: GgmlType) -> Option<u32> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => Some(0),
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => Some(1),
        GgmlType::F16 => Some(2),
        _ => None,
    }
}

fn f32_vector<'a>(w: &'a GpuWeight, op: &'static str) -> Result<&'a wgpu::Buffer> {
    match (w.ty, w.rows, w.parts.first()) {
        (GgmlType::F32, 1, Some(p)) => Ok(&p.buf),
        _ => Err(unsupported(op, w.ty)),
    }
}

impl GpuBackend {
    pub(crate) fn simple(&self, key: &'static str, src: &'static str) -> std::sync::Arc<Pipe> {
        self.ctx.pipeline(key, || src.to_string())
    }

    /// `x` (its first `n` values) rounded as `mode` says, reusing the last
    /// result when `x` has not changed since.
    fn quantized(&self, x: &GpuBuffer, n: usize, mode: u32) -> Result<wgpu::Buffer> {
        let key = (x.id, x.version, n);
        let mut cache = self.quantized.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = cache.get(&mode) {
            if q.key == key {
                return Ok(q.buf.clone());
            }
        }
        let bytes = n as u64 * 4;
        let buf = match cache.remove(&mode) {
            Some(q) if q.buf.size() >= bytes => q.buf,
            _ => self.ctx.storage(bytes, "quantized activations")?,
        };
        let pipe = self.simple("quantize", QUANTIZE);
        let (g, gx) = grid((n as u64).div_ceil(256));
        self.ctx.dispatch(
            "quantize",
            &pipe,
            &[u32_of("matmul", n)?, mode, gx],
            &[Bind::Buf(&x.buf), Bind::Buf(&buf)],
            g,
        );
        cache.insert(
            mode,
            Quantized {
                key,
                buf: buf.clone(),
            },
        );
        Ok(buf)
    }

    /// Whether [`GpuBackend::op_matmul`] can fuse the gated activation into
    /// the up projection: the matrix-vector kernel on whole sub-blocks, both
    /// weights of the same shape.
    pub(crate) fn fuses_glu(
        &self,
        w_gate: &GpuWeight,
        w_up: &GpuWeight,
        n_tokens: usize,
        rows: usize,
    ) -> bool {
        n_tokens <= MV_TOKENS
            && w_up.cols % 32 == 0
            && (w_gate.rows, w_gate.cols) == (w_up.rows, w_up.cols)
            && w_up.rows == rows
    }

    /// `out = w · x` for `n_tokens` tokens; with `glu`, `out = act(out) ·
    /// (w · x)` instead (the matrix-vector kernel only: see
    /// [`GpuBackend::fuses_glu`]).
    pub(crate) fn op_matmul(
        &self,
        w: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        out: &mut GpuBuffer,
        glu: Option<GluKind>,
    ) -> Result<()> {
        let ty_name = wgsl_name(w.ty).ok_or_else(|| unsupported("matmul", w.ty))?;
        let block = w.ty.block_size();
        if w.cols % 4 != 0 || w.cols % block != 0 {
            return Err(shape("matmul", format!("rows of {} values", w.cols)));
        }
        need("matmul", "x", x.len, n_tokens * w.cols)?;
        need("matmul", "out", out.len, n_tokens * w.rows)?;
        if n_tokens == 0 {
            return Ok(());
        }
        let n = n_tokens * w.cols;
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let act = match act_mode(w.ty) {
            Some(mode) => self.quantized(x, n, mode)?,
            None => x.buf.clone(),
        };
        let tiled = n_tokens > MV_TOKENS && w.cols % 32 == 0;
        let whole = w.cols % 32 == 0;
        let (kind, body) = if tiled {
            ("matmul", MATMUL)
        } else if whole {
            ("matvec", MATVEC32)
        } else {
            ("matvec4", MATVEC)
        };
        // Threads per row of the matrix-vector kernels, by row length (in
        // sub-blocks of 32, or groups of 4 values).
        let tpr = if whole {
            match w.cols / 32 {
                0..=32 => 16,
                33..=128 => 32,
                129..=1024 => 64,
                _ => 256,
            }
        } else {
            match w.cols / 4 {
                0..=256 => 16,
                257..=2048 => 64,
                _ => 256,
            }
        };
        // With subgroups at least as wide as a row's threads, the sums are
        // reduced by shuffles (rows get fewer threads if needed).
        let sg = self.subgroup_width();
        let shuffle = whole && !tiled && sg >= 4;
        let tpr = if shuffle { tpr.min(sg) } else { tpr };
        if glu.is_some() && (tiled || !whole) {
            return Err(shape(
                "matmul",
                "a fused GLU needs the matrix-vector kernel".into(),
            ));
        }
        let key = if tiled {
            format!("{kind}_{ty_name}")
        } else {
            format!(
                "{kind}_{ty_name}_{tpr}{}{}",
                if shuffle { "_sg" } else { "" },
                if glu.is_some() { "_glu" } else { "" }
            )
        };
        let pipe = self.ctx.pipeline(&key, || {
            let src = with_deq(body, ty_name);
            let src = if shuffle { subgroup_variant(&src) } else { src };
            let src = if glu.is_some() {
                format!("{}\n{GLU_ACT}", src.replace(STORE, STORE_GLU))
            } else {
                src
            };
            src.replace("TPR", &format!("{tpr}u"))
        });
        let glu_kind = glu.map_or(0, |k| u32::from(k == GluKind::GeluTanh));
        for part in &w.parts {
            let common = [
                u32_of("matmul", part.rows)?,
                u32_of("matmul", w.cols)?,
                0,
                u32_of("matmul", w.rows)?,
                u32_of("matmul", part.first)?,
                0,
                u32_of("matmul", w.row_bytes)?,
                0,
                glu_kind,
            ];
            if tiled {
                let mut p = common;
                p[2] = u32_of("matmul", n_tokens)?;
                let gx = part.rows.div_ceil(64) as u32;
                let gy = u32_of("matmul", n_tokens.div_ceil(64))?;
                self.ctx.dispatch(
                    kind,
                    &pipe,
                    &p,
                    &[Bind::Buf(&part.buf), Bind::Buf(&act), Bind::Buf(&out.buf)],
                    (gx, gy, 1),
                );
            } else {
                let (g, gx) = grid(part.rows.div_ceil(256 / tpr) as u64);
                for t0 in (0..n_tokens).step_by(MV_TOKENS) {
                    let mut p = common;
                    p[2] = (n_tokens - t0).min(MV_TOKENS) as u32;
                    p[5] = gx;
                    p[7] = u32_of("matmul", t0)?;
                    self.ctx.dispatch(
                        kind,
                        &pipe,
                        &p,
                        &[Bind::Buf(&part.buf), Bind::Buf(&act), Bind::Buf(&out.buf)],
                        g,
                    );
                }
            }
        }
        Ok(())
    }

    pub(crate) fn op_embed(
        &self,
        table: &GpuWeight,
        tokens: &[u32],
        scale: f32,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let ty_name = wgsl_name(table.ty).ok_or_else(|| unsupported("embed", table.ty))?;
        let cols = table.cols;
        if cols % 4 != 0 {
            return Err(shape("embed", format!("rows of {cols} values")));
        }
        need("embed", "out", out.len, tokens.len() * cols)?;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= table.rows) {
            return Err(BackendError::TokenOutOfRange {
                id,
                n_vocab: table.rows,
            });
        }
        let key = format!("embed_{ty_name}");
        let pipe = self.ctx.pipeline(&key, || with_deq(EMBED, ty_name));
        for part in &table.parts {
            let mut pairs = Vec::new();
            for (t, &id) in tokens.iter().enumerate() {
                let r = id as usize;
                if r >= part.first && r < part.first + part.rows {
                    pairs.push(u32_of("embed", t)?);
                    pairs.push(u32_of("embed", r - part.first)?);
                }
            }
            if pairs.is_empty() {
                continue;
            }
            let n = (pairs.len() / 2 * cols / 4) as u64;
            let (g, tx) = grid64(n);
            self.ctx.dispatch(
                "embed",
                &pipe,
                &[
                    u32_of("embed", n as usize)?,
                    tx,
                    u32_of("embed", cols)?,
                    u32_of("embed", table.row_bytes)?,
                    scale.to_bits(),
                ],
                &[
                    Bind::Buf(&part.buf),
                    Bind::Buf(&out.buf),
                    Bind::Data(&pairs),
                ],
                g,
            );
        }
        Ok(())
    }

    pub(crate) fn op_add_bias(
        &self,
        x: &mut GpuBuffer,
        bias: &GpuWeight,
        n_rows: usize,
    ) -> Result<()> {
        let b = f32_vector(bias, "add_bias")?;
        let n = n_rows * bias.cols;
        need("add_bias", "x", x.len, n)?;
        let (g, tx) = grid64(n as u64);
        let pipe = self.simple("add_bias", ADD_BIAS);
        self.ctx.dispatch(
            "add_bias",
            &pipe,
            &[u32_of("add_bias", n)?, tx, u32_of("add_bias", bias.cols)?],
            &[Bind::Buf(&x.buf), Bind::Buf(b)],
            g,
        );
        Ok(())
    }

    pub(crate) fn op_rms_norm(
        &self,
        x: &GpuBuffer,
        weight: &GpuWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let w = f32_vector(weight, "rms_norm")?;
        if weight.cols != dim {
            return Err(shape(
                "rms_norm",
                format!("weight {} != dim {dim}", weight.cols),
            ));
        }
        need("rms_norm", "x", x.len, n_rows * dim)?;
        need("rms_norm", "out", out.len, n_rows * dim)?;
        let (g, gx) = grid(n_rows as u64);
        let pipe = self.simple("rms_norm", RMS_NORM);
        self.ctx.dispatch(
            "rms_norm",
            &pipe,
            &[
                u32_of("rms_norm", dim)?,
                eps.to_bits(),
                u32_of("rms_norm", n_rows)?,
                gx,
            ],
            &[Bind::Buf(&x.buf), Bind::Buf(w), Bind::Buf(&out.buf)],
            g,
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn op_add_rms_norm(
        &self,
        x: &mut GpuBuffer,
        b: &GpuBuffer,
        b_norm: Option<&GpuWeight>,
        weight: &GpuWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let op = "add_rms_norm";
        let w = f32_vector(weight, op)?;
        let bw = match b_norm {
            Some(bn) => {
                if bn.cols != dim {
                    return Err(shape(op, format!("b's norm {} != dim {dim}", bn.cols)));
                }
                f32_vector(bn, op)?
            }
            None => w,
        };
        if weight.cols != dim {
            return Err(shape(op, format!("weight {} != dim {dim}", weight.cols)));
        }
        need(op, "x", x.len, n_rows * dim)?;
        need(op, "b", b.len, n_rows * dim)?;
        need(op, "out", out.len, n_rows * dim)?;
        let (g, gx) = grid(n_rows as u64);
        let pipe = self.simple(op, ADD_RMS_NORM);
        self.ctx.dispatch(
            op,
            &pipe,
            &[
                u32_of(op, dim)?,
                eps.to_bits(),
                u32_of(op, n_rows)?,
                gx,
                u32::from(b_norm.is_some()),
            ],
            &[
                Bind::Buf(&x.buf),
                Bind::Buf(&b.buf),
                Bind::Buf(bw),
                Bind::Buf(w),
                Bind::Buf(&out.buf),
            ],
            g,
        );
        Ok(())
    }

    pub(crate) fn op_rope(
        &self,
        x: &mut GpuBuffer,
        positions: &[u32],
        n_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
    ) -> Result<()> {
        need("rope", "x", x.len, positions.len() * n_heads * head_dim)?;
        let n_rot = params.n_rot;
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(shape(
                "rope",
                format!("n_rot {n_rot} vs head_dim {head_dim}"),
            ));
        }
        let ff: Vec<u32> = match params.freq_factors {
            Some(f) => {
                need("rope", "freq_factors", f.len(), n_rot / 2)?;
                f[..n_rot / 2].iter().map(|v| v.to_bits()).collect()
            }
            None => vec![1.0f32.to_bits()],
        };
        let theta_scale = params.freq_base.powf(-2.0 / n_rot as f32);
        let n = (positions.len() * n_heads * (n_rot / 2)) as u64;
        let (g, tx) = grid64(n);
        let pipe = self.simple("rope", ROPE);
        self.ctx.dispatch(
            "rope",
            &pipe,
            &[
                u32_of("rope", positions.len())?,
                u32_of("rope", n_heads)?,
                u32_of("rope", head_dim)?,
                u32_of("rope", n_rot)?,
                u32::from(params.kind == RopeKind::Neox),
                theta_scale.to_bits(),
                params.freq_scale.to_bits(),
                u32::from(params.freq_factors.is_some()),
                tx,
            ],
            &[Bind::Buf(&x.buf), Bind::Data(positions), Bind::Data(&ff)],
            g,
        );
        Ok(())
    }

    /// RoPE of q and k in one dispatch (see `Backend::qk_rope`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn op_qk_rope(
        &self,
        q: &mut GpuBuffer,
        k: &mut GpuBuffer,
        norms: Option<(&GpuWeight, &GpuWeight, f32)>,
        q_out: &mut GpuBuffer,
        k_out: &mut GpuBuffer,
        positions: &[u32],
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
        q_scale: Option<f32>,
    ) -> Result<()> {
        let op = "qk_rope";
        let (nq, nk) = (
            positions.len() * n_heads * head_dim,
            positions.len() * n_kv_heads * head_dim,
        );
        need(op, "q", q.len, nq)?;
        need(op, "k", k.len, nk)?;
        let n_rot = params.n_rot;
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(shape(op, format!("n_rot {n_rot} vs head_dim {head_dim}")));
        }
        let mut d: Vec<u32> = positions.to_vec();
        if let Some(f) = params.freq_factors {
            need(op, "freq_factors", f.len(), n_rot / 2)?;
            d.extend(f[..n_rot / 2].iter().map(|v| v.to_bits()));
        }
        let theta_scale = params.freq_base.powf(-2.0 / n_rot as f32);
        let rows = positions.len() * (n_heads + n_kv_heads);
        let (g, gx) = grid(rows as u64);
        let mut p = [
            u32_of(op, positions.len())?,
            u32_of(op, n_heads)?,
            u32_of(op, head_dim)?,
            u32_of(op, n_rot)?,
            u32::from(params.kind == RopeKind::Neox),
            theta_scale.to_bits(),
            params.freq_scale.to_bits(),
            u32::from(params.freq_factors.is_some()),
            gx,
            u32_of(op, n_kv_heads)?,
            q_scale.unwrap_or(1.0).to_bits(),
            0,
        ];
        match norms {
            Some((qw, kw, eps)) => {
                let (qwb, kwb) = (f32_vector(qw, op)?, f32_vector(kw, op)?);
                if qw.cols != head_dim || kw.cols != head_dim {
                    return Err(shape(
                        op,
                        format!("norms of {}/{} values", qw.cols, kw.cols),
                    ));
                }
                need(op, "q_out", q_out.len, nq)?;
                need(op, "k_out", k_out.len, nk)?;
                p[11] = eps.to_bits();
                let pipe = self
                    .ctx
                    .pipeline("qk_rope_norm", || format!("{QK_ROPE_NORM}\n{QK_ROPE}"));
                self.ctx.dispatch(
                    op,
                    &pipe,
                    &p,
                    &[
                        Bind::Buf(&q.buf),
                        Bind::Buf(&k.buf),
                        Bind::Buf(&q_out.buf),
                        Bind::Buf(&k_out.buf),
                        Bind::Buf(qwb),
                        Bind::Buf(kwb),
                        Bind::Data(&d),
                    ],
                    g,
                );
            }
            None => {
                let pipe = self
                    .ctx
                    .pipeline("qk_rope", || format!("{QK_ROPE_PLAIN}\n{QK_ROPE}"));
                self.ctx.dispatch(
                    op,
                    &pipe,
                    &p,
                    &[Bind::Buf(&q.buf), Bind::Buf(&k.buf), Bind::Data(&d)],
                    g,
                );
            }
        }
        Ok(())
    }

    pub(crate) fn op_add(&self, a: &mut GpuBuffer, b: &GpuBuffer, n: usize) -> Result<()> {
        need("add", "a", a.len, n)?;
        need("add", "b", b.len, n)?;
        let (g, tx) = grid64(n as u64);
        let pipe = self.simple("add", ADD);
        self.ctx.dispatch(
            "add",
            &pipe,
            &[u32_of("add", n)?, tx],
            &[Bind::Buf(&a.buf), Bind::Buf(&b.buf)],
            g,
        );
        Ok(())
    }

    pub(crate) fn op_map(
        &self,
        x: &mut GpuBuffer,
        op: u32,
        s: f32,
        n: usize,
        name: &'static str,
    ) -> Result<()> {
        need(name, "x", x.len, n)?;
        let (g, tx) = grid64(n as u64);
        let pipe = self.simple("map", MAP);
        self.ctx.dispatch(
            name,
            &pipe,
            &[u32_of(name, n)?, tx, op, s.to_bits()],
            &[Bind::Buf(&x.buf)],
            g,
        );
        Ok(())
    }

    pub(crate) fn op_glu(
        &self,
        kind: GluKind,
        gate: &mut GpuBuffer,
        up: &GpuBuffer,
        n: usize,
    ) -> Result<()> {
        need("glu", "gate", gate.len, n)?;
        need("glu", "up", up.len, n)?;
        let (g, tx) = grid64(n as u64);
        let pipe = self.ctx.pipeline("glu", || format!("{GLU}\n{GLU_ACT}"));
        self.ctx.dispatch(
            "glu",
            &pipe,
            &[u32_of("glu", n)?, tx, u32::from(kind == GluKind::GeluTanh)],
            &[Bind::Buf(&gate.buf), Bind::Buf(&up.buf)],
            g,
        );
        Ok(())
    }

    /// The rows as u32 after checking that each fits `dst_len` values.
    fn cache_rows(
        op: &'static str,
        dst_len: usize,
        rows: &[usize],
        width: usize,
    ) -> Result<Vec<u32>> {
        let mut r32 = Vec::with_capacity(rows.len());
        for &r in rows {
            let end = r
                .checked_add(1)
                .and_then(|e| e.checked_mul(width))
                .ok_or_else(|| shape(op, format!("row {r} overflows")))?;
            need(op, "dst", dst_len, end)?;
            r32.push(u32_of(op, r)?);
        }
        Ok(r32)
    }

    pub(crate) fn op_write_kv(
        &self,
        k_dst: &mut GpuBuffer,
        v_dst: &mut GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        let op = "write_kv";
        need(op, "k", k.len, rows.len() * width)?;
        need(op, "v", v.len, rows.len() * width)?;
        let r32 = Self::cache_rows(op, k_dst.len.min(v_dst.len), rows, width)?;
        let n = rows.len() * width;
        if n == 0 {
            return Ok(());
        }
        let (g, tx) = grid64(2 * n as u64);
        let pipe = self.simple(op, WRITE_KV);
        self.ctx.dispatch(
            op,
            &pipe,
            &[u32_of(op, n)?, tx, u32_of(op, width)?],
            &[
                Bind::Buf(&k_dst.buf),
                Bind::Buf(&v_dst.buf),
                Bind::Buf(&k.buf),
                Bind::Buf(&v.buf),
                Bind::Data(&r32),
            ],
            g,
        );
        Ok(())
    }

    pub(crate) fn op_write_rows(
        &self,
        dst: &mut GpuBuffer,
        src: &GpuBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        need("write_rows", "src", src.len, rows.len() * width)?;
        let r32 = Self::cache_rows("write_rows", dst.len, rows, width)?;
        let n = rows.len() * width;
        if n == 0 {
            return Ok(());
        }
        let (g, tx) = grid64(n as u64);
        let pipe = self.simple("write_rows", WRITE_ROWS);
        self.ctx.dispatch(
            "write_rows",
            &pipe,
            &[u32_of("write_rows", n)?, tx, u32_of("write_rows", width)?],
            &[Bind::Buf(&dst.buf), Bind::Buf(&src.buf), Bind::Data(&r32)],
            g,
        );
        Ok(())
    }
}
