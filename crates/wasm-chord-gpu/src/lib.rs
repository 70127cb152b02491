//! # wasm-chord-gpu
//!
//! The WebGPU backend of wasm-chord, on `wgpu` with WGSL kernels: native
//! Vulkan/Metal/DX12 and every browser with `navigator.gpu`. [`GpuBackend`]
//! implements the `Backend` contract of `wasm-chord-core`.
//!
//! - **Weights** stay in their GGUF type on the device (F32, F16, Q4_0,
//!   Q5_0, Q8_0, Q4_K, Q5_K, Q6_K), uploaded once; a tensor larger than one
//!   storage binding is split by rows. Other types upload but `matmul` and
//!   `embed` answer `BackendError::UnsupportedType`.
//! - **Matmul** decodes weights in the kernel (fused dequantize + product):
//!   a matrix-vector kernel for up to 8 tokens, a 64×64 tiled kernel for
//!   prompts. Activations first go through the rounding the CPU backend and
//!   ggml-cpu apply (8-bit Q8_0/Q8_K quantization for quantized weights,
//!   f16 for F16 weights), so both backends multiply the same numbers.
//! - **Attention** runs over the KV cache with GQA, causal and
//!   sliding-window masking by positions and soft-capping, with an online
//!   softmax (no score matrix).
//! - **Recording**: every op appends a dispatch to one internal command
//!   encoder; it is submitted every 16 dispatches (so the device starts on
//!   a forward pass while the host records the rest) and when the host
//!   reads a result (`download`, `argmax`, `top_k`). `argmax` and `top_k`
//!   run on the device and read back only their answer.
//! - **Fused ops** for decoding: `add_rms_norm`, `qk_rope` and `write_kv`
//!   are one dispatch each, `matmul_glu` applies the activation in the up
//!   projection's store.
//! - Arithmetic is f32 everywhere (f16 only as a storage rounding), so no
//!   adapter feature is required; with subgroups the matrix-vector kernel
//!   reduces its sums by shuffles, otherwise through workgroup memory.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod attention;
mod context;
mod ops;
mod weight;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use context::{not_available, Ctx};
use wasm_chord_core::backend::{
    AttentionParams, Backend, BackendError, Caps, GluKind, QkRope, Result, RopeParams, TensorBytes,
};
use wasm_chord_core::gguf::TensorInfo;

pub use weight::{GpuWeight, GPU_TYPES};

/// The backend's name.
const NAME: &str = "webgpu";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Activations on the device: `len` f32 values in a storage buffer.
#[derive(Debug)]
pub struct GpuBuffer {
    pub(crate) buf: wgpu::Buffer,
    len: usize,
    /// Unique per allocation (a buffer taken again from the pool gets a new
    /// one), with `version` bumped by every write: the key under which
    /// quantized copies of this buffer are reused.
    id: u64,
    version: u64,
    /// Where the buffer goes when dropped: back to the pool (activations)
    /// or freed (KV cache).
    pool: Arc<Pool>,
    pooled: bool,
}

impl GpuBuffer {
    fn touch(&mut self) {
        self.version += 1;
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if self.pooled {
            self.pool.put(self.buf.clone());
        } else {
            self.pool.ctx.forget(&self.buf);
        }
    }
}

/// See [`GpuBackend::host_counters`].
#[derive(Clone, Copy, Debug, Default)]
pub struct HostCounters {
    /// Bind groups created (cache misses).
    pub groups_made: u64,
    /// Dispatches that reused a cached bind group.
    pub groups_reused: u64,
    /// Activation buffers created.
    pub buffers_made: u64,
    /// Activation buffers taken again from the pool.
    pub buffers_reused: u64,
    /// Host ns ending compute passes, writing the arena and finishing
    /// command encoders.
    pub finish_ns: u64,
    /// Host ns in `queue.submit` (with a CPU adapter this includes
    /// running the work).
    pub submit_ns: u64,
}

/// Most bytes of free activation buffers the pool keeps.
const POOL_BYTES: u64 = 256 << 20;

/// Allocations after which a free buffer not taken again is freed.
const POOL_AGE: u64 = 1024;

/// Activation buffers that were dropped, by size, for reuse by the next
/// allocations of the same size (a forward pass allocates the same
/// buffers every token; fresh ones would also defeat the bind group cache).
pub(crate) struct Pool {
    ctx: Arc<Ctx>,
    free: Mutex<PoolFree>,
}

#[derive(Default)]
struct PoolFree {
    /// (bytes, buffer, allocation count when it was put back), oldest first.
    bufs: Vec<(u64, wgpu::Buffer, u64)>,
    bytes: u64,
    /// Allocations so far.
    tick: u64,
    /// Allocations served from the pool and by a new buffer.
    reused: u64,
    made: u64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    /// A free buffer of exactly `bytes`, if any (most recently put back
    /// first); frees the buffers unused for [`POOL_AGE`] allocations.
    fn take(&self, bytes: u64) -> Option<wgpu::Buffer> {
        let mut freed = Vec::new();
        let got = {
            let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
            f.tick += 1;
            let tick = f.tick;
            let got = f
                .bufs
                .iter()
                .rposition(|b| b.0 == bytes)
                .map(|i| f.bufs.remove(i));
            if let Some(g) = &got {
                f.bytes -= g.0;
                f.reused += 1;
            } else {
                f.made += 1;
            }
            while f.bufs.first().is_some_and(|b| b.2 + POOL_AGE < tick) {
                let b = f.bufs.remove(0);
                f.bytes -= b.0;
                freed.push(b.1);
            }
            got.map(|g| g.1)
        };
        for b in &freed {
            self.ctx.forget(b);
        }
        got
    }

    /// Puts a dropped activation buffer back (freeing the oldest ones
    /// above [`POOL_BYTES`]).
    fn put(&self, buf: wgpu::Buffer) {
        let mut freed = Vec::new();
        {
            let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let tick = f.tick;
            let bytes = buf.size();
            f.bytes += bytes;
            f.bufs.push((bytes, buf, tick));
            while f.bytes > POOL_BYTES && !f.bufs.is_empty() {
                let b = f.bufs.remove(0);
                f.bytes -= b.0;
                freed.push(b.1);
            }
        }
        for b in &freed {
            self.ctx.forget(b);
        }
    }
}

/// Quantized activations kept for reuse by the next matmul on the same
/// input (q, k and v projections, gate and up).
struct Quantized {
    key: (u64, u64, usize),
    buf: wgpu::Buffer,
}

/// The WebGPU backend.
pub struct GpuBackend {
    ctx: Arc<Ctx>,
    pool: Arc<Pool>,
    /// Largest weight part in bytes (the storage binding limit, or less).
    max_part: u64,
    quantized: Mutex<HashMap<u32, Quantized>>,
    /// Scratch buffers by name (attention partials).
    scratch: Mutex<HashMap<&'static str, wgpu::Buffer>>,
    /// Held while an op that uses the shared scratch buffers (rounded
    /// activations, attention partials) records its dispatches, so that
    /// sessions on other threads cannot record a write to them in between.
    scratch_lock: Mutex<()>,
    /// Smallest subgroup width when subgroups are enabled, else 0.
    subgroup_min: u32,
    /// Whether kernels may use subgroup operations.
    use_subgroups: AtomicBool,
    /// Whether WGSL's packed 8-bit dot products (`dot4I8Packed`) compile.
    has_int_dot: bool,
    /// Whether one-token products use them (8-bit activations).
    use_int_dot: AtomicBool,
    /// Whether the device has `shader-f16` (requested when the adapter has
    /// it) and WGSL's packed 8-bit functions, which the f16 prompt kernel
    /// needs.
    has_f16: bool,
    /// Whether prompt products use f16 arithmetic.
    use_f16: AtomicBool,
    /// Whether one-token Q4_K and Q6_K products take the sub-blocks that
    /// share their bytes together.
    use_subblock_groups: AtomicBool,
    /// Most workgroups times values of a row for which a one-token product
    /// quantizes its input itself (0: never).
    q8_in_max: AtomicUsize,
}

/// Default of [`GpuBackend::set_q8_in_max`]: 1.5M values. Measured on an
/// H200 (tg128, rounds of one run each, docs/webgpu.md "Round 7"), with
/// the products' workgroups of 256 threads: Gemma 3 270M's attention
/// output (40 workgroups x 1,024 values) and down (80-160 x 2,048), and
/// Llama 3.2 1B's attention output (256 x 2,048), fall under it; Llama 3.2
/// 1B's down projection (512-1,024 x 8,192) does not: taking it too cost
/// 7-12 %.
const Q8_IN_MAX: usize = 3 << 19;

/// Marks the buffers `qk_rope` writes as changed: the outputs with QK-norm,
/// else q and k themselves.
fn touch_rotated(
    normed: bool,
    q: &mut GpuBuffer,
    k: &mut GpuBuffer,
    q_out: &mut GpuBuffer,
    k_out: &mut GpuBuffer,
) {
    if normed {
        q_out.touch();
        k_out.touch();
    } else {
        q.touch();
        k.touch();
    }
}

/// Whether `WASM_CHORD_GPU_F16` asks for f16 arithmetic ("1" or "true").
fn f16_from_env() -> bool {
    env_flag("WASM_CHORD_GPU_F16") == Some(true)
}

/// A number from the environment (natively).
fn env_usize(name: &str) -> Option<usize> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::env::var(name).ok()?.parse().ok()
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = name;
        None
    }
}

/// A switch from the environment: `1`/`true` or `0`/`false` (natively).
pub(crate) fn env_flag(name: &str) -> Option<bool> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        match std::env::var(name).ok()?.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = name;
        None
    }
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend")
            .field("adapter", &self.adapter_summary())
            .finish()
    }
}

impl GpuBackend {
    /// Opens the best adapter (high-performance preference), blocking until
    /// the device is ready. Not available in browsers: use
    /// [`GpuBackend::new_async`] there.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Opens the best adapter; `BackendError::NotAvailable` when there is
    /// none.
    pub async fn new_async() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| not_available(&format!("no adapter: {e}")))?;
        let has_int_dot = instance
            .wgsl_language_features()
            .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
        let has_f16 = features.contains(wgpu::Features::SHADER_F16) && has_int_dot;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wasm-chord"),
                required_features: features & wanted,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| not_available(&format!("device request failed: {e}")))?;
        let max_part = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let ctx = Arc::new(Ctx::new(device, queue, limits, info.clone(), features));
        Ok(Self {
            pool: Arc::new(Pool {
                ctx: Arc::clone(&ctx),
                free: Mutex::new(PoolFree::default()),
            }),
            ctx,
            max_part,
            quantized: Mutex::new(HashMap::new()),
            scratch: Mutex::new(HashMap::new()),
            scratch_lock: Mutex::new(()),
            subgroup_min: if features.contains(wgpu::Features::SUBGROUP) {
                info.subgroup_min_size
            } else {
                0
            },
            use_subgroups: AtomicBool::new(true),
            has_int_dot,
            use_int_dot: AtomicBool::new(has_int_dot),
            has_f16,
            use_f16: AtomicBool::new(has_f16 && f16_from_env()),
            use_subblock_groups: AtomicBool::new(
                env_flag("WASM_CHORD_GPU_SUBBLOCK_GROUPS") != Some(false),
            ),
            q8_in_max: AtomicUsize::new(env_usize("WASM_CHORD_GPU_Q8_IN_MAX").unwrap_or(Q8_IN_MAX)),
        })
    }

    /// Adapter name, graphics API, device type and the optional features
    /// (f16, subgroups, timestamps).
    pub fn adapter_summary(&self) -> String {
        let i = &self.ctx.info;
        let f = self.ctx.features;
        format!(
            "{} ({:?}, {:?}, driver {} {}); shader-f16: {}{}, subgroups: {} ({}-{} wide{}), timestamps: {}, packed int8 dot: {}{}; max binding {} MiB",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            f.contains(wgpu::Features::SHADER_F16),
            if self.f16() { ", used" } else { "" },
            f.contains(wgpu::Features::SUBGROUP),
            i.subgroup_min_size,
            i.subgroup_max_size,
            if self.subgroup_width() > 0 { ", used" } else { "" },
            f.contains(wgpu::Features::TIMESTAMP_QUERY),
            self.has_int_dot,
            if self.int_dot() { ", used" } else { "" },
            self.ctx.limits.max_storage_buffer_binding_size >> 20,
        )
    }

    /// The device's limits (those of the adapter, all requested).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.ctx.limits
    }

    /// Splits weights (and limits activation buffers) at `bytes` per
    /// buffer instead of the adapter's binding limit; tests use it to
    /// exercise the row split on small models. Affects later uploads only.
    pub fn limit_part_bytes(&mut self, bytes: u64) {
        self.max_part = bytes.clamp(64, self.max_part);
    }

    /// Turns on timestamp queries around every kernel (when the adapter
    /// supports them); returns whether they are on. Read totals with
    /// [`GpuBackend::kernel_profile`].
    pub fn enable_profiling(&self) -> bool {
        self.ctx.enable_profiling()
    }

    /// Turns the timestamp queries off again (profiling slows every
    /// submission down: a pass per dispatch and a blocking read-back).
    pub fn disable_profiling(&self) {
        self.ctx.disable_profiling()
    }

    /// Per-kernel GPU time so far: (kernel, milliseconds, dispatches),
    /// largest first. Empty without profiling.
    pub fn kernel_profile(&self) -> Vec<(&'static str, f64, u64)> {
        self.ctx.profile()
    }

    /// Clears the per-kernel totals.
    pub fn reset_profile(&self) {
        self.ctx.reset_profile()
    }

    /// Records every dispatch in a compute pass of its own instead of one
    /// pass per submission (a tuning switch: which is faster depends on the
    /// driver).
    pub fn set_pass_per_dispatch(&self, on: bool) {
        self.ctx.set_pass_per_dispatch(on)
    }

    /// Submits the recorded work to the device after every `n` dispatches
    /// (default 16; 0: only when the host reads a result), so that the
    /// device runs the first layers of a forward pass while the host still
    /// records the rest. After a read-back, when the device is idle, the
    /// first submissions are shorter (2, 4, 8, ... dispatches up to `n`).
    pub fn set_submit_every(&self, n: u64) {
        self.ctx.set_submit_every(n)
    }

    /// Allows (default) or forbids subgroup operations in the kernels that
    /// have a subgroup variant (the matrix-vector reduction); without them
    /// the workgroup-memory path runs. Affects kernels compiled later.
    pub fn set_subgroups(&self, on: bool) {
        self.use_subgroups.store(on, Ordering::Relaxed);
    }

    /// Allows (default, where WGSL has `dot4I8Packed`) or forbids 8-bit
    /// activations with integer dot products in one-token products (as
    /// ggml-cpu and llama.cpp's GPU backends compute them); without them
    /// the activations are rounded the same way but kept as f32. Affects
    /// ops recorded later.
    pub fn set_int_dot(&self, on: bool) {
        self.use_int_dot
            .store(on && self.has_int_dot, Ordering::Relaxed);
    }

    /// Whether one-token products use 8-bit activations and integer dot
    /// products (see [`GpuBackend::set_int_dot`]).
    pub fn int_dot(&self) -> bool {
        self.use_int_dot.load(Ordering::Relaxed)
    }

    /// Turns on (where the adapter has `shader-f16`) or off (the default)
    /// f16 arithmetic in the tiled product of prompts (more than 8 tokens):
    /// weights rounded to f16, activations as 8-bit integers, 32 products
    /// summed in f16 before their scale (`matmul_f16.wgsl`), as llama.cpp's
    /// Vulkan backend computes prompts on f16 hardware. Off by default
    /// because its products differ from the CPU backend's by ~1e-3
    /// relative, and the logits from llama.cpp's by more than llama.cpp's
    /// own batch paths differ (see docs/webgpu.md, "f16 arithmetic");
    /// `WASM_CHORD_GPU_F16=1` in the environment turns it on for backends
    /// made later. Affects ops recorded later.
    pub fn set_f16(&self, on: bool) {
        self.use_f16.store(on && self.has_f16, Ordering::Relaxed);
    }

    /// Whether prompt products use f16 arithmetic (see
    /// [`GpuBackend::set_f16`]).
    pub fn f16(&self) -> bool {
        self.use_f16.load(Ordering::Relaxed)
    }

    /// Lets one-token products on 8-bit activations take the sub-blocks
    /// that share their bytes together (the default): a Q4_K block's two
    /// sub-blocks of the same 32 bytes of nibbles (`dot_q8_pair.wgsl`), a
    /// Q6_K half block's four (`idot4_q6_k`); off, a thread takes one
    /// sub-block per step like the other types.
    /// `WASM_CHORD_GPU_SUBBLOCK_GROUPS=0` turns it off for backends made
    /// later. Affects ops recorded later.
    pub fn set_subblock_groups(&self, on: bool) {
        self.use_subblock_groups.store(on, Ordering::Relaxed);
    }

    /// Whether one-token Q4_K and Q6_K products take several sub-blocks a
    /// step (see [`GpuBackend::set_subblock_groups`]).
    pub fn subblock_groups(&self) -> bool {
        self.use_subblock_groups.load(Ordering::Relaxed)
    }

    /// Lets a one-token product on 8-bit activations quantize its f32
    /// input itself, in each workgroup (`q8_in.wgsl`), instead of after a
    /// quantize dispatch of its own, where its workgroups times the
    /// input's length are at most `max_values` (0: never). Each workgroup
    /// reads the whole input, so this pays where the workgroups are few and
    /// the row short (the attention output and down projections of small
    /// models); the default is 1.5M. The values are the quantize kernel's,
    /// bit for bit. `WASM_CHORD_GPU_Q8_IN_MAX` sets it for backends made
    /// later. Affects ops recorded later.
    pub fn set_q8_in_max(&self, max_values: usize) {
        self.q8_in_max.store(max_values, Ordering::Relaxed);
    }

    /// See [`GpuBackend::set_q8_in_max`].
    pub fn q8_in_max(&self) -> usize {
        self.q8_in_max.load(Ordering::Relaxed)
    }

    /// Width the subgroup kernels may rely on (0: none).
    pub(crate) fn subgroup_width(&self) -> usize {
        if self.use_subgroups.load(Ordering::Relaxed) {
            self.subgroup_min as usize
        } else {
            0
        }
    }

    /// Submits the ops recorded so far without waiting for them (a read-back
    /// does this by itself).
    pub fn submit(&self) {
        self.ctx.flush()
    }

    /// (dispatches recorded, command submissions, host nanoseconds spent
    /// recording, host nanoseconds waiting for read-backs) since creation
    /// (the times are 0 in browsers).
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        self.ctx.counters()
    }

    /// Copies the first `out.len()` values of `buf` to the host without
    /// blocking: the variant of `Backend::download` for browsers.
    pub async fn download_async(&self, buf: &GpuBuffer, out: &mut [f32]) -> Result<()> {
        ops::need("download", "buffer", buf.len, out.len())?;
        let bytes = self
            .ctx
            .read_async(&buf.buf, 0, out.len() as u64 * 4)
            .await?;
        out.copy_from_slice(bytemuck::cast_slice(&bytes));
        Ok(())
    }

    /// Where the host time of recording goes and what is reused, since
    /// creation (the times are 0 in browsers).
    pub fn host_counters(&self) -> HostCounters {
        let (groups_made, groups_reused, finish_ns, submit_ns) = self.ctx.host_counters();
        let f = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        HostCounters {
            groups_made,
            groups_reused,
            buffers_made: f.made,
            buffers_reused: f.reused,
            finish_ns,
            submit_ns,
        }
    }

    /// A buffer of `len` values: fresh (zeroed by wgpu) unless `pooled`
    /// and the pool has one of that size, which is returned as it is
    /// (`fresh` tells which).
    fn new_buffer(&self, len: usize, pooled: bool) -> Result<(GpuBuffer, bool)> {
        let bytes = (len as u64)
            .checked_mul(4)
            .ok_or(BackendError::OutOfMemory { bytes: u64::MAX })?;
        if bytes > self.ctx.limits.max_storage_buffer_binding_size {
            return Err(BackendError::OutOfMemory { bytes });
        }
        let size = bytes.max(16).div_ceil(16) * 16;
        let reused = if pooled { self.pool.take(size) } else { None };
        let (buf, fresh) = match reused {
            Some(b) => (b, false),
            None => (self.ctx.storage(bytes, "activations")?, true),
        };
        Ok((
            GpuBuffer {
                buf,
                len,
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                version: 0,
                pool: Arc::clone(&self.pool),
                pooled,
            },
            fresh,
        ))
    }
}

impl Backend for GpuBackend {
    type Buffer = GpuBuffer;
    type Weight = GpuWeight;
    /// f32 holding f16-rounded values (an f16 store is future work).
    type Cache = GpuBuffer;

    fn name(&self) -> &'static str {
        NAME
    }

    fn caps(&self) -> Caps {
        Caps {
            f16: self.ctx.features.contains(wgpu::Features::SHADER_F16),
            subgroups: self.ctx.features.contains(wgpu::Features::SUBGROUP),
            max_buffer_bytes: self.ctx.limits.max_buffer_size,
            matmul_types: GPU_TYPES.to_vec(),
            device_top_k: true,
        }
    }

    fn upload_weight(&self, info: &TensorInfo, data: TensorBytes) -> Result<GpuWeight> {
        weight::upload(&self.ctx, info, &data, self.max_part)
    }

    fn alloc_cache(&self, len: usize) -> Result<GpuBuffer> {
        // Not pooled: a cache lives as long as its session and is large.
        Ok(self.new_buffer(len, false)?.0)
    }

    fn download_cache(&self, cache: &GpuBuffer, out: &mut [f32]) -> Result<()> {
        self.download(cache, out)
    }

    fn alloc(&self, len: usize) -> Result<GpuBuffer> {
        let (b, fresh) = self.new_buffer(len, true)?;
        if !fresh {
            // Zeroed in order with the recorded work, after the dispatches
            // of its previous owner: a clear is one command between two
            // compute passes, and the allocations of a forward pass come
            // together, so most of them share one break of the pass.
            self.ctx.clear(&b.buf);
        }
        Ok(b)
    }

    fn upload(&self, data: &[f32]) -> Result<GpuBuffer> {
        // A fresh buffer: `write_buffer` runs before the recorded work, so
        // a pooled one could still be in use by it. It joins the pool when
        // dropped.
        let mut b = self.new_buffer(data.len(), false)?.0;
        b.pooled = true;
        if !data.is_empty() {
            self.ctx
                .queue
                .write_buffer(&b.buf, 0, bytemuck::cast_slice(data));
        }
        b.touch();
        Ok(b)
    }

    fn download(&self, buf: &GpuBuffer, out: &mut [f32]) -> Result<()> {
        ops::need("download", "buffer", buf.len, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let bytes = self.ctx.read(&buf.buf, 0, out.len() as u64 * 4)?;
        out.copy_from_slice(bytemuck::cast_slice(&bytes));
        Ok(())
    }

    fn len(&self, buf: &GpuBuffer) -> usize {
        buf.len
    }

    fn embed(
        &self,
        table: &GpuWeight,
        tokens: &[u32],
        scale: f32,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        out.touch();
        self.op_embed(table, tokens, scale, out)
    }

    fn matmul(
        &self,
        w: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        out.touch();
        self.op_matmul(w, x, n_tokens, out)
    }

    fn matmul_qkv(
        &self,
        w_q: &GpuWeight,
        w_k: &GpuWeight,
        w_v: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        q: &mut GpuBuffer,
        k: &mut GpuBuffer,
        v: &mut GpuBuffer,
    ) -> Result<()> {
        q.touch();
        k.touch();
        v.touch();
        if self.op_matmul_qkv([w_q, w_k, w_v], x, n_tokens, [&*q, &*k, &*v])? {
            return Ok(());
        }
        self.op_matmul(w_q, x, n_tokens, q)?;
        self.op_matmul(w_k, x, n_tokens, k)?;
        self.op_matmul(w_v, x, n_tokens, v)
    }

    fn add_bias(&self, x: &mut GpuBuffer, bias: &GpuWeight, n_rows: usize) -> Result<()> {
        x.touch();
        self.op_add_bias(x, bias, n_rows)
    }

    fn rms_norm(
        &self,
        x: &GpuBuffer,
        weight: &GpuWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        out.touch();
        self.op_rms_norm(x, weight, eps, n_rows, dim, out)
    }

    fn rope(
        &self,
        x: &mut GpuBuffer,
        positions: &[u32],
        n_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
    ) -> Result<()> {
        x.touch();
        self.op_rope(x, positions, n_heads, head_dim, params)
    }

    fn add(&self, a: &mut GpuBuffer, b: &GpuBuffer, n: usize) -> Result<()> {
        a.touch();
        self.op_add(a, b, n)
    }

    fn glu(&self, kind: GluKind, gate: &mut GpuBuffer, up: &GpuBuffer, n: usize) -> Result<()> {
        gate.touch();
        self.op_glu(kind, gate, up, n)
    }

    fn add_rms_norm(
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
        x.touch();
        out.touch();
        self.op_add_rms_norm(x, b, b_norm, weight, eps, n_rows, dim, out)
    }

    fn qk_rope(
        &self,
        q: &mut GpuBuffer,
        k: &mut GpuBuffer,
        q_out: &mut GpuBuffer,
        k_out: &mut GpuBuffer,
        rope: &QkRope<'_, GpuWeight>,
    ) -> Result<()> {
        touch_rotated(rope.norms.is_some(), q, k, q_out, k_out);
        self.op_qk_rope(q, k, q_out, k_out, rope, None)
    }

    fn qk_rope_kv(
        &self,
        q: &mut GpuBuffer,
        k: &mut GpuBuffer,
        v: &GpuBuffer,
        q_out: &mut GpuBuffer,
        k_out: &mut GpuBuffer,
        rope: &QkRope<'_, GpuWeight>,
        k_dst: &mut GpuBuffer,
        v_dst: &mut GpuBuffer,
        rows: &[usize],
    ) -> Result<()> {
        touch_rotated(rope.norms.is_some(), q, k, q_out, k_out);
        k_dst.touch();
        v_dst.touch();
        let kv = ops::KvRows {
            v,
            k_dst,
            v_dst,
            rows,
        };
        self.op_qk_rope(q, k, q_out, k_out, rope, Some(kv))
    }

    fn matmul_glu(
        &self,
        kind: GluKind,
        w_gate: &GpuWeight,
        w_up: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        rows: usize,
        gate: &mut GpuBuffer,
        up: &mut GpuBuffer,
    ) -> Result<()> {
        gate.touch();
        if self.op_matmul_glu(kind, w_gate, w_up, x, n_tokens, rows, gate)? {
            return Ok(());
        }
        up.touch();
        self.op_matmul(w_gate, x, n_tokens, gate)?;
        self.op_matmul(w_up, x, n_tokens, up)?;
        self.op_glu(kind, gate, up, n_tokens * rows)
    }

    fn write_rows(
        &self,
        dst: &mut GpuBuffer,
        src: &GpuBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        dst.touch();
        self.op_write_rows(dst, src, rows, width)
    }

    fn write_kv(
        &self,
        k_dst: &mut GpuBuffer,
        v_dst: &mut GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        k_dst.touch();
        v_dst.touch();
        self.op_write_kv(k_dst, v_dst, k, v, rows, width)
    }

    fn attention(
        &self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        params: &AttentionParams<'_>,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        out.touch();
        self.op_attention(q, k, v, params, out)
    }

    fn softcap(&self, x: &mut GpuBuffer, cap: f32, n: usize) -> Result<()> {
        x.touch();
        self.op_map(x, 1, cap, n, "softcap")
    }

    fn scale(&self, x: &mut GpuBuffer, s: f32, n: usize) -> Result<()> {
        x.touch();
        self.op_map(x, 0, s, n, "scale")
    }

    fn copy_rows(
        &self,
        x: &GpuBuffer,
        start: usize,
        n_rows: usize,
        width: usize,
    ) -> Result<GpuBuffer> {
        let end = start
            .checked_add(n_rows)
            .and_then(|r| r.checked_mul(width))
            .filter(|&e| e <= x.len)
            .ok_or_else(|| BackendError::Shape {
                op: "copy_rows",
                detail: format!(
                    "rows {start}+{n_rows} of width {width} in a buffer of {}",
                    x.len
                ),
            })?;
        // Wholly overwritten by the copy: a pooled buffer needs no clear.
        let mut out = self.new_buffer(n_rows * width, true)?.0;
        let from = (end - n_rows * width) as u64 * 4;
        self.ctx
            .copy(&x.buf, from, &out.buf, 0, (n_rows * width) as u64 * 4);
        out.touch();
        Ok(out)
    }

    fn argmax(&self, x: &GpuBuffer, n: usize) -> Result<u32> {
        Ok(self.op_top_k(x, n, 1)?.first().map_or(0, |&(i, _)| i))
    }

    fn top_k(&self, x: &GpuBuffer, n: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        self.op_top_k(x, n, k)
    }
}
