//! Decode steps recorded once and replayed as CUDA graphs.
//!
//! A one-token forward pass is ~250 Backend calls, each a kernel or two
//! plus candle's host-side dispatch (allocation, layout checks, the launch
//! itself): ~8 µs of host time per call, more than the GPU needs for most
//! of these kernels. llama.cpp records its decode step as one CUDA graph;
//! so does this backend, through [`Backend::run_step`]:
//!
//! 1. **Plan.** The first pass of a [`StepKey`] runs as usual, and notes
//!    the size of every host value its calls hand over (token embeddings,
//!    positions, cache rows and their positions) and a hash of the calls
//!    and their sizes.
//! 2. **Record.** The second pass of that key runs under stream capture.
//!    Its host values go to two device *arenas* (u32 and f32) allocated
//!    before the capture, which the kernels read; its logits are copied
//!    into a buffer also allocated before it. Everything else a pass
//!    allocates is allocated and freed inside the graph, so the graph can
//!    be launched again.
//! 3. **Replay.** Later passes of the key run the session's code without
//!    device work: each call only appends its host values to the staging
//!    copy of the arenas (in the same order, so at the same offsets) and
//!    adds to the hash. Then the arenas are uploaded (two copies) and the
//!    graph launched (one call).
//!
//! Attention reads cache rows up to the pass's last position, a number
//! that grows with every token. To keep one graph valid for many tokens,
//! the cache positions handed to the kernel are padded with empty rows
//! (position -1, which the kernel masks: they add exact zeros) up to a
//! multiple of [`PAD_ROWS`], and the key's `pos_end` is bucketed the same
//! way. A session of `n_ctx` positions thus records at most
//! `n_ctx / PAD_ROWS` graphs; the backend keeps the [`MAX_GRAPHS`] most
//! recent.
//!
//! Stream capture records whatever reaches the stream, from any thread, so
//! nothing else may touch the device's stream during a capture. Every
//! Backend call, pass and buffer drop of this crate on CUDA holds
//! [`STREAM`], a process-wide reentrant lock: passes of sessions on
//! several threads take turns (they share the one stream anyway).
//!
//! [`Backend::run_step`]: wasm_chord_core::backend::Backend::run_step
//! [`StepKey`]: wasm_chord_core::backend::StepKey

// Only the CUDA build records graphs.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

use candle_core::Tensor;
use wasm_chord_core::backend::StepKey;

/// Attention's cache rows are padded to a multiple of this in graph steps.
pub(crate) const PAD_ROWS: usize = 256;

/// Graphs kept per backend (most recently used first).
pub(crate) const MAX_GRAPHS: usize = 8;

/// Held by every CUDA call of this crate (see the module docs).
pub(crate) static STREAM: parking_lot::ReentrantMutex<()> = parking_lot::ReentrantMutex::new(());

/// What the calls of a pass do while a step is being planned, recorded or
/// replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run, and note host values and the calls' hash.
    Plan,
    /// Run under capture, reading host values from the arenas.
    Record,
    /// Only collect host values and the hash.
    Replay,
}

/// The state of the pass being planned, recorded or replayed.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) mode: Mode,
    pub(crate) hash: u64,
    pub(crate) u32s: Vec<u32>,
    pub(crate) f32s: Vec<f32>,
    /// The device arenas (u32, f32): in Record and Replay.
    pub(crate) arenas: Option<(Tensor, Tensor)>,
}

impl Step {
    pub(crate) fn new(mode: Mode, arenas: Option<(Tensor, Tensor)>) -> Self {
        Self {
            mode,
            hash: FNV_OFFSET,
            u32s: Vec::new(),
            f32s: Vec::new(),
            arenas,
        }
    }

    /// Adds a call (its name and sizes) to the pass's hash.
    pub(crate) fn note(&mut self, op: &str, sizes: &[usize]) {
        for b in op.bytes() {
            self.mix(u64::from(b));
        }
        for &s in sizes {
            self.mix(s as u64);
        }
    }

    fn mix(&mut self, v: u64) {
        self.hash = (self.hash ^ v).wrapping_mul(FNV_PRIME);
    }
}

/// Host values a call hands to its kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Host<'a> {
    /// u32 values (positions, rows); an empty slice stands for one 0.
    U32(&'a [u32]),
    /// f32 values given as their bits; an empty slice stands for one 0.
    F32Bits(&'a [u32]),
    /// f32 values (embedding rows).
    F32(&'a [f32]),
}

impl Step {
    /// Appends a call's host values to the staging arenas, and returns
    /// their view of the device arena while recording or replaying.
    pub(crate) fn stage(
        &mut self,
        op: &str,
        data: Host<'_>,
    ) -> candle_core::Result<Option<Tensor>> {
        let (in_f32, off, len) = match data {
            Host::U32(b) => {
                let off = self.u32s.len();
                self.u32s.extend_from_slice(b);
                if b.is_empty() {
                    self.u32s.push(0);
                }
                (false, off, b.len().max(1))
            }
            Host::F32Bits(b) => {
                let off = self.f32s.len();
                self.f32s.extend(b.iter().map(|&v| f32::from_bits(v)));
                if b.is_empty() {
                    self.f32s.push(0.0);
                }
                (true, off, b.len().max(1))
            }
            Host::F32(v) => {
                let off = self.f32s.len();
                self.f32s.extend_from_slice(v);
                (true, off, v.len())
            }
        };
        self.note(op, &[usize::from(in_f32), off, len]);
        match (self.mode, &self.arenas) {
            (Mode::Plan, _) => Ok(None),
            (_, Some((u, f))) => {
                let arena = if in_f32 { f } else { u };
                Ok(Some(arena.narrow(0, off, len)?))
            }
            (_, None) => candle_core::bail!("{op}: a graph step without its arenas"),
        }
    }
}

/// The graphs of a backend and the step in progress.
pub(crate) struct Graphs {
    pub(crate) step: Option<Step>,
    /// Stands in for allocations while replaying (prefixes of it).
    pub(crate) dummy: Option<Tensor>,
    /// Graphs are off: not CUDA, turned off, or a recording failed.
    pub(crate) off: bool,
    #[cfg(feature = "cuda")]
    pub(crate) entries: Vec<(GraphKey, cuda::Entry)>,
}

impl std::fmt::Debug for Graphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graphs")
            .field("off", &self.off)
            .field("step", &self.step.as_ref().map(|s| s.mode))
            .finish_non_exhaustive()
    }
}

impl Graphs {
    pub(crate) fn new(dev: crate::CandleDevice) -> Self {
        let env_off = std::env::var("WASMCHORD_CUDA_GRAPHS").is_ok_and(|v| v == "0");
        // candle's per-kernel event records would be captured too.
        let events = std::env::var("WASMCHORD_CUDA_EVENT_TRACKING").is_ok_and(|v| v == "1");
        Self {
            step: None,
            dummy: None,
            off: env_off || events || !matches!(dev, crate::CandleDevice::Cuda(_)),
            #[cfg(feature = "cuda")]
            entries: Vec::new(),
        }
    }

    pub(crate) fn set(&mut self, on: bool) {
        self.off = !on;
        #[cfg(feature = "cuda")]
        self.entries.clear();
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The key graphs are stored under: a session, the pass's shape, and its
/// last position rounded up to [`PAD_ROWS`].
pub(crate) type GraphKey = (u64, usize, usize, usize);

pub(crate) fn graph_key(k: &StepKey) -> GraphKey {
    (
        k.cache_id,
        k.n_tokens,
        k.logits_rows,
        k.pos_end.div_ceil(PAD_ROWS),
    )
}

/// Cache rows attention reads in a graph step: `n` rounded up to
/// [`PAD_ROWS`], at most the cache's `capacity`.
pub(crate) fn padded_rows(n: usize, capacity: usize) -> usize {
    n.div_ceil(PAD_ROWS)
        .saturating_mul(PAD_ROWS)
        .min(capacity)
        .max(n)
}

/// Recording and replaying on CUDA.
#[cfg(feature = "cuda")]
pub(crate) mod cuda {
    use super::{graph_key, GraphKey, Mode, Step, MAX_GRAPHS};
    use crate::{candle_err, CandleBackend, CandleBuffer};
    use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Tensor};
    use std::sync::OnceLock;
    use std::time::Duration;
    use wasm_chord_core::backend::{BackendError, StepKey};

    /// A key's state: planned (sizes known), or recorded.
    pub(crate) enum Entry {
        Planned {
            n_u32: usize,
            n_f32: usize,
            out_len: usize,
        },
        Recorded(Box<Recorded>),
    }

    pub(crate) struct Recorded {
        graph: CudaGraph,
        hash: u64,
        arenas: (Tensor, Tensor),
        /// The graph copies the logits here (allocated outside it).
        out: Tensor,
    }

    // SAFETY: a CUDA graph may be used from any thread as long as calls on
    // it are not concurrent; `Recorded` lives in the backend's graph store
    // behind a mutex, and is launched with [`super::STREAM`] held.
    unsafe impl Send for Recorded {}

    const OP: &str = "run_step";

    fn device_err(detail: String) -> BackendError {
        BackendError::Device {
            backend: "cuda",
            op: OP,
            detail,
        }
    }

    /// Sets the step in progress for the calls of `f`, and clears it when
    /// dropped (also when `f` panics).
    struct StepScope<'a>(&'a CandleBackend);

    impl<'a> StepScope<'a> {
        fn begin(be: &'a CandleBackend, step: Step) -> Result<Self, BackendError> {
            be.graphs(OP)?.step = Some(step);
            Ok(Self(be))
        }

        fn finish(self) -> Result<Step, BackendError> {
            let st = self.0.graphs(OP)?.step.take();
            st.ok_or_else(|| device_err("the graph step went missing".into()))
        }
    }

    impl Drop for StepScope<'_> {
        fn drop(&mut self) {
            if let Ok(mut g) = self.0.graphs.lock() {
                g.step = None;
            }
        }
    }

    pub(crate) fn run_step<E: From<BackendError>>(
        be: &CandleBackend,
        key: &StepKey,
        f: impl FnOnce() -> Result<Option<CandleBuffer>, E>,
    ) -> Result<Option<CandleBuffer>, E> {
        let gk = graph_key(key);
        let next = {
            let mut g = be.graphs(OP)?;
            match g.entries.iter().position(|(k, _)| *k == gk) {
                None => None,
                Some(i) => {
                    let e = g.entries.remove(i);
                    let planned = match &e.1 {
                        Entry::Planned {
                            n_u32,
                            n_f32,
                            out_len,
                        } => Some((*n_u32, *n_f32, *out_len)),
                        Entry::Recorded(_) => None,
                    };
                    g.entries.insert(0, e);
                    Some(planned)
                }
            }
        };
        match next {
            None => plan(be, gk, f),
            Some(Some(sizes)) => record(be, gk, sizes, f),
            Some(None) => replay(be, gk, f),
        }
    }

    fn store(be: &CandleBackend, gk: GraphKey, e: Option<Entry>) -> Result<(), BackendError> {
        let mut g = be.graphs(OP)?;
        g.entries.retain(|(k, _)| *k != gk);
        if let Some(e) = e {
            g.entries.insert(0, (gk, e));
            g.entries.truncate(MAX_GRAPHS);
        }
        Ok(())
    }

    /// The first pass of a key: runs, and notes the sizes of its host values.
    fn plan<E: From<BackendError>>(
        be: &CandleBackend,
        gk: GraphKey,
        f: impl FnOnce() -> Result<Option<CandleBuffer>, E>,
    ) -> Result<Option<CandleBuffer>, E> {
        let dev = be.device.as_cuda_device().map_err(|e| candle_err(OP, e))?;
        // Fills candle's cache of layout uploads, which it must read from
        // while recording.
        let _htod_cache = dev.enable_cuda_graph_htod_cache();
        let t0 = std::time::Instant::now();
        let scope = StepScope::begin(be, Step::new(Mode::Plan, None))?;
        let r = f()?;
        let st = scope.finish()?;
        trace(format_args!(
            "plan: {:.2} ms, {} + {} host values",
            t0.elapsed().as_secs_f64() * 1e3,
            st.u32s.len(),
            st.f32s.len()
        ));
        if let Some(buf) = &r {
            let e = Entry::Planned {
                n_u32: st.u32s.len(),
                n_f32: st.f32s.len(),
                out_len: buf.0.elem_count(),
            };
            store(be, gk, Some(e))?;
        }
        Ok(r)
    }

    /// The second pass of a key: recorded under stream capture, then
    /// launched.
    fn record<E: From<BackendError>>(
        be: &CandleBackend,
        gk: GraphKey,
        (n_u32, n_f32, out_len): (usize, usize, usize),
        f: impl FnOnce() -> Result<Option<CandleBuffer>, E>,
    ) -> Result<Option<CandleBuffer>, E> {
        // Everything the graph reads or writes across launches is allocated
        // before the capture. What fails before the capture loses nothing:
        // graphs go off and the pass runs call by call.
        let prepared = (|| {
            let dev = be.device.as_cuda_device().map_err(|e| candle_err(OP, e))?;
            grow_mmvq_workspace(be)?;
            let zeros = |n: usize, dt| be.op(OP, Tensor::zeros(n.max(1), dt, &be.device));
            let out = zeros(out_len, DType::F32)?;
            let arenas = (zeros(n_u32, DType::U32)?, zeros(n_f32, DType::F32)?);
            Ok::<_, BackendError>((dev.clone(), out, arenas))
        })();
        let fall_back = |why: String| {
            trace(format_args!("not recording, graphs off: {why}"));
            be.set_graphs(false);
        };
        let (dev, out, arenas) = match prepared {
            Ok(p) => p,
            Err(e) => {
                fall_back(e.to_string());
                return f();
            }
        };
        let stream = dev.cuda_stream();
        // candle's own layout uploads come from its cache while capturing
        // (filled by the planning pass).
        let htod_cache = dev.enable_cuda_graph_htod_cache();
        let t0 = std::time::Instant::now();
        let begun =
            stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
        if let Err(e) = begun {
            drop(htod_cache);
            fall_back(format!("begin capture: {e}"));
            return f();
        }
        // Ends a capture that a panic in the pass would leave open.
        let open = OpenCapture(&stream);
        let captured = {
            let scope = StepScope::begin(be, Step::new(Mode::Record, Some(arenas.clone())));
            let r = scope.map_err(E::from).and_then(|scope| {
                let buf = f()?;
                let st = scope.finish()?;
                // The logits, copied out of the graph's own memory (then
                // freed inside the graph, so that it can launch again).
                let buf = buf.ok_or_else(|| device_err("the pass returned no logits".into()))?;
                let logits = be.op(OP, buf.0.narrow(0, 0, out_len))?;
                be.op(OP, out.slice_set(&logits, 0, 0))?;
                Ok(st)
            });
            let t1 = std::time::Instant::now();
            // Always end the capture, also when the pass failed.
            let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
            trace(format_args!(
                "record: capture {:.2} ms, instantiate {:.2} ms",
                (t1 - t0).as_secs_f64() * 1e3,
                t1.elapsed().as_secs_f64() * 1e3
            ));
            (r, graph)
        };
        drop(open);
        drop(htod_cache);
        let (st, graph) = match captured {
            (Ok(st), Ok(Some(graph))) => (st, graph),
            // Nothing of this pass ran: an error for the caller, and graphs
            // stay off from here on (set_graphs drops this key's entry).
            (Err(e), _) => {
                be.set_graphs(false);
                return Err(e);
            }
            (Ok(_), other) => {
                be.set_graphs(false);
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "empty graph".into(),
                };
                return Err(device_err(format!("recording the decode step: {why}")).into());
            }
        };
        let t2 = std::time::Instant::now();
        upload(be, &arenas, &st)?;
        graph
            .launch()
            .map_err(|e| device_err(format!("launch: {e}")))?;
        let copy = be.op(OP, out.copy())?;
        if trace_on() {
            be.device.synchronize().map_err(|e| candle_err(OP, e))?;
            trace(format_args!(
                "record: first launch {:.2} ms",
                t2.elapsed().as_secs_f64() * 1e3
            ));
        }
        let rec = Recorded {
            graph,
            hash: st.hash,
            arenas,
            out,
        };
        store(be, gk, Some(Entry::Recorded(Box::new(rec))))?;
        Ok(Some(CandleBuffer::new(copy)))
    }

    /// A later pass of a key: its calls only collect host values; then the
    /// arenas are uploaded and the graph launched.
    fn replay<E: From<BackendError>>(
        be: &CandleBackend,
        gk: GraphKey,
        f: impl FnOnce() -> Result<Option<CandleBuffer>, E>,
    ) -> Result<Option<CandleBuffer>, E> {
        let arenas = {
            let g = be.graphs(OP)?;
            match g.entries.first() {
                Some((k, Entry::Recorded(r))) if *k == gk => r.arenas.clone(),
                _ => return Err(device_err("no graph for the step".into()).into()),
            }
        };
        let t0 = std::time::Instant::now();
        let scope = StepScope::begin(be, Step::new(Mode::Replay, Some(arenas)))?;
        let r = f()?;
        let st = scope.finish()?;
        let t1 = std::time::Instant::now();
        if r.is_none() {
            return Err(device_err("the pass returned no logits".into()).into());
        }
        let g = be.graphs(OP)?;
        let Some((_, Entry::Recorded(rec))) = g.entries.iter().find(|(k, _)| *k == gk) else {
            return Err(device_err("no graph for the step".into()).into());
        };
        if rec.hash != st.hash {
            drop(g);
            store(be, gk, None)?;
            return Err(
                device_err("the pass's calls differ from the recorded graph's".into()).into(),
            );
        }
        upload(be, &rec.arenas, &st)?;
        rec.graph
            .launch()
            .map_err(|e| device_err(format!("launch: {e}")))?;
        let copy = be.op(OP, rec.out.copy())?;
        if trace_on() {
            let t2 = std::time::Instant::now();
            be.device.synchronize().map_err(|e| candle_err(OP, e))?;
            replay_trace(t0, t1 - t0, t2 - t1, t2.elapsed());
        }
        Ok(Some(CandleBuffer::new(copy)))
    }

    /// Mean host time of the last 128 replays: the calls' pass without
    /// device work, the uploads, launch and logits copy, and the wait for
    /// the device to finish them.
    fn replay_trace(start: std::time::Instant, pass: Duration, launch: Duration, wait: Duration) {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        use std::sync::Mutex;
        static N: AtomicU64 = AtomicU64::new(0);
        static SUMS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
        // The end of the previous replay: what the caller did in between.
        static LAST: Mutex<Option<std::time::Instant>> = Mutex::new(None);
        let between = match LAST.lock() {
            Ok(mut l) => {
                let b = l.map_or(Duration::ZERO, |e| start.saturating_duration_since(e));
                *l = Some(std::time::Instant::now());
                b
            }
            Err(_) => Duration::ZERO,
        };
        for (s, d) in SUMS.iter().zip([pass, launch, wait, between]) {
            s.fetch_add(d.as_nanos() as u64, Relaxed);
        }
        if N.fetch_add(1, Relaxed) % 128 == 127 {
            let m = SUMS.each_ref().map(|s| s.swap(0, Relaxed) as f64 / 128e3);
            trace(format_args!(
                "replay (mean of 128): pass {:.1} µs, upload + launch + copy {:.1} µs, \
                 then the device {:.1} µs; the caller between replays {:.1} µs",
                m[0], m[1], m[2], m[3]
            ));
        }
    }

    /// Ends the stream's capture, if one is still open, when dropped.
    struct OpenCapture<'a>(
        &'a std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
    );

    impl Drop for OpenCapture<'_> {
        fn drop(&mut self) {
            let none = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
            if self.0.capture_status().is_ok_and(|s| s != none) {
                // The graph of an abandoned capture is dropped unused.
                let _ = self.0.end_capture(sys::CUgraphInstantiate_flags(0));
            }
        }
    }

    /// Copies the staged host values into the device arenas (two copies,
    /// ordered on the stream before the launch that reads them).
    fn upload(
        be: &CandleBackend,
        arenas: &(Tensor, Tensor),
        st: &Step,
    ) -> Result<(), BackendError> {
        if !st.u32s.is_empty() {
            be.op(OP, arenas.0.inplace_op1(&Fill(&st.u32s)))?;
        }
        if !st.f32s.is_empty() {
            be.op(OP, arenas.1.inplace_op1(&Fill(&st.f32s)))?;
        }
        Ok(())
    }

    /// Copies host values into the front of a tensor.
    struct Fill<'a, T>(&'a [T]);

    macro_rules! fill {
        ($t:ty, $variant:ident) => {
            impl candle_core::InplaceOp1 for Fill<'_, $t> {
                fn name(&self) -> &'static str {
                    "wc-fill"
                }

                fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
                    let (CpuStorage::$variant(v), Some((a, b))) = (s, l.contiguous_offsets())
                    else {
                        candle_core::bail!("fill: not a contiguous {} tensor", stringify!($t));
                    };
                    if b - a < self.0.len() {
                        candle_core::bail!("fill: {} values into {}", self.0.len(), b - a);
                    }
                    v[a..a + self.0.len()].copy_from_slice(self.0);
                    Ok(())
                }

                fn cuda_fwd(&self, s: &mut CudaStorage, l: &Layout) -> candle_core::Result<()> {
                    let Some((a, b)) = l.contiguous_offsets() else {
                        candle_core::bail!("fill: not a contiguous tensor");
                    };
                    if b - a < self.0.len() {
                        candle_core::bail!("fill: {} values into {}", self.0.len(), b - a);
                    }
                    let dev = s.device.clone();
                    let slice = s.as_cuda_slice_mut::<$t>()?;
                    let mut dst = slice.slice_mut(a..a + self.0.len());
                    dev.memcpy_htod(self.0, &mut dst)
                }
            }
        };
    }
    fill!(u32, U32);
    fill!(f32, F32);

    /// candle's one-token quantized products share a per-device scratch
    /// buffer that grows (freeing the old one) when a product needs more.
    /// A graph holds its address, so it must never move once graphs
    /// exist: it is grown once to what 8 tokens (candle's largest batch
    /// for these kernels) of 131,072-wide rows need.
    /// `WASMCHORD_CUDA_GRAPHS_TRACE=1` prints the recording's timings.
    fn trace_on() -> bool {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| std::env::var("WASMCHORD_CUDA_GRAPHS_TRACE").is_ok_and(|v| v == "1"))
    }

    fn trace(args: std::fmt::Arguments<'_>) {
        if trace_on() {
            eprintln!("cuda graphs: {args}");
        }
    }

    fn grow_mmvq_workspace(be: &CandleBackend) -> Result<(), BackendError> {
        static GROWN: OnceLock<Result<(), String>> = OnceLock::new();
        let r = GROWN.get_or_init(|| grow(be).map_err(|e| e.to_string()));
        r.clone().map_err(device_err)
    }

    fn grow(be: &CandleBackend) -> Result<(), BackendError> {
        use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
        use candle_core::Module;
        const K: usize = 131_072;
        // Q8_0 blocks of 32 values, 34 bytes each, all zero; 8-aligned.
        let n_bytes = K / 32 * 34;
        let words = vec![0u64; n_bytes.div_ceil(8)];
        // SAFETY: `words` holds at least `n_bytes` initialized bytes and
        // outlives `bytes`.
        let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), n_bytes) };
        let storage = QStorage::from_data(
            std::borrow::Cow::Borrowed(bytes),
            &be.device,
            GgmlDType::Q8_0,
        )
        .map_err(|e| candle_err(OP, e))?;
        let qt = QTensor::new(storage, (1, K)).map_err(|e| candle_err(OP, e))?;
        let mm = QMatMul::QTensor(std::sync::Arc::new(qt));
        let x = be.op(OP, Tensor::zeros((8, K), DType::F32, &be.device))?;
        be.op(OP, mm.forward(&x))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_the_key_buckets() {
        // Two passes whose pos_end falls in one bucket pad to the same rows,
        // for any cache capacity (a sliding-window ring is smaller).
        for cap in [100, 256, 300, 512, 2048] {
            for a in 1..1200usize {
                let b = a.div_ceil(PAD_ROWS) * PAD_ROWS; // the last of a's bucket
                assert_eq!(
                    padded_rows(a.min(cap), cap),
                    padded_rows(b.min(cap), cap),
                    "pos_end {a} and {b}, capacity {cap}"
                );
            }
        }
        assert_eq!(padded_rows(1, 2048), 256);
        assert_eq!(padded_rows(257, 2048), 512);
        assert_eq!(padded_rows(257, 300), 300);
        assert_eq!(padded_rows(0, 2048), 0);
    }

    /// Runs `f` with `st` as the step in progress; returns what it staged.
    fn with_step<T>(be: &crate::CandleBackend, st: Step, f: impl FnOnce() -> T) -> (T, Step) {
        be.graphs.lock().unwrap().step = Some(st);
        let r = f();
        let st = be.graphs.lock().unwrap().step.take().unwrap();
        (r, st)
    }

    /// What a CUDA replay relies on, checked on candle's CPU device: a pass
    /// run without device work makes the calls, in the same order and with
    /// the same host values, as the pass it replays; every pass whose last
    /// position falls in one bucket makes the same calls; and the padded
    /// attention of a graph step gives the logits of the unpadded one,
    /// bit for bit. The tiny gemma3 has sliding-window layers (a ring of
    /// few cache rows) and global ones.
    #[test]
    fn replayed_passes_make_the_calls_of_their_plan() {
        use crate::{CandleBackend, CandleDevice};
        use candle_core::{DType, Device};
        use std::sync::Arc;
        use wasm_chord_core::gguf::GgufFile;
        use wasm_chord_runtime::synth::{generate, SynthSpec};
        use wasm_chord_runtime::{Logits, Model, Session, SessionConfig};

        let spec = SynthSpec::new(Some("gemma3"), "tiny", "q8_0", 5).unwrap();
        let file = Arc::new(GgufFile::from_bytes(generate(&spec).unwrap()).unwrap());
        let be = CandleBackend::new(CandleDevice::Cpu).unwrap();
        let model = Model::load(file, Arc::new(be.clone())).unwrap();
        let cfg = SessionConfig {
            n_ctx: 300,
            n_batch: 8,
        };
        let mut s = Session::new(&model, cfg).unwrap();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let toks: Vec<u32> = (0..300)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % model.n_vocab() as u64) as u32
            })
            .collect();
        s.forward(&toks[..8], Logits::Last).unwrap();
        let p = s.n_past();
        let tok = &toks[8..9];

        let want = s.forward(tok, Logits::Last).unwrap();
        s.truncate(p).unwrap();
        let (have, plan) = with_step(&be, Step::new(Mode::Plan, None), || {
            s.forward(tok, Logits::Last).unwrap()
        });
        assert_eq!(want, have, "padded attention changed the logits");
        assert!(!plan.u32s.is_empty() && !plan.f32s.is_empty());

        s.truncate(p).unwrap();
        let arenas = (
            Tensor::zeros(plan.u32s.len(), DType::U32, &Device::Cpu).unwrap(),
            Tensor::zeros(plan.f32s.len(), DType::F32, &Device::Cpu).unwrap(),
        );
        let (_, replay) = with_step(&be, Step::new(Mode::Replay, Some(arenas)), || {
            s.forward_device(tok).unwrap()
        });
        assert_eq!(replay.hash, plan.hash);
        assert_eq!(replay.u32s, plan.u32s);
        assert_eq!(replay.f32s, plan.f32s);

        // Planned passes at every later position: one set of calls per
        // bucket of PAD_ROWS positions, and host values that move.
        s.truncate(p).unwrap();
        let mut by_bucket: Vec<(usize, u64, usize, usize)> = Vec::new();
        for (i, t) in toks[8..].iter().enumerate() {
            let pos_end = p + i + 1;
            let (_, st) = with_step(&be, Step::new(Mode::Plan, None), || {
                s.forward(std::slice::from_ref(t), Logits::Last).unwrap()
            });
            let bucket = pos_end.div_ceil(PAD_ROWS);
            match by_bucket.iter().find(|b| b.0 == bucket) {
                Some(b) => assert_eq!(
                    (b.1, b.2, b.3),
                    (st.hash, st.u32s.len(), st.f32s.len()),
                    "pos_end {pos_end}"
                ),
                None => by_bucket.push((bucket, st.hash, st.u32s.len(), st.f32s.len())),
            }
        }
        assert_eq!(by_bucket.len(), 2, "positions up to 300 span two buckets");
        assert_ne!(by_bucket[0].1, by_bucket[1].1);
        assert!(by_bucket[1].2 > by_bucket[0].2, "more cache rows to mask");
    }

    #[test]
    fn the_hash_tells_calls_and_sizes_apart() {
        let run = |calls: &[(&str, &[usize])]| {
            let mut s = Step::new(Mode::Plan, None);
            for (op, sizes) in calls {
                s.note(op, sizes);
            }
            s.hash
        };
        let a = run(&[("matmul", &[1, 640]), ("attention", &[256])]);
        assert_eq!(a, run(&[("matmul", &[1, 640]), ("attention", &[256])]));
        assert_ne!(a, run(&[("matmul", &[1, 640]), ("attention", &[512])]));
        assert_ne!(a, run(&[("attention", &[256]), ("matmul", &[1, 640])]));
    }
}
