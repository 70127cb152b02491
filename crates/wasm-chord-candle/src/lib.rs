//! # wasm-chord-candle
//!
//! The native-GPU backend of wasm-chord, built on `candle-core`:
//! [`CandleBackend`] implements the `Backend` contract of `wasm-chord-core`
//! on CUDA (feature `cuda`), Metal (feature `metal`) and candle's CPU device
//! (always, so that CI without a GPU tests it).
//!
//! - **Weights** stay in their GGUF type on the device: quantized matrices
//!   become candle `QTensor`s built from the file's raw bytes and multiply
//!   through `QMatMul` (on the CPU device candle quantizes activations to
//!   Q8 like ggml; on CUDA it runs llama.cpp-derived MMVQ/MMQ kernels). f16
//!   matrices are kept in f16 on GPUs; vectors (norms, biases) and types
//!   candle lacks (small tensors only) are expanded to f32 at upload.
//! - **Fused ops** candle does not have (RMSNorm, RoPE variants, attention
//!   over the KV cache with GQA, sliding window and soft-capping, gated
//!   activations, f16 cache writes, argmax) are candle custom ops with a CPU
//!   implementation and a CUDA kernel (PTX compiled by `build.rs` with
//!   `nvcc`). Metal has no custom kernels yet: there these ops run as
//!   chains of candle's built-in ops (module `composed`, also tested on the
//!   CPU device through [`CandleBackend::with_composed_ops`]).
//! - **Buffers** are 1-D f32 tensors on the device; an op replaces its
//!   output tensor rather than writing into it, except KV-cache row writes,
//!   which update the cache in place.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod composed;
mod graph;
mod ops;
#[cfg(feature = "cuda")]
mod pinned;
mod weight;

use candle_core::{DType, Device, Tensor};
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use wasm_chord_core::backend::composed as composed_ops;
use wasm_chord_core::backend::{
    AttentionParams, Backend, BackendError, Caps, GluKind, QkRope, Result, RopeParams, StepKey,
    TensorBytes,
};
use wasm_chord_core::gguf::TensorInfo;

pub use weight::{CandleWeight, MATMUL_TYPES};

/// Which candle device a [`CandleBackend`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleDevice {
    /// candle's CPU device (always available).
    Cpu,
    /// A CUDA GPU by ordinal (feature `cuda`).
    Cuda(usize),
    /// A Metal GPU by index (feature `metal`).
    Metal(usize),
}

/// The Candle backend.
#[derive(Debug, Clone)]
pub struct CandleBackend {
    device: Device,
    kind: CandleDevice,
    small: Arc<Mutex<SmallTensors>>,
    composed: bool,
    /// Decode-step graphs (module `graph`): their store and the pass in
    /// progress.
    graphs: Arc<Mutex<graph::Graphs>>,
    /// Page-locked host memory for read-backs (logits, every token).
    #[cfg(feature = "cuda")]
    pinned: Arc<pinned::Pinned>,
}

/// Recently uploaded small index vectors (positions, cache slots, RoPE
/// frequency factors), keyed by content: every layer of a batch uses the
/// same ones, so each is uploaded once per batch instead of once per op.
#[derive(Debug, Default)]
struct SmallTensors {
    entries: Vec<(DType, Vec<u32>, Tensor)>,
}

const SMALL_TENSORS: usize = 8;

/// Activations on a candle device: a 1-D f32 tensor.
#[derive(Debug, Clone)]
pub struct CandleBuffer(ManuallyDrop<Tensor>);

impl CandleBuffer {
    fn new(t: Tensor) -> Self {
        Self(ManuallyDrop::new(t))
    }

    /// The tensor (a 1-D f32 vector on the backend's device).
    pub fn tensor(&self) -> &Tensor {
        &self.0
    }
}

impl Drop for CandleBuffer {
    fn drop(&mut self) {
        // Freeing device memory is stream work: on CUDA it must not reach
        // the stream while another thread records a graph (module `graph`).
        let _g = self.0.device().is_cuda().then(|| graph::STREAM.lock());
        // SAFETY: the tensor is dropped once, here, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.0) }
    }
}

pub(crate) fn shape(op: &'static str, detail: String) -> BackendError {
    BackendError::Shape { op, detail }
}

/// A candle error as a backend error: out-of-memory is recognized, anything
/// else is a device failure carrying candle's message.
pub(crate) fn candle_err(op: &'static str, e: candle_core::Error) -> BackendError {
    let msg = e.to_string();
    if msg.contains("OUT_OF_MEMORY") || msg.contains("out of memory") {
        return BackendError::OutOfMemory { bytes: 0 };
    }
    BackendError::Device {
        backend: "candle",
        op,
        detail: msg,
    }
}

fn need(op: &'static str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(shape(op, format!("{what} has {have} values, needs {need}")));
    }
    Ok(())
}

impl CandleBackend {
    /// A backend on `dev`: [`BackendError::NotAvailable`] when its feature
    /// is not compiled in or no such device is present.
    pub fn new(dev: CandleDevice) -> Result<Self> {
        let device = match dev {
            CandleDevice::Cpu => Device::Cpu,
            CandleDevice::Cuda(i) => cuda_device(i)?,
            CandleDevice::Metal(i) => metal_device(i)?,
        };
        Ok(Self {
            device,
            kind: dev,
            small: Arc::default(),
            graphs: Arc::new(Mutex::new(graph::Graphs::new(dev))),
            #[cfg(feature = "cuda")]
            pinned: Arc::default(),
            // Metal has no custom kernels yet.
            composed: matches!(dev, CandleDevice::Metal(_)),
        })
    }

    /// Runs RMSNorm, RoPE, attention, gated activations, cache writes and
    /// argmax as chains of candle's built-in ops instead of the fused
    /// custom ops (always the case on Metal, which has no custom kernels
    /// yet). Slower; used by the tests to check that path on the CPU.
    pub fn with_composed_ops(mut self, on: bool) -> Self {
        self.composed = on || matches!(self.kind, CandleDevice::Metal(_));
        self
    }

    /// A device tensor of `bits` (u32 values, or f32 bit patterns when
    /// `dtype` is F32), from the cache of recent uploads when it is there.
    fn small(&self, op: &'static str, bits: &[u32], dtype: DType) -> Result<Tensor> {
        let mut cache = self
            .small
            .lock()
            .map_err(|_| shape(op, "small-tensor cache poisoned".into()))?;
        if let Some(i) = cache
            .entries
            .iter()
            .position(|(d, b, _)| *d == dtype && b.as_slice() == bits)
        {
            let e = cache.entries.remove(i);
            let t = e.2.clone();
            cache.entries.insert(0, e);
            return Ok(t);
        }
        let n = bits.len().max(1);
        let t = if dtype == DType::F32 {
            let v: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            let v = if v.is_empty() { vec![0.0] } else { v };
            Tensor::from_vec(v, n, &self.device)
        } else {
            let v = if bits.is_empty() {
                vec![0]
            } else {
                bits.to_vec()
            };
            Tensor::from_vec(v, n, &self.device)
        };
        let t = self.op(op, t)?;
        cache.entries.insert(0, (dtype, bits.to_vec(), t.clone()));
        cache.entries.truncate(SMALL_TENSORS);
        Ok(t)
    }

    /// The candle device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Which device this is.
    pub fn kind(&self) -> CandleDevice {
        self.kind
    }

    /// One line describing the device, for logs and `--verbose` output.
    pub fn device_summary(&self) -> String {
        match self.kind {
            CandleDevice::Cpu => format!(
                "candle CPU device ({} threads{})",
                rayon::current_num_threads(),
                if candle_core::utils::with_avx() {
                    ", AVX"
                } else {
                    ""
                }
            ),
            CandleDevice::Cuda(i) => format!("candle CUDA device {i}{}", cuda_name(&self.device)),
            CandleDevice::Metal(i) => format!("candle Metal device {i}"),
        }
    }

    fn op<T>(&self, op: &'static str, r: candle_core::Result<T>) -> Result<T> {
        r.map_err(|e| candle_err(op, e))
    }

    /// Holds [`graph::STREAM`] on CUDA, for one Backend call.
    fn guard(&self) -> Option<parking_lot::ReentrantMutexGuard<'static, ()>> {
        self.device.is_cuda().then(|| graph::STREAM.lock())
    }

    fn graphs(&self, op: &'static str) -> Result<std::sync::MutexGuard<'_, graph::Graphs>> {
        self.graphs
            .lock()
            .map_err(|_| shape(op, "graph store poisoned".into()))
    }

    /// Whether decode steps run as CUDA graphs (on CUDA by default;
    /// `WASMCHORD_CUDA_GRAPHS=0` turns them off).
    pub fn graphs_enabled(&self) -> bool {
        self.graphs.lock().is_ok_and(|g| !g.off)
    }

    /// Turns decode-step graphs on or off (on CUDA only; elsewhere they
    /// stay off). Graphs recorded so far are dropped.
    pub fn set_graphs(&self, on: bool) {
        // Dropping recorded graphs frees device memory: stream work.
        let _g = self.guard();
        if let Ok(mut g) = self.graphs.lock() {
            g.set(on && self.device.is_cuda());
        }
    }

    /// A host vector handed to a kernel. Outside a graph step this is
    /// [`Self::small`] (or a fresh upload); in one, the values are also
    /// staged for the step's arena, and while recording or replaying the
    /// kernel reads them from the arena (module `graph`).
    fn param(&self, op: &'static str, data: graph::Host<'_>) -> Result<Tensor> {
        let view = {
            let mut g = self.graphs(op)?;
            match g.step.as_mut() {
                None => None,
                Some(st) => st.stage(op, data).map_err(|e| candle_err(op, e))?,
            }
        };
        match (view, data) {
            (Some(v), _) => Ok(v),
            (None, graph::Host::U32(bits)) => self.small(op, bits, DType::U32),
            (None, graph::Host::F32Bits(bits)) => self.small(op, bits, DType::F32),
            (None, graph::Host::F32(v)) => {
                self.op(op, Tensor::from_slice(v, v.len(), &self.device))
            }
        }
    }

    /// Notes a call in the graph step in progress; true when the step is
    /// being replayed, where calls do no device work.
    fn skip(&self, op: &'static str, sizes: &[usize]) -> Result<bool> {
        let mut g = self.graphs(op)?;
        Ok(match g.step.as_mut() {
            Some(st) => {
                st.note(op, sizes);
                st.mode == graph::Mode::Replay
            }
            None => false,
        })
    }

    /// The mode of the graph step in progress, if any.
    fn step_mode(&self, op: &'static str) -> Result<Option<graph::Mode>> {
        Ok(self.graphs(op)?.step.as_ref().map(|s| s.mode))
    }

    /// Host transfers have no place in a step being recorded or replayed
    /// (the [`Backend::run_step`] contract).
    fn no_read_back(&self, op: &'static str) -> Result<()> {
        match self.step_mode(op)? {
            Some(graph::Mode::Record | graph::Mode::Replay) => Err(shape(
                op,
                "host transfer inside a recorded decode step".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Makes `out` hold `t` (a 1-D tensor of at most `out`'s length) in its
    /// first values, keeping the rest of `out`.
    fn set_prefix(&self, op: &'static str, out: &mut CandleBuffer, t: Tensor) -> Result<()> {
        let (have, len) = (out.0.elem_count(), t.elem_count());
        need(op, "out", have, len)?;
        *out.0 = if have == len {
            t
        } else {
            let tail = self.op(op, out.0.narrow(0, len, have - len))?;
            self.op(op, Tensor::cat(&[&t, &tail], 0))?
        };
        Ok(())
    }

    /// RoPE's frequency factors on the device (`n_rot / 2` values, ones
    /// when the model has none), once `n_rot` is checked against
    /// `head_dim`.
    fn rope_factors(
        &self,
        op: &'static str,
        params: &RopeParams<'_>,
        head_dim: usize,
    ) -> Result<Tensor> {
        if params.n_rot > head_dim || !params.n_rot.is_multiple_of(2) {
            return Err(shape(
                op,
                format!("n_rot {} vs head_dim {head_dim}", params.n_rot),
            ));
        }
        let half = params.n_rot / 2;
        let bits: Vec<u32> = match params.freq_factors {
            Some(f) => {
                need(op, "freq_factors", f.len(), half)?;
                f[..half].iter().map(|v| v.to_bits()).collect()
            }
            None => vec![1f32.to_bits(); half.max(1)],
        };
        self.param(op, graph::Host::F32Bits(&bits))
    }

    /// The first `n` values of `b` (no copy).
    fn head(&self, op: &'static str, b: &CandleBuffer, what: &str, n: usize) -> Result<Tensor> {
        need(op, what, b.0.elem_count(), n)?;
        self.op(op, b.0.narrow(0, 0, n))
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(i: usize) -> Result<Device> {
    // One explicit stream for the device (not candle's per-thread default
    // stream), so that sessions on several threads share it.
    let d = Device::new_cuda_with_stream(i).map_err(|e| BackendError::NotAvailable {
        backend: "cuda",
        reason: e.to_string(),
    })?;
    // WASMCHORD_CUDA_EVENT_TRACKING=1 keeps candle's default, for
    // measuring what it costs.
    let keep = std::env::var("WASMCHORD_CUDA_EVENT_TRACKING").is_ok_and(|v| v == "1");
    if let (false, Ok(c)) = (keep, d.as_cuda_device()) {
        // SAFETY: every tensor of this backend lives on the device's one
        // stream (created above; cuBLAS runs on it too), so no cross-stream synchronization is needed; the
        // per-kernel event records it would add cost several microseconds
        // per op, which decides decode speed on small models.
        unsafe { c.disable_event_tracking() };
    }
    Ok(d)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_: usize) -> Result<Device> {
    Err(BackendError::NotAvailable {
        backend: "cuda",
        reason: "wasm-chord-candle was built without the `cuda` feature".into(),
    })
}

#[cfg(feature = "cuda")]
fn cuda_name(d: &Device) -> String {
    match d.as_cuda_device() {
        Ok(c) => match c.cuda_stream().context().name() {
            Ok(n) => format!(" ({n})"),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_name(_: &Device) -> String {
    String::new()
}

#[cfg(feature = "metal")]
fn metal_device(i: usize) -> Result<Device> {
    Device::new_metal(i).map_err(|e| BackendError::NotAvailable {
        backend: "metal",
        reason: e.to_string(),
    })
}

#[cfg(not(feature = "metal"))]
fn metal_device(_: usize) -> Result<Device> {
    Err(BackendError::NotAvailable {
        backend: "metal",
        reason: "wasm-chord-candle was built without the `metal` feature".into(),
    })
}

impl Backend for CandleBackend {
    type Buffer = CandleBuffer;
    type Weight = CandleWeight;
    /// f32 holding f16-rounded values (an f16 store is future work).
    type Cache = CandleBuffer;

    fn name(&self) -> &'static str {
        match self.kind {
            CandleDevice::Cpu => "candle-cpu",
            CandleDevice::Cuda(_) => "cuda",
            CandleDevice::Metal(_) => "metal",
        }
    }

    fn caps(&self) -> Caps {
        Caps {
            f16: !self.device.is_cpu(),
            subgroups: self.device.is_cuda(),
            max_buffer_bytes: isize::MAX as u64,
            matmul_types: MATMUL_TYPES.to_vec(),
            device_top_k: false,
        }
    }

    fn upload_weight(&self, info: &TensorInfo, data: TensorBytes) -> Result<CandleWeight> {
        let _g = self.guard();
        weight::upload(self.name(), &self.device, info, data)
    }

    fn alloc_cache(&self, len: usize) -> Result<CandleBuffer> {
        self.alloc(len)
    }

    fn download_cache(&self, cache: &CandleBuffer, out: &mut [f32]) -> Result<()> {
        self.download(cache, out)
    }

    fn alloc(&self, len: usize) -> Result<CandleBuffer> {
        let op = "alloc";
        let _g = self.guard();
        {
            // While replaying, calls do no device work: buffers are
            // prefixes of one that is never written.
            let mut g = self.graphs(op)?;
            if g.step
                .as_ref()
                .is_some_and(|s| s.mode == graph::Mode::Replay)
            {
                if g.dummy.as_ref().is_none_or(|d| d.elem_count() < len) {
                    g.dummy = Some(self.op(op, Tensor::zeros(len, DType::F32, &self.device))?);
                }
                if let Some(d) = &g.dummy {
                    return Ok(CandleBuffer::new(self.op(op, d.narrow(0, 0, len))?));
                }
            }
        }
        let t = self.op(op, Tensor::zeros(len, DType::F32, &self.device))?;
        Ok(CandleBuffer::new(t))
    }

    fn upload(&self, data: &[f32]) -> Result<CandleBuffer> {
        let _g = self.guard();
        self.no_read_back("upload")?;
        let t = self.op("upload", Tensor::from_slice(data, data.len(), &self.device))?;
        Ok(CandleBuffer::new(t))
    }

    fn download(&self, buf: &CandleBuffer, out: &mut [f32]) -> Result<()> {
        let _g = self.guard();
        self.no_read_back("download")?;
        let t = self.head("download", buf, "buffer", out.len())?;
        #[cfg(feature = "cuda")]
        if self.device.is_cuda() && pinned::enabled() {
            return self.op("download", self.pinned.download(&t, out));
        }
        let v: Vec<f32> = self.op("download", t.to_vec1())?;
        out.copy_from_slice(&v);
        Ok(())
    }

    fn len(&self, buf: &CandleBuffer) -> usize {
        buf.0.elem_count()
    }

    fn embed(
        &self,
        table: &CandleWeight,
        tokens: &[u32],
        scale: f32,
        out: &mut CandleBuffer,
    ) -> Result<()> {
        let op = "embed";
        let _g = self.guard();
        let cols = table.cols;
        let row_bytes = table
            .ty
            .row_bytes(cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| shape(op, format!("row of {cols} values")))?;
        let bytes = table.host.as_slice();
        let mut host = vec![0.0f32; tokens.len() * cols];
        for (&id, row) in tokens.iter().zip(host.chunks_exact_mut(cols)) {
            let r = id as usize;
            if r >= table.rows {
                return Err(BackendError::TokenOutOfRange {
                    id,
                    n_vocab: table.rows,
                });
            }
            let src = bytes
                .get(r * row_bytes..(r + 1) * row_bytes)
                .ok_or_else(|| shape(op, format!("row {r} outside the table")))?;
            wasm_chord_core::quant::dequantize(table.ty, src, row)?;
            if scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
        let t = self.param(op, graph::Host::F32(&host))?;
        if self.skip(op, &[tokens.len(), cols])? {
            return Ok(());
        }
        self.set_prefix(op, out, t)
    }

    fn matmul(
        &self,
        w: &CandleWeight,
        x: &CandleBuffer,
        n_tokens: usize,
        out: &mut CandleBuffer,
    ) -> Result<()> {
        let op = "matmul";
        let _g = self.guard();
        if self.skip(op, &[n_tokens, w.cols, w.rows])? {
            return Ok(());
        }
        let xs = self.head(op, x, "x", n_tokens * w.cols)?;
        need(op, "out", out.0.elem_count(), n_tokens * w.rows)?;
        let y = self.op(
            op,
            xs.reshape((n_tokens, w.cols))
                .and_then(|xs| w.forward(&xs))
                .and_then(|y| y.flatten_all()),
        )?;
        self.set_prefix(op, out, y)
    }

    fn add_bias(&self, x: &mut CandleBuffer, bias: &CandleWeight, n_rows: usize) -> Result<()> {
        let op = "add_bias";
        let _g = self.guard();
        let b = bias.vector(self.name(), op)?;
        let n = b.elem_count();
        if self.skip(op, &[n_rows, n])? {
            return Ok(());
        }
        let xs = self.head(op, x, "x", n_rows * n)?;
        let y = self.op(
            op,
            xs.reshape((n_rows, n))
                .and_then(|xs| xs.broadcast_add(b))
                .and_then(|y| y.flatten_all()),
        )?;
        self.set_prefix(op, x, y)
    }

    fn rms_norm(
        &self,
        x: &CandleBuffer,
        weight: &CandleWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut CandleBuffer,
    ) -> Result<()> {
        let op = "rms_norm";
        let _g = self.guard();
        let w = weight.vector(self.name(), op)?;
        if w.elem_count() != dim {
            return Err(shape(op, format!("weight {} != dim {dim}", w.elem_count())));
        }
        if self.skip(op, &[n_rows, dim])? {
            return Ok(());
        }
        let xs = self.head(op, x, "x", n_rows * dim)?;
        need(op, "out", out.0.elem_count(), n_rows * dim)?;
        let y = if self.composed {
            self.op(op, composed::rms_norm(&xs, w, eps, n_rows, dim))?
        } else {
            self.op(
                op,
                xs.apply_op2_no_bwd(w, &ops::RmsNorm { n_rows, dim, eps }),
            )?
        };
        self.set_prefix(op, out, y)
    }

    fn rope(
        &self,
        x: &mut CandleBuffer,
        positions: &[u32],
        n_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
    ) -> Result<()> {
        let op = "rope";
        let _g = self.guard();
        let n = positions.len() * n_heads * head_dim;
        let ff = self.rope_factors(op, params, head_dim)?;
        let xs = self.head(op, x, "x", n)?;
        if self.composed {
            let y = self.op(
                op,
                composed::rope(&xs, positions, n_heads, head_dim, params, &self.device),
            )?;
            return self.set_prefix(op, x, y);
        }
        let pos = self.param(op, graph::Host::U32(positions))?;
        if self.skip(op, &[positions.len(), n_heads, head_dim])? {
            return Ok(());
        }
        let r = ops::Rope {
            n_tok: positions.len(),
            n_heads,
            head_dim,
            n_rot: params.n_rot,
            kind: params.kind,
            freq_base: params.freq_base,
            freq_scale: params.freq_scale,
        };
        let y = self.op(op, xs.apply_op3_no_bwd(&pos, &ff, &r))?;
        self.set_prefix(op, x, y)
    }

    fn add(&self, a: &mut CandleBuffer, b: &CandleBuffer, n: usize) -> Result<()> {
        let op = "add";
        let _g = self.guard();
        if self.skip(op, &[n])? {
            return Ok(());
        }
        let (x, y) = (self.head(op, a, "a", n)?, self.head(op, b, "b", n)?);
        let s = self.op(op, x + y)?;
        self.set_prefix(op, a, s)
    }

    fn glu(
        &self,
        kind: GluKind,
        gate: &mut CandleBuffer,
        up: &CandleBuffer,
        n: usize,
    ) -> Result<()> {
        let op = "glu";
        let _g = self.guard();
        if self.skip(op, &[n])? {
            return Ok(());
        }
        let (g, u) = (self.head(op, gate, "gate", n)?, self.head(op, up, "up", n)?);
        let y = if self.composed {
            self.op(op, composed::glu(kind, &g, &u))?
        } else {
            self.op(op, g.apply_op2_no_bwd(&u, &ops::Glu { kind, n }))?
        };
        self.set_prefix(op, gate, y)
    }

    /// One custom op (`ops::AddRmsNorm`) instead of up to three; the
    /// composed path runs the trait's composition.
    #[allow(clippy::too_many_arguments)]
    fn add_rms_norm(
        &self,
        x: &mut CandleBuffer,
        b: &CandleBuffer,
        b_norm: Option<&CandleWeight>,
        weight: &CandleWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut CandleBuffer,
    ) -> Result<()> {
        let op = "add_rms_norm";
        let _g = self.guard();
        if self.composed {
            return composed_ops::add_rms_norm(self, x, b, b_norm, weight, eps, n_rows, dim, out);
        }
        let w = weight.vector(self.name(), op)?;
        let bn = match b_norm {
            Some(bn) => Some(bn.vector(self.name(), op)?.clone()),
            None => None,
        };
        for (what, t) in [("weight", Some(w)), ("b's norm", bn.as_ref())] {
            if let Some(t) = t {
                if t.elem_count() != dim {
                    return Err(shape(op, format!("{what} {} != dim {dim}", t.elem_count())));
                }
            }
        }
        let n = n_rows * dim;
        if self.skip(op, &[n_rows, dim, usize::from(bn.is_some())])? {
            return Ok(());
        }
        let xs = self.head(op, x, "x", n)?;
        let bs = self.head(op, b, "b", n)?;
        need(op, "out", out.0.elem_count(), n)?;
        let f = ops::AddRmsNorm {
            n_rows,
            dim,
            eps,
            b_norm: bn,
        };
        let both = self.op(op, xs.apply_op3_no_bwd(&bs, w, &f))?;
        let sum = self.op(op, both.narrow(0, 0, n))?;
        let y = self.op(op, both.narrow(0, n, n))?;
        self.set_prefix(op, x, sum)?;
        self.set_prefix(op, out, y)
    }

    /// One custom op (`ops::QkRope`) instead of up to five; the composed
    /// path runs the trait's composition.
    fn qk_rope(
        &self,
        q: &mut CandleBuffer,
        k: &mut CandleBuffer,
        q_out: &mut CandleBuffer,
        k_out: &mut CandleBuffer,
        rope: &QkRope<'_, CandleWeight>,
    ) -> Result<()> {
        let op = "qk_rope";
        let _g = self.guard();
        let QkRope {
            norms,
            positions,
            n_heads,
            n_kv_heads,
            head_dim,
            ref params,
            q_scale,
        } = *rope;
        let n = positions.len();
        // The fused kernel holds a head in 1024 floats of shared memory.
        if self.composed || head_dim > 1024 {
            return composed_ops::qk_rope(self, q, k, q_out, k_out, rope);
        }
        let freq_factors = self.rope_factors(op, params, head_dim)?;
        let norms = match norms {
            Some((qw, kw, eps)) => {
                let (qw, kw) = (qw.vector(self.name(), op)?, kw.vector(self.name(), op)?);
                for (what, t) in [("q norm", qw), ("k norm", kw)] {
                    if t.elem_count() != head_dim {
                        return Err(shape(
                            op,
                            format!("{what} {} != head_dim {head_dim}", t.elem_count()),
                        ));
                    }
                }
                Some((qw.clone(), kw.clone(), eps))
            }
            None => None,
        };
        let pos = self.param(op, graph::Host::U32(positions))?;
        if self.skip(op, &[n, n_heads, n_kv_heads, head_dim])? {
            return Ok(());
        }
        let (nq, nk) = (n * n_heads * head_dim, n * n_kv_heads * head_dim);
        let qs = self.head(op, q, "q", nq)?;
        let ks = self.head(op, k, "k", nk)?;
        let (qd, kd) = if norms.is_some() {
            need(op, "q_out", q_out.0.elem_count(), nq)?;
            need(op, "k_out", k_out.0.elem_count(), nk)?;
            (q_out, k_out)
        } else {
            (q, k)
        };
        let f = ops::QkRope {
            rope: ops::Rope {
                n_tok: n,
                n_heads,
                head_dim,
                n_rot: params.n_rot,
                kind: params.kind,
                freq_base: params.freq_base,
                freq_scale: params.freq_scale,
            },
            n_kv_heads,
            q_scale,
            norms,
            freq_factors,
        };
        let both = self.op(op, qs.apply_op3_no_bwd(&ks, &pos, &f))?;
        let qr = self.op(op, both.narrow(0, 0, nq))?;
        let kr = self.op(op, both.narrow(0, nq, nk))?;
        self.set_prefix(op, qd, qr)?;
        self.set_prefix(op, kd, kr)
    }

    fn write_rows(
        &self,
        dst: &mut CandleBuffer,
        src: &CandleBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        let op = "write_rows";
        let _g = self.guard();
        let rows: Vec<u32> = rows
            .iter()
            .map(|&r| u32::try_from(r).map_err(|_| shape(op, format!("row {r} too large"))))
            .collect::<Result<_>>()?;
        let s = self.head(op, src, "src", rows.len() * width)?;
        if self.composed {
            let len = dst.0.elem_count();
            for &r in &rows {
                match (r as usize + 1).checked_mul(width) {
                    Some(end) if end <= len => {}
                    _ => return Err(shape(op, format!("row {r} outside a buffer of {len}"))),
                }
            }
            return self.op(op, composed::write_rows(&dst.0, &s, &rows, width));
        }
        let dev_rows = self.param(op, graph::Host::U32(&rows))?;
        let w = ops::WriteRows {
            rows,
            width,
            dev_rows,
        };
        if self.skip(op, &[w.rows.len(), width])? {
            // The kernel's bounds check, on the host.
            return self.op(op, w.check(dst.0.elem_count(), s.elem_count()));
        }
        self.op(op, dst.0.inplace_op2(&s, &w))
    }

    fn attention(
        &self,
        q: &CandleBuffer,
        k: &CandleBuffer,
        v: &CandleBuffer,
        params: &AttentionParams<'_>,
        out: &mut CandleBuffer,
    ) -> Result<()> {
        let op = "attention";
        let _g = self.guard();
        let (nh, nkv, hd) = (params.n_heads, params.n_kv_heads, params.head_dim);
        if nkv == 0 || nh % nkv != 0 {
            return Err(shape(op, format!("{nh} heads over {nkv} kv heads")));
        }
        let n_tok = params.query_positions.len();
        // In a graph step, attention reads a padded number of cache rows,
        // fixed for every pass of the step's key (module `graph`); the
        // rows past the real ones are empty (-1) and masked.
        let n_slots = match self.step_mode(op)? {
            Some(_) => {
                let capacity = k.0.elem_count() / (nkv * hd).max(1);
                graph::padded_rows(params.cache_positions.len(), capacity)
            }
            None => params.cache_positions.len(),
        };
        let cache_positions = params
            .cache_positions
            .iter()
            .map(|p| match p {
                None => Ok(-1),
                Some(p) => i32::try_from(*p).map_err(|_| shape(op, format!("position {p}"))),
            })
            .chain(std::iter::repeat_with(|| Ok(-1)))
            .take(n_slots)
            .collect::<Result<Vec<i32>>>()?;
        let kbits: Vec<u32> = cache_positions.iter().map(|&p| p as u32).collect();
        let dev_positions = (
            self.param(op, graph::Host::U32(params.query_positions))?,
            self.param(op, graph::Host::U32(&kbits))?,
        );
        if self.skip(op, &[n_tok, n_slots, nh, nkv, hd])? {
            return Ok(());
        }
        let qs = self.head(op, q, "q", n_tok * nh * hd)?;
        let ks = self.head(op, k, "k", n_slots * nkv * hd)?;
        let vs = self.head(op, v, "v", n_slots * nkv * hd)?;
        need(op, "out", out.0.elem_count(), n_tok * nh * hd)?;
        let a = ops::Attention {
            dev_positions,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: params.scale,
            softcap: params.softcap,
            window: params.window,
            query_positions: params.query_positions.to_vec(),
            cache_positions,
        };
        let y = if self.composed {
            self.op(op, composed::attention(&a, &qs, &ks, &vs, &self.device))?
        } else {
            self.op(op, qs.apply_op3_no_bwd(&ks, &vs, &a))?
        };
        self.set_prefix(op, out, y)
    }

    fn softcap(&self, x: &mut CandleBuffer, cap: f32, n: usize) -> Result<()> {
        let op = "softcap";
        let _g = self.guard();
        if self.skip(op, &[n])? {
            return Ok(());
        }
        let xs = self.head(op, x, "x", n)?;
        let y = self.op(
            op,
            xs.affine(f64::from(1.0 / cap), 0.0)
                .and_then(|t| t.tanh())
                .and_then(|t| t.affine(f64::from(cap), 0.0)),
        )?;
        self.set_prefix(op, x, y)
    }

    fn scale(&self, x: &mut CandleBuffer, s: f32, n: usize) -> Result<()> {
        let op = "scale";
        let _g = self.guard();
        if self.skip(op, &[n])? {
            return Ok(());
        }
        let xs = self.head(op, x, "x", n)?;
        let y = self.op(op, xs.affine(f64::from(s), 0.0))?;
        self.set_prefix(op, x, y)
    }

    fn copy_rows(
        &self,
        x: &CandleBuffer,
        start: usize,
        n_rows: usize,
        width: usize,
    ) -> Result<CandleBuffer> {
        let op = "copy_rows";
        let end = start
            .checked_add(n_rows)
            .and_then(|r| r.checked_mul(width))
            .ok_or_else(|| shape(op, format!("rows {start}+{n_rows} of width {width}")))?;
        need(op, "x", x.0.elem_count(), end)?;
        if self.skip(op, &[start, n_rows, width])? {
            return self.alloc(n_rows * width);
        }
        let _g = self.guard();
        let t = self.op(
            op,
            x.0.narrow(0, start * width, n_rows * width)
                .and_then(|t| t.copy()),
        )?;
        Ok(CandleBuffer::new(t))
    }

    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let _g = self.guard();
        f()
    }

    fn run_step<E: From<BackendError> + Send>(
        &self,
        key: &StepKey,
        f: impl FnOnce() -> std::result::Result<Option<CandleBuffer>, E> + Send,
    ) -> std::result::Result<Option<CandleBuffer>, E> {
        let _g = self.guard();
        // One-token passes with logits, with the custom kernels (the
        // composed ops upload host values themselves).
        #[cfg(feature = "cuda")]
        if key.n_tokens == 1 && key.logits_rows == 1 && !self.composed && self.graphs_enabled() {
            return graph::cuda::run_step(self, key, f);
        }
        let _ = key;
        f()
    }

    fn argmax(&self, x: &CandleBuffer, n: usize) -> Result<u32> {
        let op = "argmax";
        let _g = self.guard();
        self.no_read_back(op)?;
        let xs = self.head(op, x, "x", n)?;
        let i = if self.composed {
            self.op(op, xs.argmax(0).and_then(|i| i.reshape(1)))?
        } else {
            self.op(op, xs.apply_op1_no_bwd(&ops::Argmax { n }))?
        };
        let v: Vec<u32> = self.op(op, i.to_vec1())?;
        v.first()
            .copied()
            .ok_or_else(|| shape(op, "empty result".into()))
    }
}
