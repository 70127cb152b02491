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
//!
//! Bind groups are made once and reused: the arena bindings (parameter
//! words and data slices) have dynamic offsets in explicit layouts, so a
//! bind group only depends on the pipeline, the bound buffers and the size
//! class of each data slice, and the cache finds it again on the next token.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard};

use wasm_chord_core::backend::{BackendError, Result};

/// Bytes of the parameter arena (grown when one pass needs more).
const ARENA_BYTES: u64 = 1 << 20;

/// Dispatches per submission by default (see [`Ctx::set_submit_every`]).
const SUBMIT_EVERY: u64 = 16;

/// Bind groups kept for reuse; the cache is emptied when it holds more.
const MAX_GROUPS: usize = 4096;

/// Most bindings of one kernel (binding 0 included).
const MAX_BINDS: usize = 12;

/// One binding of a dispatch, in binding order starting at 1 (binding 0 is
/// always the parameter words).
#[derive(Clone, Copy)]
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

/// A kernel: its shader module and the pipelines made from it, one per
/// way of binding it (which bindings are arena slices), made on first use.
pub(crate) struct Pipe {
    key: String,
    module: wgpu::ShaderModule,
    /// Bindings the source declares read-only (bit per binding number).
    read_only: u64,
    variants: Mutex<Vec<Arc<Variant>>>,
}

/// A compiled pipeline for one binding shape: `n` bindings, of which those
/// in `data` (bit per binding, binding 0 always) are arena slices bound
/// with dynamic offsets when `dynamic`.
struct Variant {
    id: u64,
    n: usize,
    data: u64,
    dynamic: bool,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// A bind group kept for reuse, with what it binds.
struct Cached {
    variant: u64,
    /// The bound buffer per binding (`None` for arena slices).
    bufs: [Option<wgpu::Buffer>; MAX_BINDS],
    /// Bound size class per binding (arena slices only).
    sizes: [u64; MAX_BINDS],
    group: wgpu::BindGroup,
}

/// Bind groups by hash of (variant, buffers, sizes).
#[derive(Default)]
struct Groups {
    map: HashMap<u64, Vec<Cached>>,
    len: usize,
    /// Bind groups created (cache misses) and reused (hits).
    made: u64,
    reused: u64,
}

impl Groups {
    fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }
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
    /// Host time of submissions: ending the pass, writing the arena and
    /// finishing the encoder (`finish_ns`), `queue.submit` (`submit_ns`;
    /// with a CPU adapter this includes running the work).
    finish_ns: u64,
    submit_ns: u64,
    /// Record each dispatch in a compute pass of its own.
    pass_per_dispatch: bool,
    /// Submit after this many dispatches (0: only when a result is read),
    /// so that the device starts on the first layers while the host still
    /// records the last ones.
    submit_every: u64,
    /// Dispatches recorded since the last submission.
    pending: u64,
    /// Submissions since the host last waited for a result.
    since_read: u32,
    profiler: Option<Profiler>,
    groups: Groups,
}

/// The device and everything shared by the ops.
pub(crate) struct Ctx {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    align: u64,
    next_variant: std::sync::atomic::AtomicU64,
    pipelines: Mutex<HashMap<String, Arc<Pipe>>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("adapter", &self.info.name)
            .finish()
    }
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
            next_variant: std::sync::atomic::AtomicU64::new(1),
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
                finish_ns: 0,
                submit_ns: 0,
                pass_per_dispatch: false,
                submit_every: SUBMIT_EVERY,
                pending: 0,
                since_read: 0,
                profiler: None,
                groups: Groups::default(),
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

    /// (bind groups created, bind groups reused, host ns finishing
    /// encoders, host ns in `queue.submit`) since creation.
    pub fn host_counters(&self) -> (u64, u64, u64, u64) {
        let st = lock(&self.state);
        (st.groups.made, st.groups.reused, st.finish_ns, st.submit_ns)
    }

    /// A compute pipeline for `key`, compiled from `source()` on first use.
    pub fn pipeline(&self, key: &str, source: impl FnOnce() -> String) -> Arc<Pipe> {
        if let Some(p) = lock(&self.pipelines).get(key) {
            return Arc::clone(p);
        }
        let source = source();
        let read_only = read_only_bindings(&source);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(key),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let p = Arc::new(Pipe {
            key: key.to_string(),
            module,
            read_only,
            variants: Mutex::new(Vec::new()),
        });
        lock(&self.pipelines).insert(key.to_string(), Arc::clone(&p));
        p
    }

    /// The pipeline of `pipe` for `n` bindings of which `data` (bits) are
    /// arena slices, compiled on first use.
    fn variant(&self, pipe: &Pipe, n: usize, data: u64) -> Arc<Variant> {
        let mut vs = lock(&pipe.variants);
        if let Some(v) = vs.iter().find(|v| v.n == n && v.data == data) {
            return Arc::clone(v);
        }
        let dynamic = data.count_ones()
            <= self.limits.max_dynamic_storage_buffers_per_pipeline_layout
            && n <= MAX_BINDS;
        let entries: Vec<_> = (0..n as u32)
            .map(|i| wgpu::BindGroupLayoutEntry {
                binding: i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: pipe.read_only >> i & 1 == 1,
                    },
                    has_dynamic_offset: dynamic && data >> i & 1 == 1,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&pipe.key),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&pipe.key),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&pipe.key),
                layout: Some(&pl),
                module: &pipe.module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        let v = Arc::new(Variant {
            id: self
                .next_variant
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            n,
            data,
            dynamic,
            pipeline,
            layout,
        });
        vs.push(Arc::clone(&v));
        v
    }

    /// Drops the cached bind groups that bind `buf` (called when a buffer
    /// is freed, so that the cache does not keep it alive).
    pub fn forget(&self, buf: &wgpu::Buffer) {
        let mut st = lock(&self.state);
        let g = &mut st.groups;
        let mut removed = 0;
        g.map.retain(|_, v| {
            let before = v.len();
            v.retain(|c| !c.bufs.iter().any(|b| b.as_ref() == Some(buf)));
            removed += before - v.len();
            !v.is_empty()
        });
        g.len -= removed;
    }

    /// Records zeroing `buf` (in order with the recorded dispatches).
    pub fn clear(&self, buf: &wgpu::Buffer) {
        let mut st = lock(&self.state);
        // A clear cannot be recorded inside the open compute pass.
        st.pass = None;
        let encoder = st.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("pass"),
                })
        });
        encoder.clear_buffer(buf, 0, None);
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
        let n = binds.len() + 1;
        let mut data = 1u64;
        for (i, b) in binds.iter().enumerate() {
            if matches!(b, Bind::Data(_)) {
                data |= 1 << (i + 1);
            }
        }
        let variant = self.variant(pipe, n, data);
        let mut st = lock(&self.state);
        // Bound size of each arena slice: its bytes rounded up to a power
        // of two, so that a bind group serves every slice of that class.
        let mut sizes = [0u64; MAX_BINDS];
        // Room for the parameters and every data slice of this dispatch
        // (a slice's whole class must fit below the arena's end).
        let mut need = self.align + 64;
        for (i, b) in binds.iter().enumerate() {
            if let Bind::Data(d) = b {
                let class = size_class(d.len() as u64 * 4);
                if let Some(s) = sizes.get_mut(i + 1) {
                    *s = class;
                }
                need += self.align + class;
            }
        }
        sizes[0] = 64;
        if st.arena_host.len() as u64 + need > st.arena_cap {
            self.flush_locked(&mut st);
            if need > st.arena_cap {
                let cap = need.next_power_of_two();
                st.arena = make_arena(&self.device, cap);
                st.arena_cap = cap;
                // Cached bind groups bind the old arena.
                st.groups.clear();
            }
        }
        let mut p = [0u32; 16];
        p[..params.len().min(16)].copy_from_slice(&params[..params.len().min(16)]);
        let mut offsets = [0u32; MAX_BINDS];
        let mut n_off = 0;
        offsets[0] = push(&mut st.arena_host, bytemuck::cast_slice(&p), self.align) as u32;
        let mut slices = [(0u64, 0u64); MAX_BINDS];
        slices[0] = (u64::from(offsets[0]), 64);
        n_off += 1;
        for (i, b) in binds.iter().enumerate() {
            if let Bind::Data(d) = b {
                let bytes: &[u8] = if d.is_empty() {
                    &[0u8; 16]
                } else {
                    bytemuck::cast_slice(d)
                };
                let off = push(&mut st.arena_host, bytes, self.align);
                if variant.dynamic {
                    offsets[n_off] = off as u32;
                    n_off += 1;
                } else if let Some(s) = slices.get_mut(i + 1) {
                    *s = (off, (bytes.len().max(16) as u64).div_ceil(4) * 4);
                }
            }
        }
        let st = &mut *st;
        let bind_group = if variant.dynamic {
            let hash = group_hash(variant.id, binds, &sizes[..n]);
            let found = st.groups.map.get(&hash).and_then(|v| {
                v.iter()
                    .find(|c| same_group(c, variant.id, binds, &sizes[..n]))
                    .map(|c| c.group.clone())
            });
            match found {
                Some(g) => {
                    st.groups.reused += 1;
                    g
                }
                None => {
                    let group = self.make_group(name, &variant, &st.arena, binds, &sizes, None);
                    if st.groups.len >= MAX_GROUPS {
                        st.groups.clear();
                    }
                    let mut bufs: [Option<wgpu::Buffer>; MAX_BINDS] = Default::default();
                    for (slot, b) in bufs[1..].iter_mut().zip(binds) {
                        if let Bind::Buf(buf) = b {
                            *slot = Some((*buf).clone());
                        }
                    }
                    st.groups.map.entry(hash).or_default().push(Cached {
                        variant: variant.id,
                        bufs,
                        sizes,
                        group: group.clone(),
                    });
                    st.groups.len += 1;
                    st.groups.made += 1;
                    group
                }
            }
        } else {
            n_off = 0;
            st.groups.made += 1;
            self.make_group(name, &variant, &st.arena, binds, &sizes, Some(&slices))
        };
        let offsets = &offsets[..n_off];
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
                pass.set_pipeline(&variant.pipeline);
                pass.set_bind_group(0, &bind_group, offsets);
                pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            }
            st.passes += 1;
            st.pending += 1;
            // After a read-back the device is idle: the first submissions
            // are smaller (2, 4, 8, ... dispatches) so that it starts
            // while the host records the rest.
            let ramp = 2u64 << st.since_read.min(8);
            if st.submit_every > 0 && st.pending >= st.submit_every.min(ramp) {
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
            pass.set_pipeline(&variant.pipeline);
            pass.set_bind_group(0, &bind_group, offsets);
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

    /// A bind group for `variant`: arena slices at offset 0 with their
    /// class size (dynamic offsets), or at `slices` (offset, bytes) when the
    /// variant has no dynamic offsets.
    fn make_group(
        &self,
        name: &'static str,
        variant: &Variant,
        arena: &wgpu::Buffer,
        binds: &[Bind<'_>],
        sizes: &[u64; MAX_BINDS],
        slices: Option<&[(u64, u64); MAX_BINDS]>,
    ) -> wgpu::BindGroup {
        let arena_slice = |i: usize| {
            let (offset, size) = match slices {
                Some(s) => s[i],
                None => (0, sizes[i]),
            };
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: arena,
                offset,
                size: NonZeroU64::new(size),
            })
        };
        let mut entries = Vec::with_capacity(binds.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: arena_slice(0),
        });
        for (i, b) in binds.iter().enumerate() {
            let resource = match b {
                Bind::Buf(buf) => buf.as_entire_binding(),
                Bind::Data(_) => arena_slice(i + 1),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource,
            });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &variant.layout,
            entries: &entries,
        })
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
        #[cfg(not(target_arch = "wasm32"))]
        let t = std::time::Instant::now();
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
        let commands = encoder.finish();
        #[cfg(not(target_arch = "wasm32"))]
        let t = {
            st.finish_ns += t.elapsed().as_nanos() as u64;
            std::time::Instant::now()
        };
        self.queue.submit(Some(commands));
        #[cfg(not(target_arch = "wasm32"))]
        {
            st.submit_ns += t.elapsed().as_nanos() as u64;
        }
        st.submits += 1;
        st.since_read = st.since_read.saturating_add(1);
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
            st.since_read = 0;
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

/// Bound size of an arena slice of `bytes`: a power of two, at least 16.
fn size_class(bytes: u64) -> u64 {
    bytes.max(16).next_power_of_two()
}

/// Which bindings `source` declares `var<storage, read>` (bit per binding).
fn read_only_bindings(source: &str) -> u64 {
    let mut bits = 0u64;
    let mut rest = source;
    while let Some(at) = rest.find("@binding(") {
        rest = &rest[at + 9..];
        let Some(close) = rest.find(')') else { break };
        let Ok(n) = rest[..close].trim().parse::<u32>() else {
            continue;
        };
        let decl = rest.find(';').map_or(rest, |e| &rest[..e]);
        let read_only = decl
            .find("var<")
            .and_then(|v| decl[v..].find('>').map(|e| &decl[v..v + e]))
            .is_some_and(|q| !q.contains("read_write"));
        if read_only && n < 64 {
            bits |= 1 << n;
        }
    }
    bits
}

/// A cheap hash of a bind group's key (variant, bound buffers, slice sizes).
fn group_hash(variant: u64, binds: &[Bind<'_>], sizes: &[u64]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = FxHasher(variant.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for (b, s) in binds.iter().zip(&sizes[1..]) {
        match b {
            Bind::Buf(buf) => buf.hash(&mut h),
            Bind::Data(_) => h.write_u64(*s),
        }
    }
    h.finish()
}

/// Whether `c` is the bind group for this variant, buffers and sizes.
fn same_group(c: &Cached, variant: u64, binds: &[Bind<'_>], sizes: &[u64]) -> bool {
    c.variant == variant
        && binds.len() < MAX_BINDS
        && binds.iter().enumerate().all(|(i, b)| match b {
            Bind::Buf(buf) => c.bufs[i + 1].as_ref() == Some(*buf),
            Bind::Data(_) => c.bufs[i + 1].is_none() && c.sizes[i + 1] == sizes[i + 1],
        })
        && c.bufs[binds.len() + 1..].iter().all(Option::is_none)
}

/// The multiply-rotate hash of rustc's FxHasher.
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
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
