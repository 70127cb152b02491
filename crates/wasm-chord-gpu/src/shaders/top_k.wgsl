// The k best of each chunk of 1024 candidates (largest value first, ties to
// the lowest index, NaN never chosen), by k rounds of a workgroup argmax.
// Input: plain values (p2 = 0) or (value bits, index) pairs (p2 = 1).
// Output: (value bits, index) pairs, index 0xffffffff when the chunk ran out.
// p: 0 candidates, 1 k.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

const C: u32 = 1024u;
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
var<workgroup> sv: array<f32, 1024>;
var<workgroup> si: array<u32, 1024>;
var<workgroup> rs: array<u32, 256>;

fn is_nan(b: u32) -> bool {
    return (b & 0x7fffffffu) > 0x7f800000u;
}

// Whether slot a beats slot b.
fn better(a: u32, b: u32) -> bool {
    if (a == NONE || si[a] == NONE) {
        return false;
    }
    if (b == NONE || si[b] == NONE) {
        return true;
    }
    return sv[a] > sv[b] || (sv[a] == sv[b] && si[a] < si[b]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = p[0];
    let kk = p[1];
    let start = wid.x * C;
    for (var e = 0u; e < 4u; e++) {
        let slot = lid + e * WG;
        let g = start + slot;
        var bits = 0u;
        var ix = NONE;
        if (g < n) {
            if (p[2] == 0u) {
                bits = src[g];
                ix = g;
            } else {
                bits = src[2u * g];
                ix = src[2u * g + 1u];
            }
            if (is_nan(bits)) {
                ix = NONE;
            }
        }
        sv[slot] = bitcast<f32>(bits);
        si[slot] = ix;
    }
    workgroupBarrier();
    for (var r = 0u; r < kk; r++) {
        var best = NONE;
        for (var e = 0u; e < 4u; e++) {
            let slot = lid + e * WG;
            if (better(slot, best)) {
                best = slot;
            }
        }
        rs[lid] = best;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s && better(rs[lid + s], rs[lid])) {
                rs[lid] = rs[lid + s];
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            let b = rs[0];
            let o = 2u * (wid.x * kk + r);
            if (b == NONE) {
                dst[o] = 0u;
                dst[o + 1u] = NONE;
            } else {
                dst[o] = bitcast<u32>(sv[b]);
                dst[o + 1u] = si[b];
                si[b] = NONE;
            }
        }
        workgroupBarrier();
    }
}
