// Decoding attention over a short cache in one kernel: one workgroup per
// (token, head, slice of SL vec4s of the head's dimensions) computes the
// scores of all its rows into workgroup memory (every slice of a head the
// same ones: cheap next to the latency it saves), the softmax, then
// f16(p_j) · V_j over all rows for its slice, with the arithmetic of
// `attn_scores.wgsl` + `attn_out.wgsl`.
// Scores: T threads per row (a power of two, each takes the vec4s
// d ≡ lane mod T, at most four, q's held in registers), 256 / T rows per
// step, the lanes added by `lane_sum` (subgroup shuffles, or workgroup
// memory). Output: each of RL = 256 / SL row lanes takes every RL-th row
// for the thread's vec4 of the slice, then the lanes are added.
// Prepended by the host: `const T: u32`, `const HD4: u32` (head_dim / 4),
// `const SL: u32` (a divisor of HD4),
// `const MAXR: u32` (the most rows) and `lane_sum`.
// p: 0 tokens, 1 heads, 2 kv heads, 3 head_dim, 4 cache rows (≤ MAXR),
//    5 scale, 6 softcap (0: none), 7 window (0: none).
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> qpos: array<u32>;
@group(0) @binding(5) var<storage, read> kpos: array<u32>;
@group(0) @binding(6) var<storage, read_write> o: array<vec4<f32>>;

const WG: u32 = 256u;
const RP: u32 = WG / T;
const RL: u32 = WG / SL;
// The largest power of two <= RL.
const RP2: u32 = 1u << (31u - countLeadingZeros(RL));
const NEG: f32 = -3.0e38;
var<workgroup> sc: array<f32, MAXR>;
var<workgroup> red: array<f32, 256>;
var<workgroup> accs: array<vec4<f32>, 256>;

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

fn f16r4(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(pack2x16float(x.xy)), unpack2x16float(pack2x16float(x.zw)));
}

// Vec4 d of q's head at qo, rounded to f16 (zero past the head).
fn qload(qo: u32, d: u32) -> vec4<f32> {
    if (d < HD4) {
        return f16r4(q[qo + d]);
    }
    return vec4<f32>(0.0);
}

// Vec4 d of the K row at ko (zero past the head).
fn kload(ko: u32, d: u32) -> vec4<f32> {
    if (d < HD4) {
        return k[ko + d];
    }
    return vec4<f32>(0.0);
}

// Maximum (max_not_sum) or sum over the workgroup.
fn reduce(lid: u32, x: f32, max_not_sum: bool) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) {
            let b = red[lid + h];
            red[lid] = select(red[lid] + b, max(red[lid], b), max_not_sum);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let nh = p[1];
    let items = p[0] * nh;
    let n = p[4];
    let idx = wid.y + wid.z * 65535u;
    if (idx >= items) {
        return;
    }
    let h = idx % nh;
    let kvh = h / (nh / p[2]);
    let kvw = p[2] * HD4;
    let qp = qpos[idx / nh];
    let window = p[7];
    let scale = bitcast<f32>(p[5]);
    let cap = bitcast<f32>(p[6]);
    let r = lid / T;
    let lane = lid % T;
    // q rounded to f16 as ggml's f16 K·q product does; the lane's (at
    // most four) vec4s in named vectors, not an array indexed in a loop
    // (which a driver may place in local memory).
    let qo = idx * HD4;
    let q0 = qload(qo, lane);
    let q1 = qload(qo, lane + T);
    let q2 = qload(qo, lane + 2u * T);
    let q3 = qload(qo, lane + 3u * T);
    for (var j0 = 0u; j0 < n; j0 += RP) {
        let j = j0 + r;
        let jc = min(j, n - 1u);
        let ko = jc * kvw + kvh * HD4;
        let acc = q0 * kload(ko, lane) + q1 * kload(ko, lane + T)
            + q2 * kload(ko, lane + 2u * T) + q3 * kload(ko, lane + 3u * T);
        var s = lane_sum(lid, (acc.x + acc.y) + (acc.z + acc.w));
        if (j < n && lane == 0u) {
            s *= scale;
            if (cap > 0.0) {
                s = cap * tanh(clamp(s * (1.0 / cap), -15.0, 15.0));
            }
            let kp = kpos[j];
            let masked = kp == 0xffffffffu || kp > qp || (window != 0u && qp - kp >= window);
            sc[j] = select(s, NEG, masked);
        }
    }
    workgroupBarrier();
    var m = NEG;
    for (var j = lid; j < n; j += WG) {
        m = max(m, sc[j]);
    }
    m = reduce(lid, m, true);
    var l = 0.0;
    for (var j = lid; j < n; j += WG) {
        let s = sc[j];
        l += select(0.0, exp(s - m), s > NEG);
    }
    l = reduce(lid, l, false);
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var j = lid; j < n; j += WG) {
        let s = sc[j];
        sc[j] = select(0.0, f16r(exp(s - m) * inv), s > NEG);
    }
    workgroupBarrier();
    let dv = wid.x * SL + lid % SL;
    let rl = lid / SL;
    let vb = kvh * HD4 + dv;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    // Threads past RL row lanes (when SL does not divide 256) sit out.
    var j = select(n, rl, rl < RL);
    for (; j + 3u * RL < n; j += 4u * RL) {
        a0 += sc[j] * v[j * kvw + vb];
        a1 += sc[j + RL] * v[(j + RL) * kvw + vb];
        a2 += sc[j + 2u * RL] * v[(j + 2u * RL) * kvw + vb];
        a3 += sc[j + 3u * RL] * v[(j + 3u * RL) * kvw + vb];
    }
    for (; j < n; j += RL) {
        a0 += sc[j] * v[j * kvw + vb];
    }
    accs[lid] = (a0 + a1) + (a2 + a3);
    workgroupBarrier();
    // The RL row lanes' sums by halves (RL is up to 128 when a head's
    // dimensions are split over many workgroups: a loop over them would
    // be a chain of RL loads): first those past the largest power of two
    // RP2 <= RL onto the first, then a tree.
    if (rl < RL - RP2) {
        accs[lid] += accs[lid + RP2 * SL];
    }
    workgroupBarrier();
    for (var st = RP2 / 2u; st > 0u; st >>= 1u) {
        if (rl < st) {
            accs[lid] += accs[lid + st * SL];
        }
        workgroupBarrier();
    }
    if (lid < SL) {
        o[idx * HD4 + dv] = accs[lid];
    }
}
