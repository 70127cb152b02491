// RoPE of q and k in one dispatch, one workgroup of 64 per (token, head):
// q's heads first, then k's. The norm variant reads q and k, RMS-normalizes
// each head by its weight (QK-norm) and writes qn and kn; the plain variant
// rotates q and k in place. q's heads are then multiplied by the q scale.
// The variant with the cache hooks (`QK_ROPE_KV` in ops.rs) also writes
// the rotated k and the v of each k head into the layer's cache rows.
// Angles as in `rope.wgsl` (θ multiplied by θ_scale once per pair).
// p: 0 tokens, 1 q heads, 2 head_dim, 3 n_rot, 4 kind (0 normal, 1 NeoX),
//    5 θ_scale (f32 bits), 6 freq_scale (f32 bits), 7 has freq_factors,
//    8 workgroups along x, 9 k heads, 10 q scale (f32 bits), 11 eps (f32
//    bits), 12 first word of the cache rows in d. d: the positions (one per
//    token), then the frequency factors, then the cache rows.

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * p[8];
    let nh = p[1];
    let nkv = p[9];
    let hd = p[2];
    let n_tok = p[0];
    if (row >= n_tok * (nh + nkv)) {
        return;
    }
    let t = row / (nh + nkv);
    let hh = row % (nh + nkv);
    let is_q = hh < nh;
    var base = (t * nkv + hh - nh) * hd;
    if (is_q) {
        base = (t * nh + hh) * hd;
    }
    let sc = norm_scale(is_q, base, hd, lid);
    var qs = 1.0;
    if (is_q) {
        qs = bitcast<f32>(p[10]);
    }
    let half = p[3] / 2u;
    let theta_scale = bitcast<f32>(p[5]);
    // θ of pair i is the position times θ_scale i times, multiplied in
    // turn; a thread's next pair goes on from its last.
    var theta = f32(d[t]);
    var done = 0u;
    for (var pair = lid; pair < half; pair += WG) {
        for (; done < pair; done++) {
            theta *= theta_scale;
        }
        var f = 1.0;
        if (p[7] != 0u) {
            f = bitcast<f32>(d[n_tok + pair]);
        }
        let th = bitcast<f32>(p[6]) * (theta / f);
        let c = cos(th);
        let s = sin(th);
        var j0 = 2u * pair;
        var j1 = j0 + 1u;
        if (p[4] == 1u) {
            j0 = pair;
            j1 = pair + half;
        }
        let x0 = ld(is_q, base, j0, sc);
        let x1 = ld(is_q, base, j1, sc);
        st(is_q, base + j0, (x0 * c - x1 * s) * qs);
        st(is_q, base + j1, (x0 * s + x1 * c) * qs);
    }
    for (var j = p[3] + lid; j < hd; j += WG) {
        st(is_q, base + j, ld(is_q, base, j, sc) * qs);
    }
    kv_copy(is_q, base, t, hd, lid);
}
