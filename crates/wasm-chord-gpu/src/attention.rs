//! Attention over the KV cache and device top-k: the two ops whose work is
//! split over several dispatches (scores, then probabilities·V, or row
//! ranges and their reduction; rounds of chunked selection).

use crate::context::Bind;
use crate::ops::{grid64, need, shape, u32_of, MAX_GROUPS};
use crate::{GpuBackend, GpuBuffer};
use wasm_chord_core::backend::{AttentionParams, Result};

const ATTN_COMMON: &str = include_str!("shaders/attn_common.wgsl");
const ATTN_STATS: &str = include_str!("shaders/attn_stats.wgsl");
const ATTN_PV: &str = include_str!("shaders/attn_pv.wgsl");
const ATTN_REDUCE: &str = include_str!("shaders/attn_reduce.wgsl");
const ATTN_SCORES: &str = include_str!("shaders/attn_scores.wgsl");
const ATTN_OUT: &str = include_str!("shaders/attn_out.wgsl");
const ATTN_ONE: &str = include_str!("shaders/attn_one.wgsl");
/// Most cache rows that decoding attention takes in one kernel
/// (`attn_one.wgsl`: one workgroup per (token, head) over all rows and
/// dimensions, the scores in workgroup memory) instead of two: it saves a
/// dispatch (~5 us on a discrete GPU) per layer, but has only (token, head)
/// workgroups, each reading all its rows twice, so it loses to the two
/// kernels' spread as the rows grow.
const ONE_MAX_ROWS: usize = 256;
/// `lane_sum` of `attn_one.wgsl` (the T lanes of a row added, every thread
/// calling it) by subgroup shuffles: a row's lanes are consecutive
/// invocations within one subgroup when subgroups are at least T wide.
const LANE_SUM_SUBGROUP: &str = "
fn lane_sum(lid: u32, x: f32) -> f32 {
    var s = x;
    for (var o = T / 2u; o > 0u; o >>= 1u) {
        s += subgroupShuffleXor(s, o);
    }
    return s;
}
";
/// `lane_sum` through workgroup memory (no subgroups).
const LANE_SUM_SHARED: &str = "
var<workgroup> lanes: array<f32, 256>;
fn lane_sum(lid: u32, x: f32) -> f32 {
    lanes[lid] = x;
    workgroupBarrier();
    var s = 0.0;
    if (lid % T == 0u) {
        for (var i = 0u; i < T; i++) {
            s += lanes[lid + i];
        }
    }
    workgroupBarrier();
    return s;
}
";
/// Largest (token, head) count and cache row count that take the two-kernel
/// path (`attn_scores`, then `attn_out`) instead of the three-kernel one
/// (`attn_stats`, `attn_pv`, `attn_reduce`, which splits the rows into
/// ranges and stores no score matrix).
///
/// Why these: a dispatch costs ~5 us of fixed latency on a discrete GPU, so
/// decoding wants as few as possible, but each must still spread over the
/// device (an H100/H200 has 132 SMs). `attn_scores` parallelizes over
/// (token, head) × rows / (256 / T) workgroups (T threads per row), which
/// is plenty at any size: 160 for Gemma-3-270M's 4 heads (head_dim 256,
/// T = 16) at 640 rows, 320 for Llama-3.2-1B's 32 heads (head_dim 64, T =
/// 4). `attn_out` cannot split the rows across workgroups (that is what
/// needs the reduce pass), only the head dimensions: (token, head) ×
/// head_dim / 8 workgroups (128 and 256 for those two shapes), each reading
/// one 32-byte sector (8 dimensions) of every V row with 128 row lanes,
/// i.e. rows / 128 rows per thread in steps of four.
/// At 4096 rows that is 32 rows (8 steps of L2 latency) and 128 KiB per
/// workgroup, about 1-2 us, the cost of the dispatch that the split path
/// adds; longer contexts split the rows instead. Tokens × heads only bound
/// the stored scores (256 × 4096 × 4 B = 4 MiB) and keep prompts, which
/// have (token, head) pairs enough to fill the device and amortize the
/// third dispatch over many tokens, on the path with no score matrix.
const FUSED_MAX_ITEMS: usize = 256;
const FUSED_MAX_ROWS: usize = 4096;
const TOP_K: &str = include_str!("shaders/top_k.wgsl");
/// Workgroups an attention call aims for: the cache rows are split into
/// ranges until (token, head) pairs × ranges reach it.
const ATTN_TARGET_GROUPS: usize = 1024;
/// Candidates per workgroup of the top-k kernel.
const TOPK_CHUNK: usize = 1024;
/// Largest k the device top-k takes (larger ones sort on the host).
const TOPK_MAX: usize = 256;

/// The parameter words the attention kernels share: tokens, heads, kv
/// heads, head_dim, cache rows, scale, soft-cap (0: none), window (0: none).
fn attn_params(p: &AttentionParams<'_>, n_slots: usize) -> Result<[u32; 8]> {
    Ok([
        u32_of("attention", p.query_positions.len())?,
        u32_of("attention", p.n_heads)?,
        u32_of("attention", p.n_kv_heads)?,
        u32_of("attention", p.head_dim)?,
        u32_of("attention", n_slots)?,
        p.scale.to_bits(),
        p.softcap.unwrap_or(0.0).to_bits(),
        p.window.unwrap_or(0),
    ])
}

impl GpuBackend {
    pub(crate) fn op_attention(
        &self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        p: &AttentionParams<'_>,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let (nh, nkv, hd) = (p.n_heads, p.n_kv_heads, p.head_dim);
        if nkv == 0 || nh % nkv != 0 {
            return Err(shape(
                "attention",
                format!("{nh} heads over {nkv} kv heads"),
            ));
        }
        if hd == 0 || hd > 256 || hd % 4 != 0 {
            return Err(shape(
                "attention",
                format!("head_dim {hd} (a multiple of 4, at most 256)"),
            ));
        }
        let n_tok = p.query_positions.len();
        let n_slots = p.cache_positions.len();
        need("attention", "q", q.len, n_tok * nh * hd)?;
        need("attention", "out", out.len, n_tok * nh * hd)?;
        need("attention", "k", k.len, n_slots * nkv * hd)?;
        need("attention", "v", v.len, n_slots * nkv * hd)?;
        if n_tok == 0 {
            return Ok(());
        }
        let kpos: Vec<u32> = p
            .cache_positions
            .iter()
            .map(|s| s.unwrap_or(u32::MAX))
            .collect();
        let items = n_tok * nh;
        if items as u64 > MAX_GROUPS * MAX_GROUPS {
            return Err(shape("attention", format!("{items} token heads")));
        }
        if items <= FUSED_MAX_ITEMS && n_slots <= ONE_MAX_ROWS {
            return self.attention_one(q, k, v, p, &kpos, out);
        }
        if items <= FUSED_MAX_ITEMS && n_slots <= FUSED_MAX_ROWS {
            return self.attention_fused(q, k, v, p, &kpos, out);
        }
        // Rows per range (a multiple of 16), so that enough workgroups run.
        let want = ATTN_TARGET_GROUPS.div_ceil(items).max(1);
        let per = n_slots.div_ceil(want).div_ceil(16).max(1) * 16;
        let splits = n_slots.div_ceil(per).max(1);
        let g = (
            splits as u32,
            items.min(MAX_GROUPS as usize) as u32,
            items.div_ceil(MAX_GROUPS as usize) as u32,
        );
        let mut params = attn_params(p, n_slots)?.to_vec();
        params.extend([splits as u32, u32_of("attention", per)?]);
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let stats = self.scratch("attn_stats", (items * splits * 8) as u64)?;
        let pipe = self
            .ctx
            .pipeline("attn_stats", || format!("{ATTN_COMMON}\n{ATTN_STATS}"));
        self.ctx.dispatch(
            "attn_stats",
            &pipe,
            &params,
            &[
                Bind::Buf(&q.buf),
                Bind::Buf(&k.buf),
                Bind::Data(p.query_positions),
                Bind::Data(&kpos),
                Bind::Buf(&stats),
            ],
            g,
        );
        let part = if splits == 1 {
            out.buf.clone()
        } else {
            self.scratch("attn_part", (items * splits * hd * 4) as u64)?
        };
        let pipe = self
            .ctx
            .pipeline("attn_pv", || format!("{ATTN_COMMON}\n{ATTN_PV}"));
        self.ctx.dispatch(
            "attn_pv",
            &pipe,
            &params,
            &[
                Bind::Buf(&q.buf),
                Bind::Buf(&k.buf),
                Bind::Buf(&v.buf),
                Bind::Data(p.query_positions),
                Bind::Data(&kpos),
                Bind::Buf(&stats),
                Bind::Buf(&part),
            ],
            g,
        );
        if splits > 1 {
            let n = items * hd;
            let (g, tx) = grid64(n as u64);
            let pipe = self.simple("attn_reduce", ATTN_REDUCE);
            self.ctx.dispatch(
                "attn_reduce",
                &pipe,
                &[u32_of("attention", n)?, tx, hd as u32, splits as u32],
                &[Bind::Buf(&part), Bind::Buf(&out.buf)],
                g,
            );
        }
        Ok(())
    }

    /// Decoding attention over at most [`ONE_MAX_ROWS`] rows in one
    /// dispatch (`attn_one.wgsl`), one workgroup per (token, head, slice of
    /// the head's dimensions).
    fn attention_one(
        &self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        p: &AttentionParams<'_>,
        kpos: &[u32],
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let (nh, hd) = (p.n_heads, p.head_dim);
        let items = p.query_positions.len() * nh;
        let hd4 = hd / 4;
        let params = attn_params(p, kpos.len())?;
        // Threads per row: at most four vec4 loads each.
        let t = hd4.div_ceil(4).next_power_of_two().min(16);
        let sg = self.subgroup_width() >= t && !cfg!(target_arch = "wasm32");
        // Slices of the head's dimensions per (token, head): halved (from
        // the whole head) until there are 32 workgroups or slices of two
        // vec4s, so that few heads (Gemma 3's 4) still spread the
        // probabilities·V loop over several workgroups.
        let mut sl = hd4;
        while items * (hd4 / sl) < 32 && sl % 2 == 0 && sl > 2 {
            sl /= 2;
        }
        let key = format!("attn_one_{t}_{hd4}_{sl}{}", if sg { "_sg" } else { "" });
        // (Native only: naga takes the subgroup builtins without the
        // `enable subgroups;` that browsers require.)
        let pipe = self.ctx.pipeline(&key, || {
            let lane_sum = if sg {
                LANE_SUM_SUBGROUP
            } else {
                LANE_SUM_SHARED
            };
            format!(
                "const T: u32 = {t}u;\nconst HD4: u32 = {hd4}u;\nconst SL: u32 = {sl}u;\n\
                 const MAXR: u32 = {ONE_MAX_ROWS}u;\n{lane_sum}\n{ATTN_ONE}"
            )
        });
        self.ctx.dispatch(
            "attn_one",
            &pipe,
            &params,
            &[
                Bind::Buf(&q.buf),
                Bind::Buf(&k.buf),
                Bind::Buf(&v.buf),
                Bind::Data(p.query_positions),
                Bind::Data(kpos),
                Bind::Buf(&out.buf),
            ],
            (
                (hd4 / sl) as u32,
                items.min(MAX_GROUPS as usize) as u32,
                items.div_ceil(MAX_GROUPS as usize) as u32,
            ),
        );
        Ok(())
    }

    /// Decoding attention in two dispatches: every score stored by
    /// `attn_scores`, then softmax and probabilities·V over all rows by
    /// `attn_out`, one workgroup per (token, head, 4·DV dimensions). See
    /// [`FUSED_MAX_ROWS`] for when it runs.
    fn attention_fused(
        &self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        p: &AttentionParams<'_>,
        kpos: &[u32],
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let (nh, hd) = (p.n_heads, p.head_dim);
        let n_tok = p.query_positions.len();
        let n_slots = kpos.len();
        let items = n_tok * nh;
        let hd4 = hd / 4;
        let params = attn_params(p, n_slots)?;
        let (gy, gz) = (
            items.min(MAX_GROUPS as usize) as u32,
            items.div_ceil(MAX_GROUPS as usize) as u32,
        );
        // Threads per row: at most four vec4 loads each.
        let t = hd4.div_ceil(4).next_power_of_two().min(16);
        let rows_per_group = 256 / t;
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let scores = self.scratch("attn_scores", (items * n_slots * 4) as u64)?;
        let pipe = self.ctx.pipeline(&format!("attn_scores_{t}_{hd4}"), || {
            format!("const T: u32 = {t}u;\nconst HD4: u32 = {hd4}u;\n{ATTN_SCORES}")
        });
        self.ctx.dispatch(
            "attn_scores",
            &pipe,
            &params,
            &[
                Bind::Buf(&q.buf),
                Bind::Buf(&k.buf),
                Bind::Data(p.query_positions),
                Bind::Data(kpos),
                Bind::Buf(&scores),
            ],
            (n_slots.div_ceil(rows_per_group) as u32, gy, gz),
        );
        // Two vec4s (a 32-byte sector of each V row) per workgroup, unless
        // that leaves fewer than 128 workgroups.
        let dv = if hd4 % 2 == 0 && items * hd4 / 2 >= 128 {
            2
        } else {
            1
        };
        let pipe = self.ctx.pipeline(&format!("attn_out_{dv}"), || {
            format!("const DV: u32 = {dv}u;\n{ATTN_OUT}")
        });
        self.ctx.dispatch(
            "attn_out",
            &pipe,
            &params[..5],
            &[Bind::Buf(&v.buf), Bind::Buf(&scores), Bind::Buf(&out.buf)],
            ((hd4 / dv) as u32, gy, gz),
        );
        Ok(())
    }

    /// A device buffer of at least `bytes` kept under `name` for reuse by
    /// later ops (they run in order, so one op's scratch is free again when
    /// the next one starts).
    pub(crate) fn scratch(&self, name: &'static str, bytes: u64) -> Result<wgpu::Buffer> {
        let mut map = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(name) {
            if b.size() >= bytes {
                return Ok(b.clone());
            }
        }
        let b = self.ctx.storage(bytes.next_power_of_two(), name)?;
        map.insert(name, b.clone());
        Ok(b)
    }

    /// Device top-k: rounds of the chunked selection kernel until one chunk
    /// is left, then one read-back of k (value, index) pairs.
    pub(crate) fn op_top_k(&self, x: &GpuBuffer, n: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        need("top_k", "x", x.len, n)?;
        let k = k.min(n);
        if k == 0 {
            return Ok(Vec::new());
        }
        if k > TOPK_MAX {
            let mut host = vec![0.0; n];
            self.download_sync(x, &mut host)?;
            return Ok(host_top_k(&host, k));
        }
        let pipe = self.simple("top_k", TOP_K);
        let mut src = x.buf.clone();
        let mut cand = n;
        let mut paired = 0u32;
        loop {
            let chunks = cand.div_ceil(TOPK_CHUNK);
            if chunks as u64 > MAX_GROUPS {
                return Err(shape("top_k", format!("{n} values")));
            }
            let dst = self.ctx.storage((chunks * k * 8) as u64, "top_k")?;
            self.ctx.dispatch(
                "top_k",
                &pipe,
                &[u32_of("top_k", cand)?, u32_of("top_k", k)?, paired],
                &[Bind::Buf(&src), Bind::Buf(&dst)],
                (chunks as u32, 1, 1),
            );
            src = dst;
            cand = chunks * k;
            paired = 1;
            if chunks == 1 {
                break;
            }
        }
        let bytes = self.ctx.read(&src, 0, (k * 8) as u64)?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        Ok(words
            .chunks_exact(2)
            .filter(|w| w[1] != u32::MAX)
            .map(|w| (w[1], f32::from_bits(w[0])))
            .collect())
    }

    fn download_sync(&self, x: &GpuBuffer, out: &mut [f32]) -> Result<()> {
        let bytes = self.ctx.read(&x.buf, 0, out.len() as u64 * 4)?;
        out.copy_from_slice(bytemuck::cast_slice(&bytes));
        Ok(())
    }
}

/// The `k` largest values, largest first (ties: lowest index; NaN skipped).
fn host_top_k(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = x
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, v))
        .collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    idx.truncate(k);
    idx
}
