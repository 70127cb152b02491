//! # wasm-chord-cpu
//!
//! The CPU backend of wasm-chord: [`CpuBackend`] implements the `Backend`
//! contract of `wasm-chord-core`.
//!
//! Weights stay in their GGUF type and are read straight from the
//! memory-mapped file; each matmul quantizes its activations once per token
//! into the block type llama.cpp pairs with the weight type (Q8_0, Q8_1,
//! Q8_K, f32, f16), then dots every weight row, as stored, with them, so no
//! weight matrix is ever expanded to f32 in memory. Rows are spread over
//! threads with rayon.
//!
//! The row dots (module `kernels`) are chosen at run time: AVX2+FMA+F16C
//! kernels for Q8_0, Q5_0, Q4_0, Q4_K, Q5_K and Q6_K on x86-64 (taking four
//! tokens per decoded weight block in prompts), portable raw-byte kernels
//! for Q8_0, Q5_0 and Q4_0 elsewhere, and core's scalar reference
//! (`wasm_chord_core::quant::GgmlBlock::dot_block`) for every other type.
//! On aarch64 NEON kernels (with `sdot` where the CPU has dotprod) take the
//! AVX2 kernels' place. Where the CPU has AVX-512 F/BW/VL/VNNI (and the
//! compiler the intrinsics, Rust 1.89+), prompts of Q8_0, Q5_0, Q4_0, Q4_K
//! and Q6_K take register-tiled kernels (`kernels::tiled`, 4 rows × 2 token
//! pairs) and single tokens of the first three an AVX-512 row kernel, both
//! bit-identical to the AVX2 kernels; attention's products use AVX-512 too
//! (`kernels::attn`). Each fast kernel is tested against that scalar twin
//! on random blocks. Builds for wasm32 with `simd128` enabled (the npm
//! package) take hand-written simd128 row kernels for the same six types
//! (`kernels/simd128.rs`).
#![warn(missing_docs)]

mod attention;
mod kernels;
mod matmul;
mod ops;
mod scratch;
#[cfg(test)]
mod test_rng;

use half::f16;
use half::slice::HalfFloatSliceExt;
use wasm_chord_core::backend::{
    AttentionParams, Backend, BackendError, Caps, GluKind, Result, RopeParams, TensorBytes,
};
use wasm_chord_core::gguf::TensorInfo;
use wasm_chord_core::quant::{f16_bits_to_f32, f32_to_f16_bits};
use wasm_chord_core::GgmlType;

pub use matmul::MATMUL_TYPES;

/// The CPU backend.
#[derive(Debug, Default, Clone)]
pub struct CpuBackend {
    /// Work vectors reused from call to call (shared by clones).
    scratch: std::sync::Arc<scratch::Pool>,
}

impl CpuBackend {
    /// A CPU backend using rayon's global thread pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sizes the global thread pool (call once, before any work; later calls
    /// fail because the pool already exists). Without it rayon uses one
    /// thread per core.
    pub fn set_threads(n: usize) -> Result<(), String> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| e.to_string())
    }

    /// Threads of the global pool.
    pub fn threads() -> usize {
        rayon::current_num_threads()
    }
}

/// A weight on the CPU: a view of the file's bytes in their GGUF type.
/// f32 vectors (norm weights, biases) are also kept decoded.
#[derive(Debug, Clone)]
pub struct CpuWeight {
    ty: GgmlType,
    /// Values per row (GGUF dim 0).
    cols: usize,
    /// Number of rows (product of the other dims).
    rows: usize,
    data: TensorBytes,
    f32_values: Option<Vec<f32>>,
}

impl CpuWeight {
    /// The stored type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn f32s(&self, op: &'static str) -> Result<&[f32]> {
        self.f32_values
            .as_deref()
            .ok_or(BackendError::UnsupportedType {
                backend: "cpu",
                op,
                ty: self.ty,
            })
    }
}

/// `v` rounded to the nearest f16 (as ggml converts).
pub(crate) fn round_f16(v: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(v))
}

/// Values per parallel task of the element-wise ops: a decode step's few
/// thousand stay one task (a task costs more to schedule than they take),
/// a prompt batch spreads over every thread. Serial, these ops held one
/// thread of two idle for ~10 % of a 512-token prompt.
const PAR_CHUNK: usize = 1 << 14;

/// Rows per task for `n_rows` rows of `width` values: about
/// [`PAR_CHUNK`] values, at least one row.
fn rows_per_task(n_rows: usize, width: usize) -> usize {
    (PAR_CHUNK / width.max(1)).clamp(1, n_rows.max(1))
}

/// `f(i, chunk_i)` over the chunks of `chunk` values of `v`, in parallel
/// (on this thread when there is only one).
fn par_rows(v: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    if v.len() <= chunk {
        f(0, v);
        return;
    }
    v.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
}

/// `ops::rms_norm` of `n_rows` rows, the rows spread over tasks.
fn rms_norm_par(x: &[f32], w: &[f32], eps: f32, n_rows: usize, dim: usize, out: &mut [f32]) {
    let rows = rows_per_task(n_rows, dim);
    par_rows(&mut out[..n_rows * dim], rows * dim, |i, o| {
        let x = &x[i * rows * dim..i * rows * dim + o.len()];
        ops::rms_norm(x, w, eps, dim, o)
    });
}

/// `ops::rope` of `positions.len()` tokens, the tokens spread over tasks.
fn rope_par(x: &mut [f32], positions: &[u32], n_heads: usize, head_dim: usize, p: &RopeParams<'_>) {
    let width = n_heads * head_dim;
    let toks = rows_per_task(positions.len(), width);
    par_rows(&mut x[..positions.len() * width], toks * width, |i, x| {
        let pos = &positions[i * toks..i * toks + x.len() / width];
        ops::rope(x, pos, n_heads, head_dim, p)
    });
}

/// `a += b` element-wise (`b` at least as long), in parallel chunks.
fn add_par(a: &mut [f32], b: &[f32]) {
    par_rows(a, PAR_CHUNK, |i, a| {
        for (x, y) in a.iter_mut().zip(&b[i * PAR_CHUNK..]) {
            *x += y;
        }
    });
}

fn shape(op: &'static str, detail: String) -> BackendError {
    BackendError::Shape { op, detail }
}

fn need(op: &'static str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(shape(op, format!("{what} has {have} values, needs {need}")));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;
    type Weight = CpuWeight;
    /// f16, as llama.cpp's default cache: half the memory of f32.
    type Cache = Vec<f16>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn caps(&self) -> Caps {
        Caps {
            f16: false,
            subgroups: false,
            max_buffer_bytes: isize::MAX as u64,
            matmul_types: MATMUL_TYPES.to_vec(),
            device_top_k: false,
        }
    }

    fn upload_weight(&self, info: &TensorInfo, data: TensorBytes) -> Result<CpuWeight> {
        let cols = info.dims.first().copied().unwrap_or(1);
        let rows: u64 = info.dims.iter().skip(1).product();
        let to_usize = |v: u64| {
            usize::try_from(v)
                .map_err(|_| shape("upload_weight", format!("{} too large", info.name)))
        };
        let (cols, rows) = (to_usize(cols)?, to_usize(rows)?);
        let expected = info.n_bytes();
        if data.len() as u64 != expected {
            return Err(shape(
                "upload_weight",
                format!("{}: {} bytes, expected {expected}", info.name, data.len()),
            ));
        }
        let f32_values = if info.ggml_type == GgmlType::F32 && rows == 1 {
            let mut v = vec![0.0; cols];
            wasm_chord_core::quant::dequantize(GgmlType::F32, data.as_slice(), &mut v)?;
            Some(v)
        } else {
            None
        };
        Ok(CpuWeight {
            ty: info.ggml_type,
            cols,
            rows,
            data,
            f32_values,
        })
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| BackendError::OutOfMemory {
                bytes: (len as u64).saturating_mul(4),
            })?;
        v.resize(len, 0.0);
        Ok(v)
    }

    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        let mut v = self.alloc(data.len())?;
        v.copy_from_slice(data);
        Ok(v)
    }

    fn download(&self, buf: &Vec<f32>, out: &mut [f32]) -> Result<()> {
        need("download", "buffer", buf.len(), out.len())?;
        out.copy_from_slice(&buf[..out.len()]);
        Ok(())
    }

    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }

    fn alloc_cache(&self, len: usize) -> Result<Vec<f16>> {
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| BackendError::OutOfMemory {
                bytes: (len as u64).saturating_mul(2),
            })?;
        v.resize(len, f16::ZERO);
        Ok(v)
    }

    fn embed(
        &self,
        table: &CpuWeight,
        tokens: &[u32],
        scale: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        matmul::embed(table, tokens, scale, out)
    }

    fn matmul(
        &self,
        w: &CpuWeight,
        x: &Vec<f32>,
        n_tokens: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        matmul::matmul(w, x, n_tokens, out, &self.scratch)
    }

    fn add_bias(&self, x: &mut Vec<f32>, bias: &CpuWeight, n_rows: usize) -> Result<()> {
        let b = bias.f32s("add_bias")?;
        need("add_bias", "x", x.len(), n_rows * b.len())?;
        for row in x.chunks_exact_mut(b.len()).take(n_rows) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
        Ok(())
    }

    fn rms_norm(
        &self,
        x: &Vec<f32>,
        weight: &CpuWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let w = weight.f32s("rms_norm")?;
        if w.len() != dim {
            return Err(shape(
                "rms_norm",
                format!("weight {} != dim {dim}", w.len()),
            ));
        }
        need("rms_norm", "x", x.len(), n_rows * dim)?;
        need("rms_norm", "out", out.len(), n_rows * dim)?;
        rms_norm_par(x, w, eps, n_rows, dim, out);
        Ok(())
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        positions: &[u32],
        n_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
    ) -> Result<()> {
        need("rope", "x", x.len(), positions.len() * n_heads * head_dim)?;
        if params.n_rot > head_dim || !params.n_rot.is_multiple_of(2) {
            return Err(shape(
                "rope",
                format!("n_rot {} vs head_dim {head_dim}", params.n_rot),
            ));
        }
        if let Some(ff) = params.freq_factors {
            need("rope", "freq_factors", ff.len(), params.n_rot / 2)?;
        }
        rope_par(x, positions, n_heads, head_dim, params);
        Ok(())
    }

    fn add(&self, a: &mut Vec<f32>, b: &Vec<f32>, n: usize) -> Result<()> {
        need("add", "a", a.len(), n)?;
        need("add", "b", b.len(), n)?;
        add_par(&mut a[..n], &b[..n]);
        Ok(())
    }

    fn glu(&self, kind: GluKind, gate: &mut Vec<f32>, up: &Vec<f32>, n: usize) -> Result<()> {
        need("glu", "gate", gate.len(), n)?;
        need("glu", "up", up.len(), n)?;
        // Chunks of 16 Ki values: one task for a decode step's few
        // thousand, both cores for a prompt batch.
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        gate[..n]
            .par_chunks_mut(CHUNK)
            .zip(up[..n].par_chunks(CHUNK))
            .for_each(|(g, u)| ops::glu(kind, g, u));
        Ok(())
    }

    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        // `scope` runs `f` on a worker of the global pool (the caller waits
        // once); the ops' parallel loops then start from that worker.
        // On wasm32 without threads rayon runs everything on this thread.
        if cfg!(target_arch = "wasm32") {
            return f();
        }
        rayon::scope(|_| f())
    }

    fn download_cache(&self, cache: &Vec<f16>, out: &mut [f32]) -> Result<()> {
        need("download_cache", "cache", cache.len(), out.len())?;
        cache[..out.len()].convert_to_f32_slice(out);
        Ok(())
    }

    fn write_rows(
        &self,
        dst: &mut Vec<f16>,
        src: &Vec<f32>,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        need("write_rows", "src", src.len(), rows.len() * width)?;
        for (i, &r) in rows.iter().enumerate() {
            let end = r
                .checked_add(1)
                .and_then(|e| e.checked_mul(width))
                .ok_or_else(|| shape("write_rows", format!("row {r} overflows")))?;
            need("write_rows", "dst", dst.len(), end)?;
            // KV rows are stored as f16, like llama.cpp's default cache
            // type (ggml's rounding), so attention sees the same keys and
            // values.
            for (d, &v) in dst[r * width..end]
                .iter_mut()
                .zip(&src[i * width..(i + 1) * width])
            {
                *d = f16::from_bits(f32_to_f16_bits(v));
            }
        }
        Ok(())
    }

    fn attention(
        &self,
        q: &Vec<f32>,
        k: &Vec<f16>,
        v: &Vec<f16>,
        params: &AttentionParams<'_>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        attention::attention(q, k, v, params, out)
    }

    fn softcap(&self, x: &mut Vec<f32>, cap: f32, n: usize) -> Result<()> {
        need("softcap", "x", x.len(), n)?;
        for v in &mut x[..n] {
            *v = cap * (*v * (1.0 / cap)).tanh();
        }
        Ok(())
    }

    fn top_k(&self, x: &Vec<f32>, n: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        need("top_k", "x", x.len(), n)?;
        Ok(wasm_chord_core::backend::host_top_k(&x[..n], k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_chord_core::backend::RopeKind;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::test_rng::Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        (0..n).map(|_| rng.f32()).collect()
    }

    /// The element-wise ops split prompt batches into parallel tasks; each
    /// must give what one serial pass over the whole batch gives.
    #[test]
    fn parallel_element_wise_ops_equal_one_serial_pass() {
        // Batches on both sides of the task size, rows not dividing it.
        for (n_rows, dim) in [(3usize, 640usize), (100, 640), (77, 1000), (513, 64)] {
            let x = rand_vec(n_rows * dim, n_rows as u64);
            let w = rand_vec(dim, 5);
            let mut got = vec![0.0; n_rows * dim];
            rms_norm_par(&x, &w, 1e-6, n_rows, dim, &mut got);
            let mut want = vec![0.0; n_rows * dim];
            ops::rms_norm(&x, &w, 1e-6, dim, &mut want);
            assert_eq!(got, want, "rms_norm {n_rows}x{dim}");

            let mut a = x.clone();
            let b = rand_vec(n_rows * dim, 99);
            add_par(&mut a, &b);
            let want: Vec<f32> = x.iter().zip(&b).map(|(p, q)| p + q).collect();
            assert_eq!(a, want, "add {n_rows}x{dim}");

            let (n_heads, head_dim) = (dim / 64, 64);
            let positions: Vec<u32> = (0..n_rows as u32).map(|p| 3 * p + 1).collect();
            let params = RopeParams {
                kind: RopeKind::Neox,
                n_rot: 64,
                freq_base: 10000.0,
                freq_scale: 1.0,
                freq_factors: None,
            };
            let width = n_heads * head_dim;
            let mut got = x[..n_rows * width].to_vec();
            rope_par(&mut got, &positions, n_heads, head_dim, &params);
            let mut want = x[..n_rows * width].to_vec();
            ops::rope(&mut want, &positions, n_heads, head_dim, &params);
            assert_eq!(got, want, "rope {n_rows}x{width}");
        }
    }
}
