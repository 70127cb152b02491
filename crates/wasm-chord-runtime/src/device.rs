//! Picking a compute backend at run time.
//!
//! [`Model`](crate::Model) and [`Session`](crate::Session) are generic over
//! the `Backend` contract; surfaces that choose the device from a flag or a
//! setting (the CLI's `--backend`, the C ABI, the browser package) use
//! [`AnyBackend`], an enum over the backends compiled into this build:
//!
//! | device | backend | cargo feature |
//! |---|---|---|
//! | `cpu` | `wasm-chord-cpu` (SIMD, threads) | always |
//! | `webgpu` | `wasm-chord-gpu` (wgpu: Vulkan, Metal, DX12) | `webgpu` |
//! | `cuda[:N]` | `wasm-chord-candle` on CUDA | `cuda` |
//! | `metal[:N]` | `wasm-chord-candle` on Metal | `metal` |
//! | `candle-cpu` | `wasm-chord-candle` on candle's CPU device | `candle` |
//!
//! [`Device::Auto`] takes the first that opens of CUDA, Metal and a hardware
//! WebGPU adapter, and the CPU otherwise; [`AnyBackend::reason`] says why it
//! chose what it chose. Dispatch is one `match` per op (a few nanoseconds
//! against microseconds of kernel work), and buffers remember which backend
//! made them, so mixing them is an error rather than undefined behaviour.

use std::fmt;
use std::str::FromStr;

#[cfg(feature = "candle")]
use wasm_chord_candle::{CandleBackend, CandleDevice};
use wasm_chord_core::backend::{
    AttentionParams, Backend, BackendError, Caps, GluKind, QkRope, Result, RopeParams, StepKey,
    TensorBytes,
};
use wasm_chord_core::gguf::TensorInfo;
use wasm_chord_cpu::CpuBackend;
#[cfg(feature = "webgpu")]
use wasm_chord_gpu::GpuBackend;

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The best available: CUDA, then Metal, then a hardware WebGPU adapter,
    /// then the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The WebGPU backend (wgpu).
    WebGpu,
    /// Candle on the CUDA device with this ordinal.
    Cuda(usize),
    /// Candle on the Metal device with this ordinal.
    Metal(usize),
    /// Candle on its CPU device (for testing the Candle backend anywhere).
    CandleCpu,
}

impl Device {
    /// The names [`FromStr`] accepts, for help texts.
    pub const NAMES: &'static str = "auto, cpu, webgpu, cuda[:N], metal[:N], candle-cpu";

    /// Devices compiled into this build, in the order `Auto` tries them.
    pub fn compiled() -> Vec<&'static str> {
        let mut v = Vec::new();
        if cfg!(feature = "cuda") {
            v.push("cuda");
        }
        if cfg!(feature = "metal") {
            v.push("metal");
        }
        if cfg!(feature = "webgpu") {
            v.push("webgpu");
        }
        if cfg!(feature = "candle") {
            v.push("candle-cpu");
        }
        v.push("cpu");
        v
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Cpu => f.write_str("cpu"),
            Device::WebGpu => f.write_str("webgpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Metal(i) => write!(f, "metal:{i}"),
            Device::CandleCpu => f.write_str("candle-cpu"),
        }
    }
}

/// A device name that is not one of [`Device::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}` (expected one of: {names})", names = Device::NAMES)]
pub struct UnknownDevice(pub String);

impl FromStr for Device {
    type Err = UnknownDevice;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, ordinal) = match lower.split_once(':') {
            Some((n, i)) => match i.parse::<usize>() {
                Ok(i) => (n, Some(i)),
                Err(_) => return Err(UnknownDevice(s.to_string())),
            },
            None => (lower.as_str(), None),
        };
        match (name, ordinal) {
            ("auto", None) => Ok(Device::Auto),
            ("cpu", None) => Ok(Device::Cpu),
            ("webgpu" | "wgpu" | "vulkan", None) => Ok(Device::WebGpu),
            ("cuda", i) => Ok(Device::Cuda(i.unwrap_or(0))),
            ("metal", i) => Ok(Device::Metal(i.unwrap_or(0))),
            ("candle-cpu", None) => Ok(Device::CandleCpu),
            _ => Err(UnknownDevice(s.to_string())),
        }
    }
}

enum Inner {
    Cpu(CpuBackend),
    #[cfg(feature = "webgpu")]
    Gpu(GpuBackend),
    #[cfg(feature = "candle")]
    Candle(CandleBackend),
}

/// Activations of an [`AnyBackend`].
pub enum AnyBuffer {
    /// A CPU buffer.
    Cpu(Vec<f32>),
    /// A WebGPU buffer.
    #[cfg(feature = "webgpu")]
    Gpu(<GpuBackend as Backend>::Buffer),
    /// A Candle buffer.
    #[cfg(feature = "candle")]
    Candle(<CandleBackend as Backend>::Buffer),
}

/// KV-cache rows of an [`AnyBackend`], in that backend's storage type.
pub enum AnyCache {
    /// CPU cache rows (f16).
    Cpu(<CpuBackend as Backend>::Cache),
    /// WebGPU cache rows.
    #[cfg(feature = "webgpu")]
    Gpu(<GpuBackend as Backend>::Cache),
    /// Candle cache rows.
    #[cfg(feature = "candle")]
    Candle(<CandleBackend as Backend>::Cache),
}

/// An uploaded weight of an [`AnyBackend`].
pub enum AnyWeight {
    /// A CPU weight (a view of the memory map).
    Cpu(<CpuBackend as Backend>::Weight),
    /// A WebGPU weight.
    #[cfg(feature = "webgpu")]
    Gpu(<GpuBackend as Backend>::Weight),
    /// A Candle weight.
    #[cfg(feature = "candle")]
    Candle(<CandleBackend as Backend>::Weight),
}

/// One of the backends compiled into this build, chosen at run time.
pub struct AnyBackend {
    inner: Inner,
    reason: String,
}

impl fmt::Debug for AnyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyBackend")
            .field("name", &self.name())
            .field("reason", &self.reason)
            .finish()
    }
}

fn not_compiled(backend: &'static str, feature: &str) -> BackendError {
    BackendError::NotAvailable {
        backend,
        reason: format!(
            "this build has no `{feature}` feature (compiled in: {})",
            Device::compiled().join(", ")
        ),
    }
}

impl AnyBackend {
    /// Opens `device`. `Auto` never fails: it falls back to the CPU and
    /// records why in [`reason`](Self::reason).
    pub fn open(device: Device) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Self::cpu(CpuBackend::new(), "asked for".into())),
            Device::Auto => Ok(Self::auto()),
            Device::WebGpu => Self::webgpu(),
            Device::Cuda(i) => Self::candle_on(device, i),
            Device::Metal(i) => Self::candle_on(device, i),
            Device::CandleCpu => Self::candle_on(device, 0),
        }
    }

    /// Wraps an existing CPU backend (for a chosen thread count).
    pub fn from_cpu(cpu: CpuBackend) -> Self {
        Self::cpu(cpu, "asked for".into())
    }

    fn cpu(cpu: CpuBackend, why: String) -> Self {
        Self {
            inner: Inner::Cpu(cpu),
            reason: why,
        }
    }

    fn auto() -> Self {
        let mut skipped = Vec::new();
        for dev in [Device::Cuda(0), Device::Metal(0), Device::WebGpu] {
            match Self::open(dev) {
                Ok(b) if b.is_software() => {
                    skipped.push(format!("{dev}: software adapter ({})", b.summary()))
                }
                Ok(mut b) => {
                    b.reason = format!(
                        "auto: first available of cuda, metal, webgpu ({})",
                        b.summary()
                    );
                    return b;
                }
                Err(e) => skipped.push(format!("{dev}: {e}")),
            }
        }
        Self::cpu(
            CpuBackend::new(),
            format!("auto: no GPU backend opened ({})", skipped.join("; ")),
        )
    }

    #[cfg(feature = "webgpu")]
    fn webgpu() -> Result<Self> {
        let gpu = GpuBackend::new()?;
        let reason = format!("asked for ({})", gpu.adapter_summary());
        Ok(Self {
            inner: Inner::Gpu(gpu),
            reason,
        })
    }

    #[cfg(not(feature = "webgpu"))]
    fn webgpu() -> Result<Self> {
        Err(not_compiled("webgpu", "webgpu"))
    }

    #[cfg(feature = "candle")]
    fn candle_on(device: Device, ordinal: usize) -> Result<Self> {
        let dev = match device {
            Device::Cuda(_) if cfg!(feature = "cuda") => CandleDevice::Cuda(ordinal),
            Device::Cuda(_) => return Err(not_compiled("cuda", "cuda")),
            Device::Metal(_) if cfg!(feature = "metal") => CandleDevice::Metal(ordinal),
            Device::Metal(_) => return Err(not_compiled("metal", "metal")),
            _ => CandleDevice::Cpu,
        };
        let b = CandleBackend::new(dev)?;
        let reason = format!("asked for ({})", b.device_summary());
        Ok(Self {
            inner: Inner::Candle(b),
            reason,
        })
    }

    #[cfg(not(feature = "candle"))]
    fn candle_on(device: Device, _ordinal: usize) -> Result<Self> {
        Err(match device {
            Device::Cuda(_) => not_compiled("cuda", "cuda"),
            Device::Metal(_) => not_compiled("metal", "metal"),
            _ => not_compiled("candle-cpu", "candle"),
        })
    }

    /// Why this backend was chosen, and what it runs on.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// One line about the device (adapter or GPU name where known).
    pub fn summary(&self) -> String {
        match &self.inner {
            Inner::Cpu(_) => "cpu".to_string(),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(g) => g.adapter_summary(),
            #[cfg(feature = "candle")]
            Inner::Candle(c) => c.device_summary(),
        }
    }

    /// Whether the device is a CPU pretending to be a GPU (lavapipe,
    /// SwiftShader, candle's CPU device): `Auto` skips those.
    pub fn is_software(&self) -> bool {
        match &self.inner {
            Inner::Cpu(_) => false,
            #[cfg(feature = "webgpu")]
            Inner::Gpu(_) => {
                let s = self.summary().to_ascii_lowercase();
                ["llvmpipe", "lavapipe", "swiftshader", "software", "cpu"]
                    .iter()
                    .any(|w| s.contains(w))
            }
            #[cfg(feature = "candle")]
            Inner::Candle(c) => c.name() == "candle-cpu",
        }
    }

    /// The CPU backend, when that is what runs (to set its thread count).
    pub fn as_cpu(&self) -> Option<&CpuBackend> {
        match &self.inner {
            Inner::Cpu(c) => Some(c),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

fn mixed(op: &'static str) -> BackendError {
    BackendError::Shape {
        op,
        detail: "buffers or weights of another backend".to_string(),
    }
}

/// Calls `$body` with every argument unwrapped to the same backend's
/// variant; a mix of backends is an error.
macro_rules! dispatch {
    ($op:literal, $be:ident = $self:expr $(, $p:ident: $E:ident = $e:expr)* => $body:expr) => {
        match (&$self.inner $(, $e)*) {
            (Inner::Cpu($be) $(, $E::Cpu($p))*) => $body,
            #[cfg(feature = "webgpu")]
            (Inner::Gpu($be) $(, $E::Gpu($p))*) => $body,
            #[cfg(feature = "candle")]
            (Inner::Candle($be) $(, $E::Candle($p))*) => $body,
            #[allow(unreachable_patterns)]
            _ => Err(mixed($op)),
        }
    };
}

impl Backend for AnyBackend {
    type Buffer = AnyBuffer;
    type Weight = AnyWeight;
    type Cache = AnyCache;

    fn name(&self) -> &'static str {
        match &self.inner {
            Inner::Cpu(b) => b.name(),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.name(),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.name(),
        }
    }

    fn caps(&self) -> Caps {
        match &self.inner {
            Inner::Cpu(b) => b.caps(),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.caps(),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.caps(),
        }
    }

    fn upload_weight(&self, info: &TensorInfo, data: TensorBytes) -> Result<AnyWeight> {
        match &self.inner {
            Inner::Cpu(b) => b.upload_weight(info, data).map(AnyWeight::Cpu),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.upload_weight(info, data).map(AnyWeight::Gpu),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.upload_weight(info, data).map(AnyWeight::Candle),
        }
    }

    fn alloc(&self, len: usize) -> Result<AnyBuffer> {
        match &self.inner {
            Inner::Cpu(b) => b.alloc(len).map(AnyBuffer::Cpu),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.alloc(len).map(AnyBuffer::Gpu),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.alloc(len).map(AnyBuffer::Candle),
        }
    }

    fn alloc_cache(&self, len: usize) -> Result<AnyCache> {
        match &self.inner {
            Inner::Cpu(b) => b.alloc_cache(len).map(AnyCache::Cpu),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.alloc_cache(len).map(AnyCache::Gpu),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.alloc_cache(len).map(AnyCache::Candle),
        }
    }

    fn run_pass<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.inner {
            Inner::Cpu(b) => b.run_pass(f),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.run_pass(f),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.run_pass(f),
        }
    }

    fn run_step<E: From<BackendError> + Send>(
        &self,
        key: &StepKey,
        f: impl FnOnce() -> std::result::Result<Option<AnyBuffer>, E> + Send,
    ) -> std::result::Result<Option<AnyBuffer>, E> {
        match &self.inner {
            // The Candle backend records and replays passes: it sees its own
            // buffers, so f's result is unwrapped on the way in.
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b
                .run_step(key, || {
                    f()?.map(|buf| match buf {
                        AnyBuffer::Candle(c) => Ok(c),
                        #[allow(unreachable_patterns)]
                        _ => Err(E::from(mixed("run_step"))),
                    })
                    .transpose()
                })
                .map(|o| o.map(AnyBuffer::Candle)),
            _ => {
                let _ = key;
                self.run_pass(f)
            }
        }
    }

    fn download_cache(&self, cache: &AnyCache, out: &mut [f32]) -> Result<()> {
        dispatch!("download_cache", b = self, c: AnyCache = cache => b.download_cache(c, out))
    }

    fn upload(&self, data: &[f32]) -> Result<AnyBuffer> {
        match &self.inner {
            Inner::Cpu(b) => b.upload(data).map(AnyBuffer::Cpu),
            #[cfg(feature = "webgpu")]
            Inner::Gpu(b) => b.upload(data).map(AnyBuffer::Gpu),
            #[cfg(feature = "candle")]
            Inner::Candle(b) => b.upload(data).map(AnyBuffer::Candle),
        }
    }

    fn download(&self, buf: &AnyBuffer, out: &mut [f32]) -> Result<()> {
        dispatch!("download", b = self, x: AnyBuffer = buf => b.download(x, out))
    }

    fn len(&self, buf: &AnyBuffer) -> usize {
        let r: Result<usize> = dispatch!("len", b = self, x: AnyBuffer = buf => Ok(b.len(x)));
        r.unwrap_or(0)
    }

    fn embed(
        &self,
        table: &AnyWeight,
        tokens: &[u32],
        scale: f32,
        out: &mut AnyBuffer,
    ) -> Result<()> {
        dispatch!("embed", b = self, t: AnyWeight = table, o: AnyBuffer = out
            => b.embed(t, tokens, scale, o))
    }

    fn matmul(
        &self,
        w: &AnyWeight,
        x: &AnyBuffer,
        n_tokens: usize,
        out: &mut AnyBuffer,
    ) -> Result<()> {
        dispatch!("matmul", b = self, w: AnyWeight = w, x: AnyBuffer = x, o: AnyBuffer = out
            => b.matmul(w, x, n_tokens, o))
    }

    fn add_bias(&self, x: &mut AnyBuffer, bias: &AnyWeight, n_rows: usize) -> Result<()> {
        dispatch!("add_bias", b = self, x: AnyBuffer = x, w: AnyWeight = bias
            => b.add_bias(x, w, n_rows))
    }

    fn rms_norm(
        &self,
        x: &AnyBuffer,
        weight: &AnyWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut AnyBuffer,
    ) -> Result<()> {
        dispatch!("rms_norm", b = self, x: AnyBuffer = x, w: AnyWeight = weight, o: AnyBuffer = out
            => b.rms_norm(x, w, eps, n_rows, dim, o))
    }

    fn rope(
        &self,
        x: &mut AnyBuffer,
        positions: &[u32],
        n_heads: usize,
        head_dim: usize,
        params: &RopeParams<'_>,
    ) -> Result<()> {
        dispatch!("rope", b = self, x: AnyBuffer = x
            => b.rope(x, positions, n_heads, head_dim, params))
    }

    fn add(&self, a: &mut AnyBuffer, bb: &AnyBuffer, n: usize) -> Result<()> {
        dispatch!("add", b = self, a: AnyBuffer = a, c: AnyBuffer = bb => b.add(a, c, n))
    }

    fn glu(&self, kind: GluKind, gate: &mut AnyBuffer, up: &AnyBuffer, n: usize) -> Result<()> {
        dispatch!("glu", b = self, g: AnyBuffer = gate, u: AnyBuffer = up
            => b.glu(kind, g, u, n))
    }

    fn add_rms_norm(
        &self,
        x: &mut AnyBuffer,
        bb: &AnyBuffer,
        b_norm: Option<&AnyWeight>,
        weight: &AnyWeight,
        eps: f32,
        n_rows: usize,
        dim: usize,
        out: &mut AnyBuffer,
    ) -> Result<()> {
        match b_norm {
            Some(bn) => dispatch!("add_rms_norm", b = self, x: AnyBuffer = x, c: AnyBuffer = bb,
                bn: AnyWeight = bn, w: AnyWeight = weight, o: AnyBuffer = out
                => b.add_rms_norm(x, c, Some(bn), w, eps, n_rows, dim, o)),
            None => dispatch!("add_rms_norm", b = self, x: AnyBuffer = x, c: AnyBuffer = bb,
                w: AnyWeight = weight, o: AnyBuffer = out
                => b.add_rms_norm(x, c, None, w, eps, n_rows, dim, o)),
        }
    }

    fn qk_rope(
        &self,
        q: &mut AnyBuffer,
        k: &mut AnyBuffer,
        q_out: &mut AnyBuffer,
        k_out: &mut AnyBuffer,
        rope: &QkRope<'_, AnyWeight>,
    ) -> Result<()> {
        match rope.norms {
            Some((qw, kw, eps)) => dispatch!("qk_rope", b = self, q: AnyBuffer = q,
                k: AnyBuffer = k, qw: AnyWeight = qw, kw: AnyWeight = kw,
                qo: AnyBuffer = q_out, ko: AnyBuffer = k_out
                => b.qk_rope(q, k, qo, ko, &rope.with_norms(Some((qw, kw, eps))))),
            None => dispatch!("qk_rope", b = self, q: AnyBuffer = q, k: AnyBuffer = k,
                qo: AnyBuffer = q_out, ko: AnyBuffer = k_out
                => b.qk_rope(q, k, qo, ko, &rope.with_norms(None))),
        }
    }

    fn qk_rope_kv(
        &self,
        q: &mut AnyBuffer,
        k: &mut AnyBuffer,
        v: &AnyBuffer,
        q_out: &mut AnyBuffer,
        k_out: &mut AnyBuffer,
        rope: &QkRope<'_, AnyWeight>,
        k_dst: &mut AnyCache,
        v_dst: &mut AnyCache,
        rows: &[usize],
    ) -> Result<()> {
        match rope.norms {
            Some((qw, kw, eps)) => dispatch!("qk_rope_kv", b = self, q: AnyBuffer = q,
                k: AnyBuffer = k, v: AnyBuffer = v, qw: AnyWeight = qw, kw: AnyWeight = kw,
                qo: AnyBuffer = q_out, ko: AnyBuffer = k_out, kd: AnyCache = k_dst,
                vd: AnyCache = v_dst
                => b.qk_rope_kv(q, k, v, qo, ko, &rope.with_norms(Some((qw, kw, eps))), kd, vd,
                    rows)),
            None => dispatch!("qk_rope_kv", b = self, q: AnyBuffer = q, k: AnyBuffer = k,
                v: AnyBuffer = v, qo: AnyBuffer = q_out, ko: AnyBuffer = k_out,
                kd: AnyCache = k_dst, vd: AnyCache = v_dst
                => b.qk_rope_kv(q, k, v, qo, ko, &rope.with_norms(None), kd, vd, rows)),
        }
    }

    fn matmul_qkv(
        &self,
        w_q: &AnyWeight,
        w_k: &AnyWeight,
        w_v: &AnyWeight,
        x: &AnyBuffer,
        n_tokens: usize,
        q: &mut AnyBuffer,
        k: &mut AnyBuffer,
        v: &mut AnyBuffer,
    ) -> Result<()> {
        dispatch!("matmul_qkv", b = self, wq: AnyWeight = w_q, wk: AnyWeight = w_k,
            wv: AnyWeight = w_v, x: AnyBuffer = x, q: AnyBuffer = q, k: AnyBuffer = k,
            v: AnyBuffer = v
            => b.matmul_qkv(wq, wk, wv, x, n_tokens, q, k, v))
    }

    fn matmul_glu(
        &self,
        kind: GluKind,
        w_gate: &AnyWeight,
        w_up: &AnyWeight,
        x: &AnyBuffer,
        n_tokens: usize,
        rows: usize,
        gate: &mut AnyBuffer,
        up: &mut AnyBuffer,
    ) -> Result<()> {
        dispatch!("matmul_glu", b = self, wg: AnyWeight = w_gate, wu: AnyWeight = w_up,
            x: AnyBuffer = x, g: AnyBuffer = gate, u: AnyBuffer = up
            => b.matmul_glu(kind, wg, wu, x, n_tokens, rows, g, u))
    }

    fn write_rows(
        &self,
        dst: &mut AnyCache,
        src: &AnyBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        dispatch!("write_rows", b = self, d: AnyCache = dst, s: AnyBuffer = src
            => b.write_rows(d, s, rows, width))
    }

    fn write_kv(
        &self,
        k_dst: &mut AnyCache,
        v_dst: &mut AnyCache,
        k: &AnyBuffer,
        v: &AnyBuffer,
        rows: &[usize],
        width: usize,
    ) -> Result<()> {
        dispatch!("write_kv", b = self, kd: AnyCache = k_dst, vd: AnyCache = v_dst,
            k: AnyBuffer = k, v: AnyBuffer = v => b.write_kv(kd, vd, k, v, rows, width))
    }

    fn attention(
        &self,
        q: &AnyBuffer,
        k: &AnyCache,
        v: &AnyCache,
        params: &AttentionParams<'_>,
        out: &mut AnyBuffer,
    ) -> Result<()> {
        dispatch!("attention", b = self, q: AnyBuffer = q, k: AnyCache = k, v: AnyCache = v,
            o: AnyBuffer = out => b.attention(q, k, v, params, o))
    }

    fn softcap(&self, x: &mut AnyBuffer, cap: f32, n: usize) -> Result<()> {
        dispatch!("softcap", b = self, x: AnyBuffer = x => b.softcap(x, cap, n))
    }

    fn scale(&self, x: &mut AnyBuffer, s: f32, n: usize) -> Result<()> {
        dispatch!("scale", b = self, x: AnyBuffer = x => b.scale(x, s, n))
    }

    fn copy_rows(
        &self,
        x: &AnyBuffer,
        start: usize,
        n_rows: usize,
        width: usize,
    ) -> Result<AnyBuffer> {
        match (&self.inner, x) {
            (Inner::Cpu(b), AnyBuffer::Cpu(x)) => {
                b.copy_rows(x, start, n_rows, width).map(AnyBuffer::Cpu)
            }
            #[cfg(feature = "webgpu")]
            (Inner::Gpu(b), AnyBuffer::Gpu(x)) => {
                b.copy_rows(x, start, n_rows, width).map(AnyBuffer::Gpu)
            }
            #[cfg(feature = "candle")]
            (Inner::Candle(b), AnyBuffer::Candle(x)) => {
                b.copy_rows(x, start, n_rows, width).map(AnyBuffer::Candle)
            }
            #[allow(unreachable_patterns)]
            _ => Err(mixed("copy_rows")),
        }
    }

    fn argmax(&self, x: &AnyBuffer, n: usize) -> Result<u32> {
        dispatch!("argmax", b = self, x: AnyBuffer = x => b.argmax(x, n))
    }

    fn top_k(&self, x: &AnyBuffer, n: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        dispatch!("top_k", b = self, x: AnyBuffer = x => b.top_k(x, n, k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (s, d) in [
            ("auto", Device::Auto),
            ("CPU", Device::Cpu),
            ("webgpu", Device::WebGpu),
            ("cuda", Device::Cuda(0)),
            ("cuda:1", Device::Cuda(1)),
            ("metal:0", Device::Metal(0)),
            ("candle-cpu", Device::CandleCpu),
        ] {
            assert_eq!(s.parse::<Device>(), Ok(d), "{s}");
            assert_eq!(d.to_string().parse::<Device>(), Ok(d));
        }
        for bad in ["", "gpu", "cuda:x", "cpu:1", "cuda:-1"] {
            assert!(bad.parse::<Device>().is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_always_opens_and_says_why() {
        let b = AnyBackend::open(Device::Auto).unwrap();
        assert!(!b.reason().is_empty());
        assert!(!b.is_software());
    }

    #[test]
    fn uncompiled_devices_are_named_errors() {
        if !cfg!(feature = "cuda") {
            let e = AnyBackend::open(Device::Cuda(0)).unwrap_err();
            assert!(
                matches!(
                    e,
                    BackendError::NotAvailable {
                        backend: "cuda",
                        ..
                    }
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn cpu_through_the_enum_matches_the_cpu_backend() {
        let any = AnyBackend::open(Device::Cpu).unwrap();
        let cpu = CpuBackend::new();
        let a: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..64)
            .map(|i| ((i * 11 % 19) as f32 - 9.0) / 5.0)
            .collect();
        let (mut xa, ya) = (any.upload(&a).unwrap(), any.upload(&b).unwrap());
        any.add(&mut xa, &ya, 64).unwrap();
        any.softcap(&mut xa, 3.0, 64).unwrap();
        let (mut xc, yc) = (cpu.upload(&a).unwrap(), cpu.upload(&b).unwrap());
        cpu.add(&mut xc, &yc, 64).unwrap();
        cpu.softcap(&mut xc, 3.0, 64).unwrap();
        let mut got = vec![0.0; 64];
        any.download(&xa, &mut got).unwrap();
        assert_eq!(got, xc);
        assert_eq!(any.argmax(&xa, 64).unwrap(), cpu.argmax(&xc, 64).unwrap());
        let tail = any.copy_rows(&xa, 2, 3, 8).unwrap();
        assert_eq!(any.len(&tail), 24);
        let mut t = vec![0.0; 24];
        any.download(&tail, &mut t).unwrap();
        assert_eq!(t, xc[16..40]);
    }
}
