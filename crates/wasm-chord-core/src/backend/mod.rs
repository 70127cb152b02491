//! The `Backend` contract: what a compute device must do to run a transformer.
//!
//! The runtime writes each architecture once, as calls on this trait; the
//! CPU, Candle (CUDA/Metal) and WebGPU crates implement it. The shape follows
//! DESIGN.md:
//!
//! - **Memory is the backend's.** Weights are uploaded once into
//!   [`Backend::Weight`] (zero-copy views of the memory map on CPU, device
//!   buffers on GPUs); activations live in [`Backend::Buffer`]s for a whole
//!   forward pass, and the host reads back only the logits (or a token id).
//! - **Ops are fused-kernel sized**: quantized matmul on weights in their GGUF
//!   type, RMSNorm, RoPE, attention over the KV cache with GQA, causal and
//!   sliding-window masking and soft-capping, gated FFN activations, add, and
//!   argmax. Not a tensor library: no broadcasting, no views.
//! - **Optional capabilities** are default methods returning
//!   [`BackendError::Unsupported`], and [`Backend::caps`] says what is there
//!   before the runtime asks.
//!
//! # Layout conventions
//!
//! Activation buffers are row-major f32 matrices, one row per token: a buffer
//! of `n_tokens × width` values. A weight with GGUF dims `[k, n]` (ggml order,
//! innermost first) is a matrix of `n` rows of `k` values; `matmul` computes
//! `out[t][r] = Σ_i x[t][i] · W[r][i]`, like `ggml_mul_mat`.
//!
//! Attention reads a per-layer KV cache made of two [`Backend::Cache`]s of
//! `capacity × (n_kv_heads · head_dim)` values plus, on the host, the
//! position held in each cache row ([`AttentionParams::cache_positions`]),
//! so ring buffers for sliding-window layers need no special case in kernels.
//! The cache's element type is the backend's: values are rounded to f16 on
//! the way in (llama.cpp's default cache type, so attention sees the same
//! keys and values), and a backend may store them as f16 (the CPU backend
//! does, half the memory of f32) or as f32 holding f16-rounded values.

pub mod composed;
mod tensor_bytes;

pub use tensor_bytes::TensorBytes;

use crate::gguf::TensorInfo;
use crate::quant::QuantError;
use crate::GgmlType;

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend does not implement this operation.
    #[error("backend {backend} does not support {op}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The operation asked for.
        op: &'static str,
    },
    /// The backend cannot compute with weights of this type.
    #[error("backend {backend}: {op} does not support weights of type {ty}")]
    UnsupportedType {
        /// The backend's name.
        backend: &'static str,
        /// The operation asked for.
        op: &'static str,
        /// The weight type.
        ty: GgmlType,
    },
    /// Buffer or weight sizes do not fit the operation's parameters.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What did not fit.
        detail: String,
    },
    /// A token id is outside the embedding table.
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Rows in the embedding table.
        n_vocab: usize,
    },
    /// A quantization-layer error (bad block data length).
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// The device could not allocate memory.
    #[error("out of device memory allocating {bytes} bytes")]
    OutOfMemory {
        /// Bytes asked for.
        bytes: u64,
    },
    /// The device or its driver failed an operation (a kernel launch, a
    /// copy, a lost device); the message is the device library's.
    #[error("backend {backend}: {op} failed on the device: {detail}")]
    Device {
        /// The backend's name.
        backend: &'static str,
        /// The operation.
        op: &'static str,
        /// The device library's message.
        detail: String,
    },
    /// The backend was compiled out or no device is present.
    #[error("backend {backend} is not available: {reason}")]
    NotAvailable {
        /// The backend's name.
        backend: &'static str,
        /// Why (feature not compiled in, no adapter, ...).
        reason: String,
    },
}

/// Shorthand for backend results.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// What a backend can do, asked before the runtime relies on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// Whether f16 arithmetic is available.
    pub f16: bool,
    /// Whether subgroup (warp) operations are available.
    pub subgroups: bool,
    /// Largest single buffer in bytes.
    pub max_buffer_bytes: u64,
    /// Weight types `matmul` accepts.
    pub matmul_types: Vec<GgmlType>,
    /// Whether [`Backend::top_k`] runs on the device.
    pub device_top_k: bool,
}

/// The rotary embedding variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeKind {
    /// Rotate pairs `(x[2i], x[2i+1])` (Llama, Mistral).
    Normal,
    /// Rotate pairs `(x[i], x[i + n_rot/2])` (GPT-NeoX, Qwen, Gemma, Phi-3).
    Neox,
}

/// Parameters of a RoPE application.
#[derive(Debug, Clone, Copy)]
pub struct RopeParams<'a> {
    /// Pairing of rotated dimensions.
    pub kind: RopeKind,
    /// Number of leading dimensions of each head that are rotated.
    pub n_rot: usize,
    /// Base frequency θ.
    pub freq_base: f32,
    /// Position scale (linear scaling: 1/factor).
    pub freq_scale: f32,
    /// Per-dimension frequency divisors (`rope_freqs.weight`, llama3 scaling),
    /// `n_rot / 2` values.
    pub freq_factors: Option<&'a [f32]>,
}

/// What [`Backend::qk_rope`] does besides its buffers: the heads' shape,
/// the tokens' positions, RoPE's parameters, the optional QK-norm and q's
/// scale. `W` is the backend's weight type.
#[derive(Debug)]
pub struct QkRope<'a, W> {
    /// QK-norm: q's weight, k's weight and eps. With it, each head is
    /// RMS-normalized first and the results go to `q_out` and `k_out`.
    pub norms: Option<(&'a W, &'a W, f32)>,
    /// One position per token.
    pub positions: &'a [u32],
    /// Heads of q per token.
    pub n_heads: usize,
    /// Heads of k (and v) per token.
    pub n_kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// The rotation.
    pub params: RopeParams<'a>,
    /// A factor q is multiplied by after the rotation.
    pub q_scale: Option<f32>,
}

// Not derived: a derive would ask `W: Clone`, and only references to W
// are held.
impl<W> Clone for QkRope<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W> Copy for QkRope<'_, W> {}

impl<'a, W> QkRope<'a, W> {
    /// The same with the norm weights `norms` (of another type: a wrapping
    /// backend's inner weights).
    pub fn with_norms<'b, V>(&self, norms: Option<(&'b V, &'b V, f32)>) -> QkRope<'b, V>
    where
        'a: 'b,
    {
        QkRope {
            norms,
            positions: self.positions,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            params: self.params,
            q_scale: self.q_scale,
        }
    }
}

/// The activation of a gated feed-forward network: `act(gate) · up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GluKind {
    /// SiLU (SwiGLU: Llama, Qwen, Mistral, Phi-3).
    Silu,
    /// GELU, tanh approximation (GeGLU: Gemma).
    GeluTanh,
}

/// Parameters of attention over the KV cache.
#[derive(Debug, Clone, Copy)]
pub struct AttentionParams<'a> {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Multiplier applied to `q·k` (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Soft-capping of scores: `cap · tanh(s / cap)` (Gemma 2).
    pub softcap: Option<f32>,
    /// Sliding window: a query at position `p` sees keys at `p' > p - window`.
    pub window: Option<u32>,
    /// Position of each query token (one per row of `q`).
    pub query_positions: &'a [u32],
    /// Position held in each cache row, `None` for an empty row. Its length
    /// is the number of cache rows to consider.
    pub cache_positions: &'a [Option<u32>],
}

/// What fixes the sequence of calls of one forward pass of a session, for
/// [`Backend::run_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepKey {
    /// Unique to the session's KV cache (the pass writes into it).
    pub cache_id: u64,
    /// Tokens in the pass.
    pub n_tokens: usize,
    /// Rows of logits the pass computes.
    pub logits_rows: usize,
    /// Positions held after the pass (cached positions plus `n_tokens`):
    /// attention reads the cache rows up to here.
    pub pos_end: usize,
}

/// A compute device that can run transformer forward passes.
pub trait Backend: Send + Sync + 'static {
    /// Activations on the device: a flat f32 array.
    type Buffer: Send + Sync;
    /// An uploaded GGUF tensor, in its stored type.
    type Weight: Send + Sync;
    /// K or V rows of the KV cache, in the backend's storage type (values
    /// are f16-rounded either way; see the module docs).
    type Cache: Send + Sync;

    /// Short name (`cpu`, `cuda`, `webgpu`).
    fn name(&self) -> &'static str;

    /// What this backend can do.
    fn caps(&self) -> Caps;

    /// Uploads a tensor (its bytes in its GGUF type) once, for the model's life.
    fn upload_weight(&self, info: &TensorInfo, data: TensorBytes) -> Result<Self::Weight>;

    /// A zeroed buffer of `len` f32 values.
    fn alloc(&self, len: usize) -> Result<Self::Buffer>;

    /// A buffer holding `data`.
    fn upload(&self, data: &[f32]) -> Result<Self::Buffer>;

    /// Copies the first `out.len()` values of `buf` to the host.
    fn download(&self, buf: &Self::Buffer, out: &mut [f32]) -> Result<()>;

    /// Number of f32 values in `buf`.
    fn len(&self, buf: &Self::Buffer) -> usize;

    /// A zeroed KV-cache store of `len` values.
    fn alloc_cache(&self, len: usize) -> Result<Self::Cache>;

    /// Copies the first `out.len()` values of a KV-cache store to the host
    /// as f32 (for tests and for saving a session's state).
    fn download_cache(&self, cache: &Self::Cache, out: &mut [f32]) -> Result<()>;

    /// `out[t] = table[tokens[t]] · scale` for each token (rows of `width`).
    fn embed(
        &self,
        table: &Self::Weight,
        tokens: &[u32],
        scale: f32,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// `out[t][r] = Σ_i x[t][i] · W[r][i]` for `n_tokens` rows of `x`.
    fn matmul(
        &self,
        w: &Self::Weight,
        x: &Self::Buffer,
        n_tokens: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// `x[t][i] += bias[i]` for `n_rows` rows of the bias length.
    fn add_bias(&self, x: &mut Self::Buffer, bias: &Self::Weight, n_rows: usize) -> Result<()>;

    /// RMSNorm of each of `n_rows` rows of `dim` values, times `weight`
    /// (`dim` values): `out = x / sqrt(mean(x²) + eps) · weight`.
    /// Used for hidden states (`dim` = embedding) and per-head QK-norm
    /// (`dim` = head_dim, `n_rows` = tokens × heads).
    fn rms_norm(
        &self,
        x: &Self::Buffer,
        weight: &Self::Weight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Rotates `x` (`positions.len()` tokens × `n_heads` heads × `head_dim`)
    /// in place.
    fn rope(
        &self,
        x: &mut Self::Buffer,
        positions: &[u32],
        n_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
    ) -> Result<()>;

    /// `a += b` over the first `n` values.
    fn add(&self, a: &mut Self::Buffer, b: &Self::Buffer, n: usize) -> Result<()>;

    /// `gate = act(gate) · up` over the first `n` values, in place (the
    /// feed-forward block then needs two hidden-width buffers, not three).
    fn glu(
        &self,
        kind: GluKind,
        gate: &mut Self::Buffer,
        up: &Self::Buffer,
        n: usize,
    ) -> Result<()>;

    /// `x += b` (with `b` first RMS-normalized by `b_norm` when given, as
    /// Gemma's post-norms do), then `out = rms_norm(x, weight)`: a residual
    /// add and the next block's norm in one call, over `n_rows` rows of
    /// `dim`. The default composes [`Backend::rms_norm`] and
    /// [`Backend::add`], using `out` for the normalized `b`; device
    /// backends fuse it into one kernel.
    #[allow(clippy::too_many_arguments)]
    fn add_rms_norm(
        &self,
        x: &mut Self::Buffer,
        b: &Self::Buffer,
        b_norm: Option<&Self::Weight>,
        weight: &Self::Weight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        composed::add_rms_norm(self, x, b, b_norm, weight, eps, n_rows, dim, out)
    }

    /// RoPE of `q` (tokens × `rope.n_heads` × `rope.head_dim`) and `k`
    /// (tokens × `rope.n_kv_heads` × `rope.head_dim`) at `rope.positions`,
    /// and `q` then multiplied by `rope.q_scale` when given. With
    /// `rope.norms` (q's weight, k's weight, eps), each head is first
    /// RMS-normalized (QK-norm) and the results go to `q_out` and `k_out`,
    /// `q` and `k` being only read; without, `q` and `k` are rotated in
    /// place and the outputs are untouched. The default composes
    /// [`Backend::rms_norm`], [`Backend::rope`] and [`Backend::scale`].
    fn qk_rope(
        &self,
        q: &mut Self::Buffer,
        k: &mut Self::Buffer,
        q_out: &mut Self::Buffer,
        k_out: &mut Self::Buffer,
        rope: &QkRope<'_, Self::Weight>,
    ) -> Result<()> {
        composed::qk_rope(self, q, k, q_out, k_out, rope)
    }

    /// [`Backend::qk_rope`], then [`Backend::write_kv`] of the rotated k
    /// (`k_out` with norms, else `k`) and of `v` into the cache rows
    /// `rows` of `k_dst` and `v_dst` (rows of `n_kv_heads · head_dim`): a
    /// layer's attention inputs, ready for [`Backend::attention`], in one
    /// call (one dispatch on a GPU instead of two). The default makes the
    /// two calls.
    #[allow(clippy::too_many_arguments)]
    fn qk_rope_kv(
        &self,
        q: &mut Self::Buffer,
        k: &mut Self::Buffer,
        v: &Self::Buffer,
        q_out: &mut Self::Buffer,
        k_out: &mut Self::Buffer,
        rope: &QkRope<'_, Self::Weight>,
        k_dst: &mut Self::Cache,
        v_dst: &mut Self::Cache,
        rows: &[usize],
    ) -> Result<()> {
        self.qk_rope(q, k, q_out, k_out, rope)?;
        let k_rot = if rope.norms.is_some() { &*k_out } else { &*k };
        self.write_kv(
            k_dst,
            v_dst,
            k_rot,
            v,
            rows,
            rope.n_kv_heads * rope.head_dim,
        )
    }

    /// The attention inputs: `q = w_q · x`, `k = w_k · x`, `v = w_v · x`
    /// for `n_tokens` tokens of one input. A backend may run the three
    /// products as one (a GPU saves two dispatches per layer); the default
    /// is three [`Backend::matmul`] calls.
    #[allow(clippy::too_many_arguments)]
    fn matmul_qkv(
        &self,
        w_q: &Self::Weight,
        w_k: &Self::Weight,
        w_v: &Self::Weight,
        x: &Self::Buffer,
        n_tokens: usize,
        q: &mut Self::Buffer,
        k: &mut Self::Buffer,
        v: &mut Self::Buffer,
    ) -> Result<()> {
        self.matmul(w_q, x, n_tokens, q)?;
        self.matmul(w_k, x, n_tokens, k)?;
        self.matmul(w_v, x, n_tokens, v)
    }

    /// The gated feed-forward input: `gate = w_gate · x`, `up = w_up · x`,
    /// then `gate = act(gate) · up` over `n_tokens` tokens of `rows` values
    /// (the weights' output width). `up` is scratch: a backend that fuses
    /// the product with the activation may leave it untouched. The default
    /// composes [`Backend::matmul`] and [`Backend::glu`].
    #[allow(clippy::too_many_arguments)]
    fn matmul_glu(
        &self,
        kind: GluKind,
        w_gate: &Self::Weight,
        w_up: &Self::Weight,
        x: &Self::Buffer,
        n_tokens: usize,
        rows: usize,
        gate: &mut Self::Buffer,
        up: &mut Self::Buffer,
    ) -> Result<()> {
        self.matmul(w_gate, x, n_tokens, gate)?;
        self.matmul(w_up, x, n_tokens, up)?;
        self.glu(kind, gate, up, n_tokens * rows)
    }

    /// Writes `src` (`rows.len()` rows of `width`) into rows `rows[i]` of
    /// `dst` (a KV-cache store), each value rounded to f16.
    fn write_rows(
        &self,
        dst: &mut Self::Cache,
        src: &Self::Buffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()>;

    /// [`Backend::write_rows`] of `k` into `k_dst` and of `v` into `v_dst`
    /// (a layer's new cache rows) in one call; the default makes the two
    /// calls.
    fn write_kv(
        &self,
        k_dst: &mut Self::Cache,
        v_dst: &mut Self::Cache,
        k: &Self::Buffer,
        v: &Self::Buffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        self.write_rows(k_dst, k, rows, width)?;
        self.write_rows(v_dst, v, rows, width)
    }

    /// Causal attention of `q` (tokens × `n_heads · head_dim`) over the cache
    /// rows `k`, `v` (each `capacity × n_kv_heads · head_dim`) with masking
    /// by positions; writes tokens × `n_heads · head_dim` to `out`.
    fn attention(
        &self,
        q: &Self::Buffer,
        k: &Self::Cache,
        v: &Self::Cache,
        params: &AttentionParams<'_>,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// `x = cap · tanh(x / cap)` over the first `n` values (final-logit
    /// soft-capping).
    fn softcap(&self, x: &mut Self::Buffer, cap: f32, n: usize) -> Result<()>;

    /// `x = s · x` over the first `n` values (ggml's `scale`: Gemma and
    /// Phi-3 scale queries before the f16 `q · k` product). The default reads
    /// back and re-uploads; backends may override it.
    fn scale(&self, x: &mut Self::Buffer, s: f32, n: usize) -> Result<()> {
        let len = self.len(x);
        if n > len {
            return Err(BackendError::Shape {
                op: "scale",
                detail: format!("{n} values of a buffer of {len}"),
            });
        }
        let mut host = vec![0.0; len];
        self.download(x, &mut host)?;
        host.iter_mut().take(n).for_each(|v| *v *= s);
        *x = self.upload(&host)?;
        Ok(())
    }

    /// A new buffer holding rows `start .. start + n_rows` of `x` (rows of
    /// `width` values). The default reads back and re-uploads; device
    /// backends override it with a device-side copy.
    fn copy_rows(
        &self,
        x: &Self::Buffer,
        start: usize,
        n_rows: usize,
        width: usize,
    ) -> Result<Self::Buffer> {
        let len = self.len(x);
        let end = start
            .checked_add(n_rows)
            .and_then(|r| r.checked_mul(width))
            .filter(|&e| e <= len)
            .ok_or_else(|| BackendError::Shape {
                op: "copy_rows",
                detail: format!("rows {start}+{n_rows} of width {width} in a buffer of {len}"),
            })?;
        let mut host = vec![0.0; end];
        self.download(x, &mut host)?;
        self.upload(&host[start * width..])
    }

    /// Runs one forward pass's worth of calls, `f`, where the backend
    /// works best. The default calls `f` on this thread; the CPU backend
    /// runs it on a worker of its thread pool, so that the dozens of
    /// parallel ops of a pass start from a pool thread instead of each
    /// being handed over from the caller's thread and waited for.
    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// Runs one forward pass of a session, `f`, that returns its logits
    /// (`None` when it computes none). The default is
    /// [`Backend::run_pass`].
    ///
    /// A backend may record the device work of such a pass once and
    /// replay it for later passes with the same [`StepKey`] (the Candle
    /// backend does, as a CUDA graph, for one-token passes). The caller
    /// promises that the calls `f` makes, their order and their sizes
    /// depend on nothing but the key and the session's fixed shapes; only
    /// the host values handed to the calls (token ids, positions, cache
    /// rows and their positions) change between passes of one key. While
    /// replaying, the backend runs `f` only to collect those values, so
    /// `f` must not read buffers back. The logits buffer returned is the
    /// caller's own, as from any other pass.
    fn run_step<E: From<BackendError> + Send>(
        &self,
        key: &StepKey,
        f: impl FnOnce() -> std::result::Result<Option<Self::Buffer>, E> + Send,
    ) -> std::result::Result<Option<Self::Buffer>, E> {
        let _ = key;
        self.run_pass(f)
    }

    /// Index of the largest of the first `n` values (ties: lowest index).
    fn argmax(&self, x: &Self::Buffer, n: usize) -> Result<u32> {
        let mut host = vec![0.0; n];
        self.download(x, &mut host)?;
        Ok(host_argmax(&host))
    }

    /// The `k` largest of the first `n` values, as (index, value), largest
    /// first (ties: lowest index; NaN never taken). The default reads back
    /// and selects on the host ([`host_top_k`]); device backends override it.
    fn top_k(&self, x: &Self::Buffer, n: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        let mut host = vec![0.0; n];
        self.download(x, &mut host)?;
        Ok(host_top_k(&host, k))
    }
}

/// The `k` largest values of `x` on the host, largest first (ties: lowest
/// index; NaN never taken): a partial selection, then a sort of the `k`.
pub fn host_top_k(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = x
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, v))
        .collect();
    let k = k.min(idx.len());
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
    }
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// Argmax on the host (ties: lowest index; NaN never wins).
pub fn host_argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_top_k_orders_and_breaks_ties_by_index() {
        let x = [0.5, 2.0, -1.0, 2.0, f32::NAN, 1.5];
        assert_eq!(host_top_k(&x, 3), vec![(1, 2.0), (3, 2.0), (5, 1.5)]);
        assert_eq!(host_top_k(&x, 10).len(), 5);
        assert!(host_top_k(&x, 0).is_empty());
        assert_eq!(host_argmax(&x), 1);
    }
}
