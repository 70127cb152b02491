// RoPE in place, one thread per rotated pair, angles built as ggml's
// rope_cache_init does (θ multiplied by θ_scale once per pair).
// p: 0 tokens, 1 heads, 2 head_dim, 3 n_rot, 4 kind (0 normal, 1 NeoX),
//    5 θ_scale (f32 bits), 6 freq_scale (f32 bits), 7 has freq_factors,
//    8 threads along x.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> ff: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x + gid.y * p[8];
    let half = p[3] / 2u;
    let nh = p[1];
    if (g >= p[0] * nh * half) {
        return;
    }
    let pair = g % half;
    let th_idx = g / half;
    let t = th_idx / nh;
    let base = th_idx * p[2];
    let theta_scale = bitcast<f32>(p[5]);
    var theta = f32(pos[t]);
    for (var i = 0u; i < pair; i++) {
        theta *= theta_scale;
    }
    var f = 1.0;
    if (p[7] != 0u) {
        f = ff[pair];
    }
    let th = bitcast<f32>(p[6]) * (theta / f);
    let c = cos(th);
    let s = sin(th);
    var i0 = base + 2u * pair;
    var i1 = i0 + 1u;
    if (p[4] == 1u) {
        i0 = base + pair;
        i1 = i0 + half;
    }
    let x0 = x[i0];
    let x1 = x[i1];
    x[i0] = x0 * c - x1 * s;
    x[i1] = x0 * s + x1 * c;
}
