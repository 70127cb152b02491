//! The ops: argument checks on the host, then one or more recorded
//! dispatches of the WGSL kernels in `shaders/`.

use crate::context::{Bind, Pipe};
use crate::weight::wgsl_name;
use crate::{GpuBackend, GpuBuffer, GpuWeight, Quantized, NAME};
use wasm_chord_core::backend::{BackendError, GluKind, QkRope, Result, RopeKind, RopeParams};
use wasm_chord_core::GgmlType;

const DEQUANT: &str = include_str!("shaders/dequant.wgsl");
const MATVEC: &str = include_str!("shaders/matvec.wgsl");
const MATVEC32: &str = include_str!("shaders/matvec32.wgsl");
const MATMUL: &str = include_str!("shaders/matmul.wgsl");
const MATMUL_F16: &str = include_str!("shaders/matmul_f16.wgsl");
const TILE_IO: &str = include_str!("shaders/tile_io.wgsl");
const EMBED: &str = include_str!("shaders/embed.wgsl");
const QUANTIZE: &str = include_str!("shaders/quantize.wgsl");
const QUANTIZE_Q8: &str = include_str!("shaders/quantize_q8.wgsl");
const DOT_Q8: &str = include_str!("shaders/dot_q8.wgsl");
const DOT_Q8_PAIR: &str = include_str!("shaders/dot_q8_pair.wgsl");
const DEQ_Q8: &str = include_str!("shaders/deq_q8.wgsl");
const MATMUL_Q8: &str = include_str!("shaders/matmul_q8.wgsl");
const NORM_Q8: &str = include_str!("shaders/norm_q8.wgsl");
const Q8_IN: &str = include_str!("shaders/q8_in.wgsl");
const Q8_ROUND: &str = include_str!("shaders/q8_round.wgsl");
const RMS_NORM: &str = include_str!("shaders/rms_norm.wgsl");
const ADD_RMS_NORM: &str = include_str!("shaders/add_rms_norm.wgsl");
const ROPE: &str = include_str!("shaders/rope.wgsl");
const ADD: &str = include_str!("shaders/add.wgsl");
const ADD_BIAS: &str = include_str!("shaders/add_bias.wgsl");
const MAP: &str = include_str!("shaders/map.wgsl");
const GLU: &str = include_str!("shaders/glu.wgsl");
const GLU_ACT: &str = include_str!("shaders/glu_act.wgsl");

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
    kv_st(is_q, i, v);
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
fn raw_in(is_q: bool, base: u32, j: u32, hd: u32) -> f32 {
    if (j < hd) { return raw(is_q, base + j); }
    return 0.0;
}
fn norm_scale(is_q: bool, base: u32, hd: u32, lid: u32) -> f32 {
    // Four values loaded at once (a head of 256 in one step), summed in
    // the order of a loop over them.
    var s = 0.0;
    for (var j = lid; j < hd; j += 4u * WG) {
        let v0 = raw_in(is_q, base, j, hd);
        let v1 = raw_in(is_q, base, j + WG, hd);
        let v2 = raw_in(is_q, base, j + 2u * WG, hd);
        let v3 = raw_in(is_q, base, j + 3u * WG, hd);
        s += v0 * v0;
        s += v1 * v1;
        s += v2 * v2;
        s += v3 * v3;
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
    kv_st(is_q, i, v);
}
";

/// `qk_rope.wgsl`'s cache hooks when it only rotates.
const QK_ROPE_NO_KV: &str = "
fn kv_st(is_q: bool, i: u32, x: f32) {}
fn kv_copy(is_q: bool, base: u32, t: u32, hd: u32, lid: u32) {}
";

/// `qk_rope.wgsl`'s cache hooks when it also writes the layer's new cache
/// rows (as `write_kv.wgsl`, rounded to f16): each rotated k value as it
/// is stored, and v's head by the workgroup of the same k head. The
/// bindings follow the variant's own from B0 on; the cache rows are in d
/// from word p[12].
const QK_ROPE_KV: &str = "
@group(0) @binding(B0) var<storage, read> vsrc: array<f32>;
@group(0) @binding(B1) var<storage, read_write> kd: array<f32>;
@group(0) @binding(B2) var<storage, read_write> vd: array<f32>;

fn kv_f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}
fn kv_st(is_q: bool, i: u32, x: f32) {
    if (!is_q) {
        let w = p[9] * p[2];
        kd[d[p[12] + i / w] * w + i % w] = kv_f16r(x);
    }
}
fn kv_copy(is_q: bool, base: u32, t: u32, hd: u32, lid: u32) {
    if (!is_q) {
        let w = p[9] * p[2];
        let o = d[p[12] + t] * w + base % w;
        // Two values loaded at once, then stored.
        for (var j = lid; j < hd; j += 2u * WG) {
            let j1 = min(j + WG, hd - 1u);
            let v0 = vsrc[base + j];
            let v1 = vsrc[base + j1];
            vd[o + j] = kv_f16r(v0);
            if (j + WG < hd) {
                vd[o + j1] = kv_f16r(v1);
            }
        }
    }
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
        "{body}\n{DEQUANT}\nfn deq4(base: u32, i: u32) -> vec4<f32> {{ return deq4_{ty}(base, i); }}\n"
    )
}

/// How the matrix-vector kernel adds up a row's partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduce {
    /// A tree in workgroup memory (no subgroups).
    Tree,
    /// A butterfly of subgroup shuffles: a row's threads are an aligned
    /// part of one subgroup.
    Shuffle,
    /// Shuffles within each subgroup, then the row's subgroups through
    /// workgroup memory: a row spans whole subgroups.
    AcrossSubgroups,
}

/// Threads a matrix-vector dispatch aims for (see [`matvec_shape`]).
/// Measured on an H200 (gemma3-270m, tg128): 64k to 16M threads per
/// dispatch moved tokens/s within noise, but 256k took the 262k-row
/// vocabulary product from 482 to 314 µs.
const MV_THREADS: usize = 1 << 18;

/// Threads per row, threads per workgroup and reduction of the
/// matrix-vector kernel for `rows` rows of `cols` values (a multiple of
/// 32), given the adapter's subgroup widths (`sg_min == 0`: no subgroups).
///
/// A thread takes one 32-value sub-block at a time. A row of `n`
/// sub-blocks gets up to about `n` threads (a power of two, at most 256),
/// fewer when the rows alone fill the device: the dispatch aims at about
/// [`MV_THREADS`] threads, so that a few rows (a Llama-1B down projection:
/// 2,048 rows of 256 sub-blocks) are not walked by a few threads one
/// sub-block after another, and many rows (a vocabulary of 128k) do not
/// start millions of threads that each load one sub-block and spend the
/// rest of their short life on the reduction. Workgroups have at least 64
/// threads (several short rows each), and rows at least 8 threads (one per
/// token of the batch for the store).
fn matvec_shape(cols: usize, rows: usize, sg_min: u32, sg_max: u32) -> (u32, u32, Reduce) {
    let nsb = (cols / 32).max(1) as u32;
    let per_row = (MV_THREADS / rows.max(1)).clamp(1, 256) as u32;
    let per_row = 1u32 << (31 - per_row.leading_zeros());
    // At least 8: lane t of a row stores the row's sum for token t.
    let tpr = nsb
        .next_power_of_two()
        .min(per_row)
        .clamp(MV_TOKENS as u32, 256);
    let (tpr, reduce) = if sg_min == 0 {
        (tpr, Reduce::Tree)
    } else if tpr <= sg_min {
        (tpr, Reduce::Shuffle)
    } else {
        (tpr.max(sg_max).min(256), Reduce::AcrossSubgroups)
    };
    (tpr, tpr.max(64), reduce)
}

/// Renames, in WGSL source, every identifier for which `f` gives a name
/// (comments and numbers are left as they are).
fn rename_idents(src: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(src.len() + src.len() / 8);
    let mut rest = src;
    while let Some(c) = rest.chars().next() {
        let len = if rest.starts_with("//") {
            rest.find('\n').unwrap_or(rest.len())
        } else if c.is_ascii_alphabetic() || c == '_' {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let id = &rest[..n];
            match f(id) {
                Some(name) => out.push_str(&name),
                None => out.push_str(id),
            }
            rest = &rest[n..];
            continue;
        } else if c.is_ascii_digit() {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len())
        } else {
            c.len_utf8()
        };
        out.push_str(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

/// `dequant.wgsl` (with `int_dot`, followed by `dot_q8.wgsl`) for the
/// weight bound as `w{s}`: its functions get the suffix `_{s}`. With
/// `pair` (a Q4_K weight on 8-bit activations), the weight is bound as
/// 16-byte words, the decoders read their words through `w_at`, and
/// `dot_q8_pair.wgsl` is appended.
fn dequant_for(s: usize, int_dot: bool, pair: bool) -> String {
    let src = if pair {
        format!(
            "{}\n{DOT_Q8_PAIR}",
            word_reads_to_calls(&format!("{DEQUANT}\n{DOT_Q8}"))
        )
    } else if int_dot {
        format!("{DEQUANT}\n{DOT_Q8}")
    } else {
        DEQUANT.to_string()
    };
    let names: Vec<&str> = src
        .split("fn ")
        .skip(1)
        .filter_map(|t| t.split('(').next())
        .collect();
    rename_idents(&src, |id| {
        if id == "w" || id == "wv" {
            Some(format!("w{s}"))
        } else if id == "Sb" {
            Some(format!("Sb_{s}"))
        } else if names.contains(&id) {
            Some(format!("{id}_{s}"))
        } else {
            None
        }
    })
}

/// WGSL source with every read of the word array `w` (`w[i]`) made a call
/// of `w_at(i)` (comments are left as they are).
fn word_reads_to_calls(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len() + b.len() / 16);
    // For each open bracket: whether it opened a read of `w`.
    let mut open = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            out.extend_from_slice(&b[i..end]);
            i = end;
            continue;
        }
        let read = b[i] == b'w'
            && b.get(i + 1) == Some(&b'[')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if read {
            out.extend_from_slice(b"w_at(");
            open.push(true);
            i += 2;
            continue;
        }
        match b[i] {
            b'[' => open.push(false),
            b']' if open.pop() == Some(true) => {
                out.push(b')');
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were replaced, by ASCII bytes.
    String::from_utf8(out).unwrap_or_else(|_| src.to_string())
}

/// The reductions of `matvec32.wgsl`: `reduce(acc, nt, slot, lane, sg)`
/// returns, to the thread of lane t < nt, the row's sum for token t. `sg`
/// is (subgroup id, subgroup size, lane in the subgroup).
fn matvec_reduce(reduce: Reduce) -> &'static str {
    match reduce {
        Reduce::Tree => {
            "fn reduce(acc: array<f32, 8>, nt: u32, slot: u32, lane: u32, sg: vec3<u32>) -> f32 {
    for (var t = 0u; t < nt; t++) {
        red[t * WG + slot] = acc[t];
    }
    workgroupBarrier();
    for (var h = TPR / 2u; h > 0u; h >>= 1u) {
        if (lane < h) {
            for (var t = 0u; t < nt; t++) {
                red[t * WG + slot] += red[t * WG + slot + h];
            }
        }
        workgroupBarrier();
    }
    let v = red[min(lane, 7u) * WG + slot - lane];
    workgroupBarrier();
    return v;
}
"
        }
        Reduce::Shuffle => {
            "fn reduce(acc: array<f32, 8>, nt: u32, slot: u32, lane: u32, sg: vec3<u32>) -> f32 {
    var out = 0.0;
    for (var t = 0u; t < nt; t++) {
        var v = acc[t];
        for (var h = TPR / 2u; h > 0u; h >>= 1u) {
            v += subgroupShuffleXor(v, h);
        }
        if (t == lane) {
            out = v;
        }
    }
    return out;
}
"
        }
        Reduce::AcrossSubgroups => {
            "fn reduce(acc: array<f32, 8>, nt: u32, slot: u32, lane: u32, sg: vec3<u32>) -> f32 {
    // The row's threads within one subgroup: the whole subgroup, as the
    // host chose TPR from the adapter's widths, or TPR of them should a
    // subgroup be wider than the adapter said (then still correct).
    let w = min(TPR, sg.y);
    for (var t = 0u; t < nt; t++) {
        var v = acc[t];
        for (var h = w / 2u; h > 0u; h >>= 1u) {
            v += subgroupShuffleXor(v, h);
        }
        if (slot % w == 0u) {
            red[t * WG + slot / w] = v;
        }
    }
    workgroupBarrier();
    let per = TPR / w;
    let first = (slot / TPR) * per;
    var v = 0.0;
    if (lane < nt) {
        for (var j = 0u; j < per; j++) {
            v += red[lane * WG + first + j];
        }
    }
    workgroupBarrier();
    return v;
}
"
        }
    }
}

/// `matvec32.wgsl` for weights of the WGSL type names `types` (one to
/// three, each with its own output; with `dual`, two: the gate and the up
/// weight, whose products meet in one gated output). Weight S reads the
/// input bound as `x{xmap[S]}` (weights whose types round the input alike
/// share one binding), as 8-bit integers where `int[S]` (one token).
/// With `q8_in` (one weight on 8-bit activations: the input's Q8_0 (0) or
/// Q8_K (1) mode and its length), the kernel quantizes its f32 input
/// itself (`q8_in.wgsl`) instead of binding quantized activations.
#[allow(clippy::too_many_arguments)]
fn matvec_source(
    types: &[&str],
    xmap: &[usize],
    tpr: u32,
    wg: u32,
    reduce: Reduce,
    dual: bool,
    nt_max: usize,
    int: &[bool],
    group: &[u32],
    q8_in: Option<(u32, usize)>,
) -> String {
    let n = types.len();
    let mut binds = String::new();
    let mut b = 1;
    let mut bind = |name: String, access: &str, ty: &str| {
        binds += &format!("@group(0) @binding({b}) var<storage, {access}> {name}: {ty};\n");
        b += 1;
    };
    for (s, &g) in group.iter().enumerate() {
        // Q4_K pairs read the weight as 16-byte words.
        let words = if g == 2 {
            "array<vec4<u32>>"
        } else {
            "array<u32>"
        };
        bind(format!("w{s}"), "read", words);
    }
    for j in 0..=xmap.iter().copied().max().unwrap_or(0) {
        let packed = xmap.iter().zip(int).any(|(&x, &i)| x == j && i);
        if q8_in.is_some() {
            // The f32 input; `x0` is the workgroup's quantized copy.
            bind("xin".to_string(), "read", "array<vec4<f32>>");
            continue;
        }
        let ty = if packed {
            "array<vec4<u32>>"
        } else {
            "array<vec4<f32>>"
        };
        bind(format!("x{j}"), "read", ty);
    }
    for s in 0..if dual { 1 } else { n } {
        bind(format!("y{s}"), "read_write", "array<f32>");
    }
    let mut dots = String::new();
    let mut pre = "";
    if let Some((mode, cols)) = q8_in {
        dots += &rename_idents(&format!("{Q8_IN}\n{Q8_ROUND}"), |id| {
            (id == "xq").then(|| "x0".to_string())
        })
        .replace("XQLEN", &(cols / 16 + cols.div_ceil(64)).to_string())
        .replace("BG", if mode == 1 { "16u" } else { "2u" })
        .replace("MODE_K", if mode == 1 { "true" } else { "false" });
        pre = "q8_in(lid);\n    ";
    }
    for (s, ty) in types.iter().enumerate() {
        let xs = xmap[s];
        dots += &dequant_for(s, int[s], group[s] == 2);
        let rb = 6 + 3 * s;
        if group[s] == 4 {
            // Q6_K on 8-bit activations: four sub-blocks (half a block) a
            // step (`idot4_q6_k`); word mo + 2qi (+1) of the activations
            // holds sub-blocks 4qi, 4qi + 1 (4qi + 2, 4qi + 3)'s scales and
            // sums.
            dots += &format!(
                "
fn dot_{s}(r: u32, lane: u32, nt: u32, t0: u32) -> array<f32, 8> {{
    var acc: array<f32, 8>;
    let base = r * p[{rb}u];
    let nq = p[0] / 128u;
    let mo = p[0] / 16u;
    for (var qi = lane; qi < nq; qi += TPR) {{
        let v = 8u * qi;
        let m01 = x{xs}[mo + 2u * qi];
        let m23 = x{xs}[mo + 2u * qi + 1u];
        let t = idot4_q6_k_{s}(base, qi, x{xs}[v], x{xs}[v + 1u], x{xs}[v + 2u], x{xs}[v + 3u],
            x{xs}[v + 4u], x{xs}[v + 5u], x{xs}[v + 6u], x{xs}[v + 7u]);
        acc[0] += bitcast<f32>(m01.x) * t.x;
        acc[0] += bitcast<f32>(m01.z) * t.y;
        acc[0] += bitcast<f32>(m23.x) * t.z;
        acc[0] += bitcast<f32>(m23.z) * t[3];
    }}
    return acc;
}}
"
            );
            continue;
        }
        if group[s] == 2 {
            // Q4_K on 8-bit activations: two sub-blocks a step
            // (`dot_q8_pair.wgsl`); word 4pr + k of the activations holds
            // values 16(4pr + k).., word mo + pr the two sub-blocks'
            // scales and sums.
            dots += &format!(
                "
fn dot_{s}(r: u32, lane: u32, nt: u32, t0: u32) -> array<f32, 8> {{
    var acc: array<f32, 8>;
    let base = r * p[{rb}u];
    let npr = p[0] / 64u;
    let mo = p[0] / 16u;
    for (var pr = lane; pr < npr; pr += TPR) {{
        let m = x{xs}[mo + pr];
        let t = idot2_q4_k_{s}(base, pr, x{xs}[4u * pr], x{xs}[4u * pr + 1u],
            x{xs}[4u * pr + 2u], x{xs}[4u * pr + 3u], bitcast<i32>(m.y), bitcast<i32>(m.w));
        acc[0] += bitcast<f32>(m.x) * t.x;
        acc[0] += bitcast<f32>(m.z) * t.y;
    }}
    return acc;
}}
"
            );
            continue;
        }
        if int[s] {
            // One token, 8-bit activations (`quantize_q8.wgsl`): integer
            // dot products per sub-block, then the activations' scale.
            dots += &format!(
                "
fn dot_{s}(r: u32, lane: u32, nt: u32, t0: u32) -> array<f32, 8> {{
    var acc: array<f32, 8>;
    let base = r * p[{rb}u];
    let nsb = p[0] / 32u;
    let mo = p[0] / 16u;
    for (var sb = lane; sb < nsb; sb += TPR) {{
        let m = x{xs}[mo + sb / 2u];
        let h = 2u * (sb & 1u);
        let a = x{xs}[2u * sb];
        let b = x{xs}[2u * sb + 1u];
        acc[0] += bitcast<f32>(m[h]) * idot_{ty}_{s}(base, sb, a, b, bitcast<i32>(m[h + 1u]));
    }}
    return acc;
}}
"
            );
            continue;
        }
        if nt_max == 1 {
            // One token: each 4 values are multiplied as they are decoded
            // (`sb_*`, `sbv_*`), so a thread holds no array of 32 values.
            dots += &format!(
                "
fn dot_{s}(r: u32, lane: u32, nt: u32, t0: u32) -> array<f32, 8> {{
    var acc: array<f32, 8>;
    let base = r * p[{rb}u];
    let nv = p[0] / 4u;
    let nsb = p[0] / 32u;
    for (var sb = lane; sb < nsb; sb += TPR) {{
        let sbi = sb_{ty}_{s}(base, sb * 32u);
        let xo = t0 * nv + sb * 8u;
        var d = vec4<f32>(0.0);
        for (var k = 0u; k < 8u; k++) {{
            d += sbv_{ty}_{s}(sbi, k) * x{xs}[xo + k];
        }}
        acc[0] += (d.x + d.y) + (d.z + d.w);
    }}
    return acc;
}}
"
            );
            continue;
        }
        // Up to 8 tokens: each 4 decoded values are multiplied with every
        // token's as they are decoded. The per-token sums are named
        // variables, not an array indexed by the token loop: drivers may
        // place such an array in local memory (it cost the tiled kernel 5x
        // on NVIDIA).
        let mut body = String::new();
        for t in 0..8 {
            body += &format!(
                "            if (nt > {t}u) {{ d{t} += w4 * x{xs}[xo + {t}u * nv + k]; }}\n"
            );
        }
        let decl: String = (0..8)
            .map(|t| format!("        var d{t} = vec4<f32>(0.0);\n"))
            .collect();
        let add: String = (0..8)
            .map(|t| format!("        a{t} += (d{t}.x + d{t}.y) + (d{t}.z + d{t}.w);\n"))
            .collect();
        dots += &format!(
            "
fn dot_{s}(r: u32, lane: u32, nt: u32, t0: u32) -> array<f32, 8> {{
    var a0 = 0.0; var a1 = 0.0; var a2 = 0.0; var a3 = 0.0;
    var a4 = 0.0; var a5 = 0.0; var a6 = 0.0; var a7 = 0.0;
    let base = r * p[{rb}u];
    let nv = p[0] / 4u;
    let nsb = p[0] / 32u;
    for (var sb = lane; sb < nsb; sb += TPR) {{
        let sbi = sb_{ty}_{s}(base, sb * 32u);
        let xo = t0 * nv + sb * 8u;
{decl}        for (var k = 0u; k < 8u; k++) {{
            let w4 = sbv_{ty}_{s}(sbi, k);
{body}        }}
{add}    }}
    return array<f32, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
}}
"
        );
    }
    let (sg_args, slot, sg) = if reduce == Reduce::Tree {
        ("", "let slot = lid;", "vec3<u32>(0u)")
    } else {
        (
            ", @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_size) sg_size: u32, \
             @builtin(subgroup_invocation_id) sg_lane: u32",
            // Rows are assigned by subgroup position, so that a row's lanes
            // are aligned parts of subgroups whatever the driver's layout of
            // invocations into subgroups.
            "let slot = sg_id * sg_size + sg_lane;",
            "vec3<u32>(sg_id, sg_size, sg_lane)",
        )
    };
    // Where lane t of a row's threads stores the row's sum for token t.
    let store_at = |s: usize| -> String {
        if s == 0 {
            "(t0 + lane) * p[14] + p[15] + r".to_string()
        } else {
            format!("(t0 + lane) * p[{}u] + r", 5 + 3 * s)
        }
    };
    let body = if dual {
        format!(
            "var ag: array<f32, 8>;
    var au: array<f32, 8>;
    if (ok) {{
        ag = dot_0(r, lane, cnt, t0);
        au = dot_1(r, lane, cnt, t0);
    }}
    let vg = reduce(ag, cnt, slot, lane, {sg});
    let vu = reduce(au, cnt, slot, lane, {sg});
    if (ok && lane < cnt) {{
        y0[{at}] = glu_act(vg, p[4]) * vu;
    }}",
            at = store_at(0)
        )
    } else {
        let mut calls = String::new();
        let mut stores = String::new();
        for s in 0..n {
            let els = if s == 0 { "" } else { " else" };
            calls += &format!("{els} if (s == {s}u) {{ acc = dot_{s}(r, lane, cnt, t0); }}");
            stores += &format!("{els} if (s == {s}u) {{ y{s}[{}] = v; }}", store_at(s));
        }
        format!(
            "var acc: array<f32, 8>;
    if (ok) {{
       {calls}
    }}
    let v = reduce(acc, cnt, slot, lane, {sg});
    if (ok && lane < cnt) {{
       {stores}
    }}"
        )
    };
    // Browsers' WGSL compilers require the directive; naga (native) rejects
    // it and takes the subgroup builtins as they are.
    let enable = if reduce != Reduce::Tree && cfg!(target_arch = "wasm32") {
        "enable subgroups;\n"
    } else {
        ""
    };
    let src = MATVEC32
        .replace("//BINDINGS", &binds)
        .replace("//DOTS", &dots)
        .replace("//REDUCE", matvec_reduce(reduce))
        .replace("//SGARGS", sg_args)
        .replace("//SLOT", &format!("{pre}{slot}"))
        .replace("//BODY", &body)
        .replace("REDSIZE", &(nt_max as u32 * wg).to_string())
        .replace("WGSIZE", &wg.to_string())
        .replace("NSEG", &format!("{n}u"))
        .replace("TPR", &format!("{tpr}u"))
        .replace("array<f32, 8>", &format!("array<f32, {nt_max}>"))
        .replace("min(lane, 7u)", &format!("min(lane, {}u)", nt_max - 1));
    // One token (generation): the count is a constant, so the loops over
    // tokens unroll and the sums stay in registers.
    let src = if nt_max == 1 {
        src.replace("let cnt = p[1];", "let cnt = 1u;")
            .replace("t < nt;", "t < 1u;")
    } else {
        src
    };
    let src = format!("{enable}{src}");
    if dual {
        format!("{src}\n{GLU_ACT}")
    } else {
        src
    }
}

/// The cache rows `qk_rope` writes along with the rotation: v, the two
/// caches and the row of each token.
pub(crate) struct KvRows<'a> {
    pub v: &'a GpuBuffer,
    pub k_dst: &'a GpuBuffer,
    pub v_dst: &'a GpuBuffer,
    pub rows: &'a [usize],
}

/// One weight of a matrix-vector dispatch: the weight, the part of it this
/// dispatch reads, the input rounded for its type and the output (the
/// weight's rows per token, this part's rows from `part.first`).
struct MvSeg<'a> {
    w: &'a GpuWeight,
    part: &'a crate::weight::Part,
    act: &'a wgpu::Buffer,
    out: &'a wgpu::Buffer,
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

/// `total` of `add_rms_norm.wgsl` by subgroups: each subgroup's sum, then
/// the subgroups' sums in workgroup memory (two barriers instead of nine).
const SUBGROUP_TOTAL: &str = "
var<private> sg_lane: u32;
var<private> sg_id: u32;
var<private> sg_num: u32;

fn total(lid: u32, s: f32) -> f32 {
    let t = subgroupAdd(s);
    if (sg_lane == 0u) {
        red[sg_id] = t;
    }
    workgroupBarrier();
    var r = 0.0;
    for (var i = 0u; i < sg_num; i++) {
        r += red[i];
    }
    workgroupBarrier();
    return r;
}
";

/// The first `quantized` mode of 8-bit activations kept as integers: Q8_0
/// blocks, then Q8_K blocks (the quantize kernel's modes 0 and 1).
const PACKED_Q8_0: u32 = 3;

/// WGSL names of the types with an integer dot product (`dot_q8.wgsl`)
/// against 8-bit activations.
const INT_DOT_TYPES: [&str; 6] = ["q8_0", "q4_0", "q5_0", "q4_k", "q5_k", "q6_k"];

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

    /// Whether `quantized` holds `x`'s first `n` values rounded as `mode`
    /// says.
    fn has_quantized(&self, x: &GpuBuffer, n: usize, mode: u32) -> bool {
        let cache = self.quantized.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&mode)
            .is_some_and(|q| q.key == (x.id, x.version, n))
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
        // Modes from PACKED_Q8_0 on are the 8-bit forms of modes 0 and 1
        // (`norm_q8.wgsl`: a byte per value, then two words per 32-value
        // sub-block); the others are f32 per value.
        let packed = mode >= PACKED_Q8_0;
        let bytes = if packed {
            n as u64 + n as u64 / 4
        } else {
            n as u64 * 4
        };
        let buf = match cache.remove(&mode) {
            Some(q) if q.buf.size() >= bytes => q.buf,
            _ => self.ctx.storage(bytes, "quantized activations")?,
        };
        if packed {
            // 2048 values per workgroup; the output bound as q0 (Q8_0) or
            // qk (Q8_K), the other binding unused.
            let pipe = self.ctx.pipeline("quantize_q8", || {
                format!(
                    "{QUANTIZE_Q8}\n{}\n{Q8_ROUND}",
                    NORM_Q8.replace("ROWLEN", "2048")
                )
            });
            let unused = self.scratch("unused binding", 16)?;
            let (q0, qk) = if mode == PACKED_Q8_0 {
                (&buf, &unused)
            } else {
                (&unused, &buf)
            };
            let (g, gx) = grid((n as u64).div_ceil(2048));
            self.ctx.dispatch(
                "quantize",
                &pipe,
                &[u32_of("matmul", n)?, mode - PACKED_Q8_0, gx],
                &[Bind::Buf(&x.buf), Bind::Buf(q0), Bind::Buf(qk)],
                g,
            );
        } else {
            let pipe = self.simple("quantize", QUANTIZE);
            let (g, gx) = grid((n as u64).div_ceil(256));
            self.ctx.dispatch(
                "quantize",
                &pipe,
                &[u32_of("matmul", n)?, mode, gx],
                &[Bind::Buf(&x.buf), Bind::Buf(&buf)],
                g,
            );
        }
        cache.insert(
            mode,
            Quantized {
                key,
                buf: buf.clone(),
            },
        );
        Ok(buf)
    }

    /// Records a norm kernel (`rms_norm.wgsl` or `add_rms_norm.wgsl`, its
    /// `binds` and parameters `p` without the last word) for `n_rows` rows
    /// of `dim` into `out`. With one row and 8-bit activations on, its
    /// variant with `norm_q8.wgsl` also writes `out` quantized (Q8_0, and
    /// Q8_K where `dim` is a multiple of 256) where the next products look
    /// for it, so they need no quantize dispatch.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_norm(
        &self,
        name: &'static str,
        src: &'static str,
        p: &[u32],
        binds: &[Bind<'_>],
        g: (u32, u32, u32),
        n_rows: usize,
        dim: usize,
        out: &GpuBuffer,
    ) -> Result<()> {
        // The row in workgroup memory next to the kernels' own < 6 KiB.
        let fits =
            dim * 4 + 6 * 1024 <= self.ctx.limits.max_compute_workgroup_storage_size as usize;
        let fuse =
            n_rows == 1 && dim.is_multiple_of(32) && dim <= 32 * 256 && fits && self.int_dot();
        // Workgroup totals by subgroup sums where the kernel has a `total`
        // to swap (natively: browsers' WGSL lacks `subgroup_id` today).
        let sg =
            src.contains("//TOTAL") && self.subgroup_width() > 0 && !cfg!(target_arch = "wasm32");
        // The kernel's source, built only when its pipeline is compiled.
        let source = || {
            if sg {
                src.replace("fn total(", "fn total_tree(")
                    .replace("//TOTAL", SUBGROUP_TOTAL)
                    .replace(
                        "//SGARGS",
                        ", @builtin(subgroup_invocation_id) sgl: u32, \
                         @builtin(subgroup_id) sgi: u32, @builtin(num_subgroups) sgn: u32",
                    )
                    .replace("//SGSET", "sg_lane = sgl; sg_id = sgi; sg_num = sgn;")
            } else {
                src.to_string()
            }
        };
        let variant = if sg { "_sg" } else { "" };
        if !fuse {
            let pipe = self.ctx.pipeline(&format!("{name}{variant}"), || {
                format!("{}\nfn keep(i: u32, v: f32) {{}}", source())
            });
            self.ctx.dispatch(name, &pipe, p, binds, g);
            return Ok(());
        }
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut cache = self.quantized.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = dim as u64 + dim as u64 / 4;
        let with_k = dim.is_multiple_of(256);
        // The Q8_0 and Q8_K buffers; an unwritten one keeps its entry.
        let mut bufs = Vec::new();
        for (mode, write) in [(PACKED_Q8_0, true), (PACKED_Q8_0 + 1, with_k)] {
            let old = cache.remove(&mode);
            let buf = match &old {
                Some(q) if q.buf.size() >= bytes || !write => q.buf.clone(),
                _ => self.ctx.storage(bytes, "quantized activations")?,
            };
            let key = if write {
                (out.id, out.version, dim)
            } else {
                old.map_or((u64::MAX, 0, 0), |q| q.key)
            };
            bufs.push((mode, key, buf));
        }
        let pipe = self.ctx.pipeline(&format!("{name}{variant}_q8_{dim}"), || {
            let n = binds.len() + 1;
            let decl = format!(
                "@group(0) @binding({n}) var<storage, read_write> q0: array<u32>;\n\
                 @group(0) @binding({}) var<storage, read_write> qk: array<u32>;\n",
                n + 1
            );
            let tail = format!("q8_tail(lid, dim, p[{}]);", p.len());
            let q8 = format!(
                "{}\n{Q8_ROUND}",
                NORM_Q8.replace("ROWLEN", &dim.to_string())
            );
            format!("{decl}{}\n{q8}", source().replace("//TAIL", &tail))
        });
        let mut p = p.to_vec();
        p.push(1 | if with_k { 2 } else { 0 });
        let mut all: Vec<Bind<'_>> = binds.to_vec();
        all.extend(bufs.iter().map(|(_, _, b)| Bind::Buf(b)));
        self.ctx.dispatch(name, &pipe, &p, &all, g);
        for (mode, key, buf) in bufs {
            cache.insert(mode, Quantized { key, buf });
        }
        Ok(())
    }

    /// Records the matrix-vector kernel over `segs` (one to three weights
    /// reading the same input; with `glu`, the gate and up weights of one
    /// gated output) for `n_tokens` (at most [`MV_TOKENS`] at a time).
    ///
    /// With `q8_in`, `segs` is one weight on 8-bit activations for one
    /// token whose `act` is the f32 input: the kernel quantizes it itself
    /// (see [`GpuBackend::set_q8_in_max`]) where the row fits its
    /// workgroup memory and the workgroups times the row's length are at
    /// most that limit; otherwise nothing is recorded and the answer is
    /// `Ok(false)`.
    fn matvec(
        &self,
        segs: &[MvSeg<'_>],
        cols: usize,
        n_tokens: usize,
        glu: Option<GluKind>,
        q8_in: bool,
    ) -> Result<bool> {
        let sg = self.subgroup_width() as u32;
        let sg_max = if sg == 0 {
            0
        } else {
            self.ctx.info.subgroup_max_size.max(sg)
        };
        let rows = if glu.is_some() {
            segs[0].part.rows
        } else {
            segs.iter().map(|s| s.part.rows).sum()
        };
        // The callers checked the types (`matmul_input`).
        let types: Vec<&str> = segs
            .iter()
            .map(|s| wgsl_name(s.w.ty).unwrap_or("f32"))
            .collect();
        // The profile's name: which products and, for a single weight,
        // whether it is a vocabulary-sized output.
        let name = match (glu.is_some(), segs.len()) {
            (true, _) => "matvec_glu",
            (false, 3) => "matvec_qkv",
            _ if segs[0].part.rows >= 65_536 => "matvec_vocab",
            _ => "matvec",
        };
        let used = if glu.is_some() { &segs[..1] } else { segs };
        // Which weights take 8-bit activations: the rule `matmul_input`
        // quantized their inputs by.
        let int: Vec<bool> = segs
            .iter()
            .map(|s| self.int_dot_for(s.w, n_tokens))
            .collect();
        // Each distinct rounded input is bound once.
        let mut acts: Vec<&wgpu::Buffer> = Vec::new();
        let xmap: Vec<usize> = segs
            .iter()
            .map(|s| match acts.iter().position(|&a| a == s.act) {
                Some(j) => j,
                None => {
                    acts.push(s.act);
                    acts.len() - 1
                }
            })
            .collect();
        let mut binds: Vec<Bind<'_>> = segs.iter().map(|s| Bind::Buf(&s.part.buf)).collect();
        binds.extend(acts.iter().map(|&a| Bind::Buf(a)));
        binds.extend(used.iter().map(|s| Bind::Buf(s.out)));
        // Sub-blocks a thread takes per step: Q4_K and Q6_K weights on
        // 8-bit activations take the sub-blocks that share their bytes
        // together (two of Q4_K, four of Q6_K), the rest one; a row's
        // threads are counted by the smallest group. Q6_K takes its four
        // only where the weight has enough of them to keep most of the
        // device's threads busy: on fewer rows (Gemma 3 270M's down
        // projection: 640 rows, 10k groups) the longer step per thread
        // cost more than the loads it saved (H200 profile: 8.0 -> 8.7 µs
        // per call), on more (Llama 3.2 1B's output: 2M groups) it saved
        // 15 %.
        let group: Vec<u32> = segs
            .iter()
            .zip(&int)
            .map(|(s, &i)| match s.w.ty {
                GgmlType::Q4_K if i && self.subblock_groups() => 2,
                GgmlType::Q6_K
                    if i && self.subblock_groups()
                        && s.part.rows * (cols / 128) >= MV_THREADS / 4 =>
                {
                    4
                }
                _ => 1,
            })
            .collect();
        let units = cols / group.iter().copied().min().unwrap_or(1) as usize;
        let (tpr, mut wg, reduce) = matvec_shape(units, rows, sg, sg_max);
        if q8_in {
            // A product that quantizes its input takes workgroups of 256:
            // where the shape gave 64, 4x fewer workgroups read the row
            // (H200, tg128, three rounds of one run: gemma3-270m 498-534 ->
            // 550-564 tok/s; llama-1b's o, 1,024 workgroups with 64, comes
            // under the limit with 256).
            wg = 256;
        }
        let rows_per_group = (wg / tpr) as usize;
        let mut p = [0u32; 16];
        p[0] = u32_of("matmul", cols)?;
        p[4] = glu.map_or(0, |k| u32::from(k == GluKind::GeluTanh));
        let mut groups = 0u64;
        for (s, seg) in used.iter().enumerate() {
            let n = seg.part.rows.div_ceil(rows_per_group);
            p[5 + 3 * s] = u32_of("matmul", seg.part.rows)?;
            p[6 + 3 * s] = u32_of("matmul", seg.w.row_bytes)?;
            p[7 + 3 * s] = u32_of("matmul", n)?;
            groups += n as u64;
        }
        if glu.is_some() {
            p[9] = u32_of("matmul", segs[1].w.row_bytes)?;
        }
        p[14] = u32_of("matmul", segs[0].w.rows)?;
        p[15] = u32_of("matmul", segs[0].part.first)?;
        let q8_in = if q8_in {
            // xq, the four arrays of q8_in.wgsl and red.
            let bytes = 16 * (cols / 16 + cols.div_ceil(64)) + 20 * wg as usize;
            let fits = bytes <= self.ctx.limits.max_compute_workgroup_storage_size as usize;
            match act_mode(segs[0].w.ty) {
                Some(mode @ 0..=1)
                    if fits && groups.saturating_mul(cols as u64) <= self.q8_in_max() as u64 =>
                {
                    Some((mode, cols))
                }
                _ => return Ok(false),
            }
        } else {
            None
        };
        let (g, gx) = grid(groups);
        p[3] = gx;
        for t0 in (0..n_tokens).step_by(MV_TOKENS) {
            let nt = (n_tokens - t0).min(MV_TOKENS);
            // A kernel for one token (generation), one for up to 8.
            let nt_max = if nt == 1 { 1 } else { MV_TOKENS };
            let key = format!(
                "matvec_{}_{xmap:?}_{tpr}_{wg}_{reduce:?}_{nt_max}_{int:?}_{group:?}_{q8_in:?}{}",
                types.join("_"),
                if glu.is_some() { "_glu" } else { "" }
            );
            let pipe = self.ctx.pipeline(&key, || {
                matvec_source(
                    &types,
                    &xmap,
                    tpr,
                    wg,
                    reduce,
                    glu.is_some(),
                    nt_max,
                    &int,
                    &group,
                    q8_in,
                )
            });
            p[1] = nt as u32;
            p[2] = u32_of("matmul", t0)?;
            self.ctx.dispatch(name, &pipe, &p, &binds, g);
        }
        Ok(true)
    }

    /// Whether the product of `w` with `n_tokens` takes 8-bit activations:
    /// one token, in the matrix-vector kernel, on a weight with 8-bit
    /// products, and packed dot products on.
    fn int_dot_for(&self, w: &GpuWeight, n_tokens: usize) -> bool {
        n_tokens == 1 && self.int_dot() && Self::int8_weight(w)
    }

    /// Whether the product of `w` with `n_tokens` runs in the f16 tiled
    /// kernel, on 8-bit activations: a prompt (the tiled kernel), a weight
    /// with 8-bit products, and f16 arithmetic on.
    fn f16_tiled_for(&self, w: &GpuWeight, n_tokens: usize) -> bool {
        n_tokens > MV_TOKENS && self.f16() && Self::int8_weight(w)
    }

    /// Whether the product of `w` with `n_tokens` runs in the int8 tiled
    /// kernel: a prompt (the tiled kernel), a weight with 8-bit products,
    /// packed dot products on and f16 arithmetic off.
    fn int8_tiled_for(&self, w: &GpuWeight, n_tokens: usize) -> bool {
        n_tokens > MV_TOKENS && self.int_dot() && !self.f16() && Self::int8_weight(w)
    }

    /// Whether `w`'s rows are whole 32-value sub-blocks of a type with a
    /// product on 8-bit activations (`dot_q8.wgsl`).
    fn int8_weight(w: &GpuWeight) -> bool {
        w.cols.is_multiple_of(32) && wgsl_name(w.ty).is_some_and(|t| INT_DOT_TYPES.contains(&t))
    }

    /// Whether the matrix-vector kernel takes `w` whole for `n_tokens`
    /// (rows of whole 32-value sub-blocks, one buffer, a batch it takes).
    fn matvec_whole(w: &GpuWeight, n_tokens: usize) -> bool {
        n_tokens <= MV_TOKENS
            && w.cols.is_multiple_of(32)
            && w.parts.len() == 1
            && wgsl_name(w.ty).is_some()
    }

    /// Checks `w · x` for `n_tokens` into `out` and returns the input as the
    /// weight's dot product sees it.
    fn matmul_input(
        &self,
        w: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        out: &GpuBuffer,
    ) -> Result<wgpu::Buffer> {
        wgsl_name(w.ty).ok_or_else(|| unsupported("matmul", w.ty))?;
        let block = w.ty.block_size();
        if !w.cols.is_multiple_of(4) || !w.cols.is_multiple_of(block) {
            return Err(shape("matmul", format!("rows of {} values", w.cols)));
        }
        need("matmul", "x", x.len, n_tokens * w.cols)?;
        need("matmul", "out", out.len, n_tokens * w.rows)?;
        match act_mode(w.ty) {
            Some(mode @ 0..=1)
                if self.int_dot_for(w, n_tokens)
                    || self.f16_tiled_for(w, n_tokens)
                    || self.int8_tiled_for(w, n_tokens) =>
            {
                self.quantized(x, n_tokens * w.cols, PACKED_Q8_0 + mode)
            }
            Some(mode) => self.quantized(x, n_tokens * w.cols, mode),
            None => Ok(x.buf.clone()),
        }
    }

    /// `out = w · x` for `n_tokens` tokens.
    pub(crate) fn op_matmul(
        &self,
        w: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        let ty_name = wgsl_name(w.ty).ok_or_else(|| unsupported("matmul", w.ty))?;
        if n_tokens == 0 {
            return Ok(());
        }
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        if n_tokens == 1 && w.parts.len() == 1 && self.int_dot_for(w, 1) {
            // One token: the product may quantize its input itself, unless
            // an earlier product already did.
            need("matmul", "x", x.len, w.cols)?;
            need("matmul", "out", out.len, w.rows)?;
            let done =
                act_mode(w.ty).is_some_and(|m| self.has_quantized(x, w.cols, PACKED_Q8_0 + m));
            let seg = MvSeg {
                w,
                part: &w.parts[0],
                act: &x.buf,
                out: &out.buf,
            };
            if !done && self.matvec(&[seg], w.cols, 1, None, true)? {
                return Ok(());
            }
        }
        let act = self.matmul_input(w, x, n_tokens, out)?;
        if n_tokens <= MV_TOKENS && w.cols.is_multiple_of(32) {
            for part in &w.parts {
                let seg = MvSeg {
                    w,
                    part,
                    act: &act,
                    out: &out.buf,
                };
                self.matvec(&[seg], w.cols, n_tokens, None, false)?;
            }
            return Ok(());
        }
        let tiled = n_tokens > MV_TOKENS && w.cols.is_multiple_of(32);
        let f16 = self.f16_tiled_for(w, n_tokens);
        let int8 = self.int8_tiled_for(w, n_tokens);
        let (kind, body) = if f16 {
            ("matmul_f16", MATMUL_F16)
        } else if int8 {
            ("matmul_q8", MATMUL_Q8)
        } else if tiled {
            ("matmul", MATMUL)
        } else {
            ("matvec4", MATVEC)
        };
        // Threads per row of the 4-value kernel, by row length.
        let tpr = match w.cols / 4 {
            0..=256 => 16,
            257..=2048 => 64,
            _ => 256,
        };
        let key = if tiled {
            format!("{kind}_{ty_name}")
        } else {
            format!("{kind}_{ty_name}_{tpr}")
        };
        let pipe = self.ctx.pipeline(&key, || {
            if int8 {
                let src = format!(
                    "{body}\n{TILE_IO}\n{DOT_Q8}\n{DEQ_Q8}\n\
                     fn qw(base: u32, sb: u32, k: u32) -> u32 {{ return qw_{ty_name}(base, sb, k); }}\n\
                     fn qsc(base: u32, sb: u32) -> vec3<f32> {{ return qsc_{ty_name}(base, sb); }}\n"
                );
                with_deq(&src, ty_name)
            } else if tiled {
                with_deq(&format!("{body}\n{TILE_IO}"), ty_name)
            } else {
                with_deq(body, ty_name).replace("TPR", &format!("{tpr}u"))
            }
        });
        for part in &w.parts {
            let mut p = [
                u32_of("matmul", part.rows)?,
                u32_of("matmul", w.cols)?,
                0,
                u32_of("matmul", w.rows)?,
                u32_of("matmul", part.first)?,
                0,
                u32_of("matmul", w.row_bytes)?,
                0,
            ];
            let binds = [Bind::Buf(&part.buf), Bind::Buf(&act), Bind::Buf(&out.buf)];
            if tiled {
                p[2] = u32_of("matmul", n_tokens)?;
                if f16 || int8 {
                    // The packed activations' scales follow their values.
                    p[5] = u32_of("matmul", n_tokens * w.cols / 4)?;
                }
                let gx = part.rows.div_ceil(64) as u32;
                let gy = u32_of("matmul", n_tokens.div_ceil(64))?;
                self.ctx.dispatch(kind, &pipe, &p, &binds, (gx, gy, 1));
            } else {
                let (g, gx) = grid(part.rows.div_ceil(256 / tpr) as u64);
                for t0 in (0..n_tokens).step_by(MV_TOKENS) {
                    p[2] = (n_tokens - t0).min(MV_TOKENS) as u32;
                    p[5] = gx;
                    p[7] = u32_of("matmul", t0)?;
                    self.ctx.dispatch(kind, &pipe, &p, &binds, g);
                }
            }
        }
        Ok(())
    }

    /// `out = act(w_gate · x) · (w_up · x)` in one matrix-vector dispatch
    /// when both weights are whole buffers of the same shape and the batch
    /// is small; `Ok(false)` (nothing recorded) otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn op_matmul_glu(
        &self,
        kind: GluKind,
        w_gate: &GpuWeight,
        w_up: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        rows: usize,
        out: &mut GpuBuffer,
    ) -> Result<bool> {
        if !(Self::matvec_whole(w_gate, n_tokens)
            && Self::matvec_whole(w_up, n_tokens)
            && (w_gate.rows, w_gate.cols) == (w_up.rows, w_up.cols)
            && w_up.rows == rows)
        {
            return Ok(false);
        }
        if n_tokens == 0 {
            return Ok(true);
        }
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let act_g = self.matmul_input(w_gate, x, n_tokens, out)?;
        let act_u = self.matmul_input(w_up, x, n_tokens, out)?;
        let segs = [(w_gate, &act_g), (w_up, &act_u)].map(|(w, act)| MvSeg {
            w,
            part: &w.parts[0],
            act,
            out: &out.buf,
        });
        self.matvec(&segs, w_up.cols, n_tokens, Some(kind), false)?;
        Ok(true)
    }

    /// q, k and v (`w · x` for three weights of the same input) in one
    /// matrix-vector dispatch when each weight is one buffer and the batch
    /// is small; `Ok(false)` (nothing recorded) otherwise.
    pub(crate) fn op_matmul_qkv(
        &self,
        w: [&GpuWeight; 3],
        x: &GpuBuffer,
        n_tokens: usize,
        out: [&GpuBuffer; 3],
    ) -> Result<bool> {
        let cols = w[0].cols;
        if !w
            .iter()
            .all(|w| Self::matvec_whole(w, n_tokens) && w.cols == cols)
        {
            return Ok(false);
        }
        if n_tokens == 0 {
            return Ok(true);
        }
        let _guard = self.scratch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let acts = [
            self.matmul_input(w[0], x, n_tokens, out[0])?,
            self.matmul_input(w[1], x, n_tokens, out[1])?,
            self.matmul_input(w[2], x, n_tokens, out[2])?,
        ];
        // Storage bindings: the parameters, 3 weights, each distinct
        // rounded input, 3 outputs; 8 (WebGPU's default limit, which
        // browsers' software adapters keep) when the three types round the
        // input alike, as in the usual mixes. Otherwise three dispatches
        // (the roundings made here are reused by them).
        let distinct = 1
            + usize::from(acts[1] != acts[0])
            + usize::from(acts[2] != acts[0] && acts[2] != acts[1]);
        if 7 + distinct > self.ctx.limits.max_storage_buffers_per_shader_stage as usize {
            return Ok(false);
        }
        let segs: Vec<MvSeg<'_>> = (0..3)
            .map(|i| MvSeg {
                w: w[i],
                part: &w[i].parts[0],
                act: &acts[i],
                out: &out[i].buf,
            })
            .collect();
        self.matvec(&segs, cols, n_tokens, None, false)?;
        Ok(true)
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
        if !cols.is_multiple_of(4) {
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
        self.dispatch_norm(
            "rms_norm",
            RMS_NORM,
            &[
                u32_of("rms_norm", dim)?,
                eps.to_bits(),
                u32_of("rms_norm", n_rows)?,
                gx,
            ],
            &[Bind::Buf(&x.buf), Bind::Buf(w), Bind::Buf(&out.buf)],
            g,
            n_rows,
            dim,
            out,
        )
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
        self.dispatch_norm(
            op,
            ADD_RMS_NORM,
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
            n_rows,
            dim,
            out,
        )
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
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
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

    /// RoPE of q and k in one dispatch (see `Backend::qk_rope`); with `kv`,
    /// the same dispatch writes the layer's new cache rows (see
    /// `Backend::qk_rope_kv`).
    pub(crate) fn op_qk_rope(
        &self,
        q: &mut GpuBuffer,
        k: &mut GpuBuffer,
        q_out: &mut GpuBuffer,
        k_out: &mut GpuBuffer,
        rope: &QkRope<'_, GpuWeight>,
        kv: Option<KvRows<'_>>,
    ) -> Result<()> {
        let op = "qk_rope";
        let QkRope {
            norms,
            positions,
            n_heads,
            n_kv_heads,
            head_dim,
            ref params,
            q_scale,
        } = *rope;
        let (nq, nk) = (
            positions.len() * n_heads * head_dim,
            positions.len() * n_kv_heads * head_dim,
        );
        need(op, "q", q.len, nq)?;
        need(op, "k", k.len, nk)?;
        let n_rot = params.n_rot;
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(shape(op, format!("n_rot {n_rot} vs head_dim {head_dim}")));
        }
        let mut d: Vec<u32> = positions.to_vec();
        if let Some(f) = params.freq_factors {
            need(op, "freq_factors", f.len(), n_rot / 2)?;
            d.extend(f[..n_rot / 2].iter().map(|v| v.to_bits()));
        }
        let rows_at = u32_of(op, d.len())?;
        let width = n_kv_heads * head_dim;
        if let Some(kv) = &kv {
            need(op, "v", kv.v.len, nk)?;
            if kv.rows.len() != positions.len() {
                return Err(shape(
                    op,
                    format!(
                        "{} cache rows for {} tokens",
                        kv.rows.len(),
                        positions.len()
                    ),
                ));
            }
            // Storage bindings of the variant with the cache: 8 or 11.
            let bindings = if norms.is_some() { 11 } else { 7 };
            if bindings > self.ctx.limits.max_storage_buffers_per_shader_stage {
                self.op_qk_rope(q, k, q_out, k_out, rope, None)?;
                let k_rot = if norms.is_some() { &*k_out } else { &*k };
                return self.op_write_kv(kv.k_dst, kv.v_dst, k_rot, kv.v, kv.rows, width);
            }
            let r32 = Self::cache_rows(op, kv.k_dst.len.min(kv.v_dst.len), kv.rows, width)?;
            d.extend(r32);
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
            rows_at,
        ];
        // The cache hooks and their bindings, after the variant's own.
        let hooks = |first: u32| match &kv {
            Some(_) => QK_ROPE_KV
                .replace("B0", &first.to_string())
                .replace("B1", &(first + 1).to_string())
                .replace("B2", &(first + 2).to_string()),
            None => QK_ROPE_NO_KV.to_string(),
        };
        let suffix = if kv.is_some() { "_kv" } else { "" };
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
                let pipe = self.ctx.pipeline(&format!("qk_rope_norm{suffix}"), || {
                    format!("{QK_ROPE_NORM}\n{}\n{QK_ROPE}", hooks(8))
                });
                let mut binds = vec![
                    Bind::Buf(&q.buf),
                    Bind::Buf(&k.buf),
                    Bind::Buf(&q_out.buf),
                    Bind::Buf(&k_out.buf),
                    Bind::Buf(qwb),
                    Bind::Buf(kwb),
                    Bind::Data(&d),
                ];
                if let Some(kv) = &kv {
                    binds.extend([
                        Bind::Buf(&kv.v.buf),
                        Bind::Buf(&kv.k_dst.buf),
                        Bind::Buf(&kv.v_dst.buf),
                    ]);
                }
                self.ctx.dispatch(op, &pipe, &p, &binds, g);
            }
            None => {
                let pipe = self.ctx.pipeline(&format!("qk_rope{suffix}"), || {
                    format!("{QK_ROPE_PLAIN}\n{}\n{QK_ROPE}", hooks(4))
                });
                let mut binds = vec![Bind::Buf(&q.buf), Bind::Buf(&k.buf), Bind::Data(&d)];
                if let Some(kv) = &kv {
                    binds.extend([
                        Bind::Buf(&kv.v.buf),
                        Bind::Buf(&kv.k_dst.buf),
                        Bind::Buf(&kv.v_dst.buf),
                    ]);
                }
                self.ctx.dispatch(op, &pipe, &p, &binds, g);
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
        k_dst: &GpuBuffer,
        v_dst: &GpuBuffer,
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
