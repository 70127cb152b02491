// Attention over the KV cache, split over the cache rows: each workgroup
// takes one (token, head) and one range of rows (`split`), 64 rows at a
// time (one per thread). Kernel `attn_stats` keeps the running maximum and
// sum of exponentials of its range (online softmax); `attn_pv` combines
// every range's statistics, recomputes its scores, rounds the normalized
// probabilities to f16 as llama.cpp does and accumulates V; `attn_reduce`
// adds the ranges' partial outputs. No score matrix is ever stored.
// p: 0 tokens, 1 heads, 2 kv heads, 3 head_dim, 4 cache rows, 5 scale,
//    6 softcap (0: none), 7 window (0: none), 8 splits, 9 rows per split.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;

const WG: u32 = 64u;
const NEG: f32 = -3.0e38;
var<workgroup> qs: array<vec4<f32>, 64>;
var<workgroup> red: array<f32, 64>;

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

struct Item {
    valid: bool,
    idx: u32,
    t: u32,
    h: u32,
    kvh: u32,
    split: u32,
    qp: u32,
}

// Which (token, head) and row range this workgroup takes; loads q (rounded
// to f16 as ggml's f16 K·q product does) into `qs`.
fn item(wid: vec3<u32>, lid: u32) -> Item {
    var it: Item;
    let nh = p[1];
    it.idx = wid.y + wid.z * 65535u;
    it.valid = it.idx < p[0] * nh;
    it.t = min(it.idx / nh, p[0] - 1u);
    it.h = it.idx % nh;
    it.kvh = it.h / (nh / p[2]);
    it.split = wid.x;
    let hd4 = p[3] / 4u;
    let qoff = (it.t * nh + it.h) * hd4;
    for (var d = lid; d < hd4; d += WG) {
        let v = q[qoff + d];
        qs[d] = vec4<f32>(f16r(v.x), f16r(v.y), f16r(v.z), f16r(v.w));
    }
    it.qp = qpos[it.t];
    workgroupBarrier();
    return it;
}

// The masked, scaled and capped score of cache row j (NEG when masked).
fn score(it: Item, j: u32, end: u32) -> f32 {
    if (!it.valid || j >= end) {
        return NEG;
    }
    let kp = kpos[j];
    let window = p[7];
    if (kp == 0xffffffffu || kp > it.qp || (window != 0u && it.qp - kp >= window)) {
        return NEG;
    }
    let hd4 = p[3] / 4u;
    let ko = (j * p[2] + it.kvh) * hd4;
    // Four independent sums keep four loads in flight.
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var d = 0u;
    for (; d + 4u <= hd4; d += 4u) {
        a0 += qs[d] * k[ko + d];
        a1 += qs[d + 1u] * k[ko + d + 1u];
        a2 += qs[d + 2u] * k[ko + d + 2u];
        a3 += qs[d + 3u] * k[ko + d + 3u];
    }
    for (; d < hd4; d++) {
        a0 += qs[d] * k[ko + d];
    }
    let acc = (a0 + a1) + (a2 + a3);
    var s = (acc.x + acc.y + acc.z + acc.w) * bitcast<f32>(p[5]);
    let cap = bitcast<f32>(p[6]);
    if (cap > 0.0) {
        s = cap * tanh(clamp(s * (1.0 / cap), -15.0, 15.0));
    }
    return s;
}

fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var r = WG / 2u; r > 0u; r >>= 1u) {
        if (lid < r) {
            red[lid] = max(red[lid], red[lid + r]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red[0]);
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var r = WG / 2u; r > 0u; r >>= 1u) {
        if (lid < r) {
            red[lid] += red[lid + r];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red[0]);
}
