//! The device, its queue, the pipeline cache and the recording of a forward
//! pass: every op appends a dispatch to one internal command encoder, and
//! the encoder is submitted every few dispatches (`set_submit_every`), when
//! the host needs a result (download, argmax, top-k) or when the parameter
//! arena is full.
//!
//! Small per-dispatch data (the kernel's parameter words, positions, token
//! ids, cache rows) is appended to a host-side arena and bound as slices of
//! one storage buffer; the arena is written to the device just before the
//! encoder is submitted, so recording a dispatch never waits on the GPU.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard};

use wasm_chord_core::backend::{BackendError, Result};

/// Bytes of the parameter arena (grown when one pass needs more).
const ARENA_BYTES: u64 = 1 << 20;

/// Dispatches per submission by default (see [`Ctx::set_submit_every`]).
const SUBMIT_EVERY: u64 = 16;

/// One binding of a dispatch, in binding order starting at 1 (binding 0 is
/// always the parameter words).
pub(crate) enum Bind<'a> {
    /// A whole device buffer.
    Buf(&'a wgpu::Buffer),
    /// Words appended to the arena for this dispatch.
    Data(&'a [u32]),
}

/// Timestamp queries around every compute pass, when the adapter has them
/// and profiling was asked for.
struct Profiler {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    /// Kernel name of each recorded pass of the current encoder.
    labels: Vec<&'static str>,
    /// Nanoseconds per kernel name, over all submissions.
    totals: HashMap<&'static str, (f64, u64)>,
}

/// A compiled kernel and its bind group layout (asked once).
pub(crate) struct Pipe {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// What is being recorded.
struct State {
    encoder: Option<wgpu::CommandEncoder>,
    /// The compute pass open on `encoder`: dispatches share one pass
    /// (wgpu orders them by their buffer usage) unless profiling, which
    /// needs a pass per dispatch for its timestamps.
    pass: Option<wgpu::ComputePass<'static>>,
    arena_host: Vec<u8>,
    arena: wgpu::Buffer,
    arena_cap: u64,
    staging: Option<wgpu::Buffer>,
    passes: u64,
    submits: u64,
    /// Host time spent recording dispatches and waiting for read-backs.
    record_ns: u64,
    wait_ns: u64,
    /// Record each dispatch in a compute pass of its own.
    pass_per_dispatch: bool,
    /// Submit after this many dispatches (0: only when a result is read),
    /// so that the device starts on the first layers while the host still
    /// records the last ones.
    submit_every: u64,
    /// Dispatches recorded since the last submission.
    pending: u64,
    profiler: Option<Profiler>,
}

/// The device and everything shared by the ops.
pub(crate) struct Ctx {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    align: u64,
    pipelines: Mutex<HashMap<String, Arc<Pipe>>>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ctx {
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        limits: wgpu::Limits,
        info: wgpu::AdapterInfo,
        features: wgpu::Features,
    ) -> Self {
        let align = u64::from(limits.min_storage_buffer_offset_alignment).max(16);
        let arena = make_arena(&device, ARENA_BYTES);
        Self {
            device,
            queue,
            limits,
            info,
            features,
            align,
            pipelines: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                encoder: None,
                pass: None,
                arena_host: Vec::new(),
                arena,
                arena_cap: ARENA_BYTES,
                staging: None,
                passes: 0,
                submits: 0,
                record_ns: 0,
                wait_ns: 0,
                pass_per_dispatch: false,
                submit_every: SUBMIT_EVERY,
                pending: 0,
                profiler: None,
            }),
        }
    }

    /// Turns on per-kernel timestamp queries (when the device has them).
    pub fn enable_profiling(&self) -> bool {
        if !self.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return false;
        }
        let capacity = 4096u32;
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps-resolve"),
            size: u64::from(capacity) * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut st = lock(&self.state);
        self.flush_locked(&mut st);
        st.profiler = Some(Profiler {
            set,
            resolve,
            capacity,
            labels: Vec::new(),
            totals: HashMap::new(),
        });
        true
    }

    /// Turns the timestamp queries off again (totals are dropped).
    pub fn disable_profiling(&self) {
        let mut st = lock(&self.state);
        self.flush_locked(&mut st);
        st.profiler = None;
    }

    /// Per-kernel totals: (name, milliseconds, passes), largest first.
    pub fn profile(&self) -> Vec<(&'static str, f64, u64)> {
        let st = lock(&self.state);
        let mut v: Vec<_> = st
            .profiler
            .as_ref()
            .map(|p| {
                p.totals
                    .iter()
                    .map(|(k, &(ns, n))| (*k, ns / 1e6, n))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// Records every dispatch in a compute pass of its own (`true`) or all
    /// dispatches of a submission in one pass (`false`, the default).
    pub fn set_pass_per_dispatch(&self, on: bool) {
        let mut st = lock(&self.state);
        self.flush_locked(&mut st);
        st.pass_per_dispatch = on;
    }

    /// Submits the recorded work after every `n` dispatches (0: only when
    /// the host reads a result).
    pub fn set_submit_every(&self, n: u64) {
        let mut st = lock(&self.state);
        st.submit_every = n;
    }

    /// Forgets the profile totals.
    pub fn reset_profile(&self) {
        if let Some(p) = lock(&self.state).profiler.as_mut() {
            p.totals.clear();
        }
    }

    /// (dispatches recorded, submissions, host ns recording, host ns
    /// waiting for read-backs) since creation.
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        let st = lock(&self.state);
        (st.passes, st.submits, st.record_ns, st.wait_ns)
    }

    /// A compute pipeline for `key`, compiled from `source()` on first use.
    pub fn pipeline(&self, key: &str, source: impl FnOnce() -> String) -> Arc<Pipe> {
        if let Some(p) = lock(&self.pipelines).get(key) {
            return Arc::clone(p);
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(key),
                source: wgpu::ShaderSource::Wgsl(source().into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(key),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipe { pipeline, layout });
        lock(&self.pipelines).insert(key.to_string(), Arc::clone(&p));
        p
    }

    /// A storage buffer of `bytes` (rounded up to 16, at least 16).
    pub fn storage(&self, bytes: u64, label: &str) -> Result<wgpu::Buffer> {
        let size = bytes.max(16).div_ceil(16) * 16;
        if size > self.limits.max_buffer_size {
            return Err(BackendError::OutOfMemory { bytes: size });
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `bytes` (padded with zeros).
    pub fn storage_with(&self, bytes: &[u8], label: &str) -> Result<wgpu::Buffer> {
        let buf = self.storage(bytes.len() as u64 + 4, label)?;
        let whole = bytes.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(&buf, 0, &bytes[..whole]);
        }
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.queue.write_buffer(&buf, whole as u64, &tail);
        }
        Ok(buf)
    }

    /// Records one compute pass: `pipeline` with the parameter words and
    /// `binds`, over `groups` workgroups.
    pub fn dispatch(
        &self,
        name: &'static str,
        pipe: &Pipe,
        params: &[u32],
        binds: &[Bind<'_>],
        groups: (u32, u32, u32),
    ) {
        #[cfg(not(target_arch = "wasm32"))]
        let t = std::time::Instant::now();
        self.record(name, pipe, params, binds, groups);
        #[cfg(not(target_arch = "wasm32"))]
        {
            lock(&self.state).record_ns += t.elapsed().as_nanos() as u64;
        }
    }

    fn record(
        &self,
        name: &'static str,
        pipe: &Pipe,
        params: &[u32],
        binds: &[Bind<'_>],
        groups: (u32, u32, u32),
    ) {
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return;
        }
        let mut st = lock(&self.state);
        // Room for the parameters and every data slice of this dispatch.
        let mut need = self.align + 64;
        for b in binds {
            if let Bind::Data(d) = b {
                need += (d.len() as u64 * 4).max(16).div_ceil(self.align) * self.align;
            }
        }
        if st.arena_host.len() as u64 + need > st.arena_cap {
            self.flush_locked(&mut st);
            if need > st.arena_cap {
                let cap = need.next_power_of_two();
                st.arena = make_arena(&self.device, cap);
                st.arena_cap = cap;
            }
        }
        let mut p = [0u32; 16];
        p[..params.len().min(16)].copy_from_slice(&params[..params.len().min(16)]);
        let p_off = push(&mut st.arena_host, bytemuck::cast_slice(&p), self.align);
        let mut slices = Vec::with_capacity(binds.len());
        for b in binds {
            if let Bind::Data(d) = b {
                let bytes: &[u8] = if d.is_empty() {
                    &[0u8; 16]
                } else {
                    bytemuck::cast_slice(d)
                };
                let off = push(&mut st.arena_host, bytes, self.align);
                slices.push((off, bytes.len().max(16) as u64));
            } else {
                slices.push((0, 0));
            }
        }
        let arena = st.arena.clone();
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &arena,
                offset: p_off,
                size: NonZeroU64::new(64),
            }),
        }];
        for (i, (b, &(off, len))) in binds.iter().zip(&slices).enumerate() {
            let resource = match b {
                Bind::Buf(buf) => buf.as_entire_binding(),
                Bind::Data(_) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &arena,
                    offset: off,
                    size: NonZeroU64::new(len.div_ceil(4) * 4),
                }),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource,
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &pipe.layout,
            entries: &entries,
        });
        let st = &mut *st;
        if st.profiler.is_none() && !st.pass_per_dispatch {
            if st.pass.is_none() {
                let encoder = st.encoder.get_or_insert_with(|| {
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("pass"),
                        })
                });
                st.pass = Some(
                    encoder
                        .begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("forward"),
                            timestamp_writes: None,
                        })
                        .forget_lifetime(),
                );
            }
            if let Some(pass) = st.pass.as_mut() {
                pass.set_pipeline(&pipe.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            }
            st.passes += 1;
            st.pending += 1;
            if st.submit_every > 0 && st.pending >= st.submit_every {
                self.flush_locked(st);
            }
            return;
        }
        st.pass = None;
        let encoder = st.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("pass"),
                })
        });
        let mut ts = None;
        if let Some(prof) = st.profiler.as_mut() {
            let i = prof.labels.len() as u32;
            if 2 * i + 2 <= prof.capacity {
                prof.labels.push(name);
                ts = Some(wgpu::ComputePassTimestampWrites {
                    query_set: &prof.set,
                    beginning_of_pass_write_index: Some(2 * i),
                    end_of_pass_write_index: Some(2 * i + 1),
                });
            }
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(name),
                timestamp_writes: ts,
            });
            pass.set_pipeline(&pipe.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
        st.passes += 1;
        let full = st
            .profiler
            .as_ref()
            .is_some_and(|p| 2 * p.labels.len() as u32 + 2 > p.capacity);
        if full {
            self.flush_locked(st);
        }
    }

    /// Records a buffer-to-buffer copy.
    pub fn copy(&self, src: &wgpu::Buffer, src_off: u64, dst: &wgpu::Buffer, dst_off: u64, n: u64) {
        if n == 0 {
            return;
        }
        let mut st = lock(&self.state);
        // A copy cannot be recorded inside the open compute pass.
        st.pass = None;
        let encoder = st.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("pass"),
                })
        });
        encoder.copy_buffer_to_buffer(src, src_off, dst, dst_off, n);
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) {
        let mut st = lock(&self.state);
        self.flush_locked(&mut st);
    }

    fn flush_locked(&self, st: &mut State) {
        // Ends the open pass before the encoder is finished.
        st.pass = None;
        st.pending = 0;
        if !st.arena_host.is_empty() {
            self.queue.write_buffer(&st.arena, 0, &st.arena_host);
            st.arena_host.clear();
        }
        let Some(mut encoder) = st.encoder.take() else {
            return;
        };
        let mut resolved = None;
        if let Some(prof) = st.profiler.as_mut() {
            let n = prof.labels.len() as u32;
            if n > 0 {
                encoder.resolve_query_set(&prof.set, 0..2 * n, &prof.resolve, 0);
                let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps-read"),
                    size: u64::from(2 * n) * 8,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.copy_buffer_to_buffer(&prof.resolve, 0, &read, 0, u64::from(2 * n) * 8);
                resolved = Some((read, std::mem::take(&mut prof.labels)));
            }
        }
        self.queue.submit(Some(encoder.finish()));
        st.submits += 1;
        if let Some((read, labels)) = resolved {
            // Profiling is a native benchmark aid: it waits for the GPU.
            if let Ok(bytes) = self.map_blocking(&read, read.size()) {
                let ts: &[u64] = bytemuck::cast_slice(&bytes);
                let period = f64::from(self.queue.get_timestamp_period());
                if let Some(prof) = st.profiler.as_mut() {
                    for (i, name) in labels.iter().enumerate() {
                        let dt = ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * period;
                        let e = prof.totals.entry(name).or_insert((0.0, 0));
                        e.0 += dt;
                        e.1 += 1;
                    }
                }
            }
        }
    }

    /// Starts reading `bytes` bytes of `src` from `offset`: submits what is
    /// recorded, copies into a staging buffer and asks for it to be mapped.
    /// The returned future completes when the bytes are on the host (after
    /// a device poll natively; by itself in browsers).
    pub fn read_async(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> impl std::future::Future<Output = Result<Vec<u8>>> + '_ {
        let size = bytes.div_ceil(4) * 4;
        let staging = {
            let mut st = lock(&self.state);
            self.flush_locked(&mut st);
            let staging = match st.staging.take() {
                Some(b) if b.size() >= size.max(4) => b,
                _ => self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staging"),
                    size: size.max(4).next_power_of_two(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            };
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("read"),
                });
            if size > 0 {
                enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
            }
            self.queue.submit(Some(enc.finish()));
            st.submits += 1;
            staging
        };
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size.max(4), move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        async move {
            let mapped = rx
                .await
                .map_err(|_| not_available("the map request was dropped"))?;
            mapped.map_err(|e| not_available(&format!("buffer map failed: {e}")))?;
            let out = {
                let view = staging
                    .get_mapped_range(0..size.max(4))
                    .map_err(|e| not_available(&format!("mapped range: {e:?}")))?;
                view[..bytes as usize].to_vec()
            };
            staging.unmap();
            lock(&self.state).staging = Some(staging);
            Ok(out)
        }
    }

    /// [`Ctx::read_async`], blocking (native only: a browser cannot wait).
    pub fn read(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let t = std::time::Instant::now();
            let r = pollster::block_on(self.read_async(src, offset, bytes));
            lock(&self.state).wait_ns += t.elapsed().as_nanos() as u64;
            r
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (src, offset, bytes);
            Err(not_available(
                "blocking read-back is impossible in a browser; use download_async",
            ))
        }
    }

    fn map_blocking(&self, buf: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        buf.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        let mut rx = rx;
        match rx.try_recv() {
            Ok(Some(Ok(()))) => {}
            _ => return Err(not_available("timestamp read-back not ready")),
        }
        let out = buf
            .get_mapped_range(0..size)
            .map_err(|e| not_available(&format!("mapped range: {e:?}")))?
            .to_vec();
        buf.unmap();
        Ok(out)
    }
}

fn make_arena(device: &wgpu::Device, cap: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("arena"),
        size: cap,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Appends `bytes` at the next multiple of `align` and returns its offset.
fn push(host: &mut Vec<u8>, bytes: &[u8], align: u64) -> u64 {
    let off = (host.len() as u64).div_ceil(align) * align;
    host.resize(off as usize, 0);
    host.extend_from_slice(bytes);
    if bytes.len() < 16 {
        host.resize(off as usize + 16, 0);
    }
    off
}

pub(crate) fn not_available(reason: &str) -> BackendError {
    BackendError::NotAvailable {
        backend: "webgpu",
        reason: reason.to_string(),
    }
}
