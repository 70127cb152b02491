// Decoding attention, kernel 2 of 2: one workgroup per (token, head, DV
// vec4s of the head's dimensions) over ALL cache rows, so no partial
// outputs and no reduction pass. It takes the softmax maximum and sum from
// the stored scores of `attn_scores` (each workgroup of the head redoes
// this: a few loads per thread from L2), rounds the normalized
// probabilities to f16 as llama.cpp does, and sums f16(p_j) · V_j: each of
// RL = 256 / DV row lanes takes rows j ≡ lane mod RL, four at a time (eight
// independent loads in flight), then the lanes are added in workgroup
// memory. Prepended by the host: `const DV: u32` (1 or 2; 2 reads whole
// 32-byte sectors of each V row).
// p: 0 tokens, 1 heads, 2 kv heads, 3 head_dim, 4 cache rows.
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sc: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<vec4<f32>>;

const WG: u32 = 256u;
const RL: u32 = WG / DV;
const NEG: f32 = -3.0e38;
var<workgroup> red: array<f32, 256>;
var<workgroup> red16: array<f32, 16>;
var<workgroup> accs: array<vec4<f32>, 256>;
var<workgroup> acc16: array<vec4<f32>, 32>;

fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

// Maximum (max_not_sum) or sum over the workgroup, in two levels of 16.
fn reduce(lid: u32, x: f32, max_not_sum: bool) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    if (lid < 16u) {
        var a = red[lid * 16u];
        for (var i = 1u; i < 16u; i++) {
            let b = red[lid * 16u + i];
            a = select(a + b, max(a, b), max_not_sum);
        }
        red16[lid] = a;
    }
    workgroupBarrier();
    var a = red16[0];
    for (var i = 1u; i < 16u; i++) {
        a = select(a + red16[i], max(a, red16[i]), max_not_sum);
    }
    return a;
}

// The probability of score s: f16(exp(s - m) / l), 0 where masked.
fn prob(s: f32, m: f32, inv: f32) -> f32 {
    return select(0.0, f16r(exp(s - m) * inv), s > NEG);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let nh = p[1];
    let items = p[0] * nh;
    let n = p[4];
    let hd4 = p[3] / 4u;
    let idx = wid.y + wid.z * 65535u;
    let it = min(idx, items - 1u);
    let kvh = (it % nh) / (nh / p[2]);
    let sb = it * n;
    var m = NEG;
    for (var j = lid; j < n; j += WG) {
        m = max(m, sc[sb + j]);
    }
    m = reduce(lid, m, true);
    var l = 0.0;
    for (var j = lid; j < n; j += WG) {
        let s = sc[sb + j];
        l += select(0.0, exp(s - m), s > NEG);
    }
    l = reduce(lid, l, false);
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let vl = lid % DV;
    let rl = lid / DV;
    let kvw = p[2] * hd4;
    let vb = kvh * hd4 + wid.x * DV + vl;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var j = rl;
    for (; j + 3u * RL < n; j += 4u * RL) {
        let s0 = sc[sb + j];
        let s1 = sc[sb + j + RL];
        let s2 = sc[sb + j + 2u * RL];
        let s3 = sc[sb + j + 3u * RL];
        let v0 = v[j * kvw + vb];
        let v1 = v[(j + RL) * kvw + vb];
        let v2 = v[(j + 2u * RL) * kvw + vb];
        let v3 = v[(j + 3u * RL) * kvw + vb];
        a0 += prob(s0, m, inv) * v0;
        a1 += prob(s1, m, inv) * v1;
        a2 += prob(s2, m, inv) * v2;
        a3 += prob(s3, m, inv) * v3;
    }
    for (; j < n; j += RL) {
        a0 += prob(sc[sb + j], m, inv) * v[j * kvw + vb];
    }
    accs[lid] = (a0 + a1) + (a2 + a3);
    workgroupBarrier();
    // Row lanes added in two levels: 16 groups of RL / 16, then the groups.
    if (lid < 16u * DV) {
        let g = lid / DV;
        let c = lid % DV;
        var s = vec4<f32>(0.0);
        for (var i = 0u; i < RL / 16u; i++) {
            s += accs[(g * (RL / 16u) + i) * DV + c];
        }
        acc16[lid] = s;
    }
    workgroupBarrier();
    if (lid < DV && idx < items) {
        var s = vec4<f32>(0.0);
        for (var g = 0u; g < 16u; g++) {
            s += acc16[g * DV + lid];
        }
        o[it * hd4 + wid.x * DV + lid] = s;
    }
}
