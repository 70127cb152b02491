// Attention of one query head of one token per workgroup over the cache
// rows, 64 rows at a time (one per thread). A first pass keeps the running
// maximum and sum of exponentials (online softmax); a second recomputes the
// scores, rounds the normalized probabilities to f16 as llama.cpp does and
// accumulates V. No score matrix is ever stored. Each thread owns
// head dimensions lid, lid + 64, ... (head_dim <= 256). q is rounded to f16
// as ggml's f16 K·q product does.
// p: 0 tokens, 1 heads, 2 kv heads, 3 head_dim, 4 cache rows, 5 scale,
//    6 softcap (0: none), 7 window (0: none), 8 workgroups along x.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read> qpos: array<u32>;
@group(0) @binding(6) var<storage, read> kpos: array<u32>;

const WG: u32 = 64u;
const NEG: f32 = -3.0e38;
var<workgroup> qs: array<f32, 256>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

// The masked, scaled and capped score of cache row j (NEG when masked).
fn score(j: u32, valid: bool, n_slots: u32, qp: u32, kvh: u32, kvw: u32, hd: u32, scale: f32, cap: f32, window: u32) -> f32 {
    if (!valid || j >= n_slots) {
        return NEG;
    }
    let kp = kpos[j];
    if (kp == 0xffffffffu || kp > qp || (window != 0u && qp - kp >= window)) {
        return NEG;
    }
    let ko = j * kvw + kvh * hd;
    var dot = 0.0;
    for (var d = 0u; d < hd; d++) {
        dot += qs[d] * k[ko + d];
    }
    var s = dot * scale;
    if (cap > 0.0) {
        s = cap * tanh(clamp(s * (1.0 / cap), -15.0, 15.0));
    }
    return s;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let nh = p[1];
    let hd = p[3];
    let n_slots = p[4];
    let idx = wid.x + wid.y * p[8];
    let valid = idx < p[0] * nh;
    let t = min(idx / nh, p[0] - 1u);
    let h = idx % nh;
    let kvh = h / (nh / p[2]);
    let kvw = p[2] * hd;
    let qoff = (t * nh + h) * hd;
    for (var d = lid; d < hd; d += WG) {
        qs[d] = f16r(q[qoff + d]);
    }
    workgroupBarrier();
    let qp = qpos[t];
    let scale = bitcast<f32>(p[5]);
    let cap = bitcast<f32>(p[6]);
    let window = p[7];
    // Pass 1: the maximum and the sum of exponentials, online over chunks.
    var m = NEG;
    var l = 0.0;
    for (var j0 = 0u; j0 < n_slots; j0 += WG) {
        let s = score(j0 + lid, valid, n_slots, qp, kvh, kvw, hd, scale, cap, window);
        red[lid] = s;
        workgroupBarrier();
        for (var r = WG / 2u; r > 0u; r >>= 1u) {
            if (lid < r) {
                red[lid] = max(red[lid], red[lid + r]);
            }
            workgroupBarrier();
        }
        let cmax = workgroupUniformLoad(&red[0]);
        if (cmax > NEG) {
            let m_new = max(m, cmax);
            red[lid] = select(0.0, exp(s - m_new), s > NEG);
            workgroupBarrier();
            for (var r = WG / 2u; r > 0u; r >>= 1u) {
                if (lid < r) {
                    red[lid] += red[lid + r];
                }
                workgroupBarrier();
            }
            l = l * exp(m - m_new) + red[0];
            m = m_new;
            workgroupBarrier();
        }
    }
    // Pass 2: probabilities normalized and rounded to f16 as ggml's kq·v
    // product converts them, then accumulated against V.
    let inv = select(0.0, 1.0 / l, l > 0.0);
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var j0 = 0u; j0 < n_slots; j0 += WG) {
        let s = score(j0 + lid, valid, n_slots, qp, kvh, kvw, hd, scale, cap, window);
        ps[lid] = select(0.0, f16r(exp(s - m) * inv), s > NEG);
        red[lid] = ps[lid];
        workgroupBarrier();
        for (var r = WG / 2u; r > 0u; r >>= 1u) {
            if (lid < r) {
                red[lid] = max(red[lid], red[lid + r]);
            }
            workgroupBarrier();
        }
        let any = workgroupUniformLoad(&red[0]);
        if (any > 0.0) {
            let cnt = min(WG, n_slots - j0);
            for (var c = 0u; c < 4u; c++) {
                let d = lid + c * WG;
                if (d < hd) {
                    var a = acc[c];
                    for (var jj = 0u; jj < cnt; jj++) {
                        let pw = ps[jj];
                        if (pw != 0.0) {
                            a += pw * v[(j0 + jj) * kvw + kvh * hd + d];
                        }
                    }
                    acc[c] = a;
                }
            }
        }
        workgroupBarrier();
    }
    if (valid) {
        for (var c = 0u; c < 4u; c++) {
            let d = lid + c * WG;
            if (d < hd) {
                o[qoff + d] = acc[c];
            }
        }
    }
}
