// Tiled matrix product for prompts on 8-bit integers (where WGSL has
// `dot4I8Packed`): the tiles of `matmul.wgsl` (64 weight rows x 64
// tokens, 4 x 4 outputs per thread), one 32-value sub-block per k slice.
// A slice stages each weight row's sub-block as 8 words of signed bytes
// with its scales (`deq_q8.wgsl`) and each token's 8-bit activations
// (`norm_q8.wgsl`'s layout, as `quantize_q8.wgsl` writes them for the
// whole batch) with their scale and sum, so the products are exact integer
// sums, four values per instruction, as the one-token kernels and ggml-cpu
// compute them; the scales are applied once per slice in f32 (per 16
// values for Q6_K).
//
// `qw`, `qsc` (the weight type's `qw_*`, `qsc_*`) and `store`
// (`tile_io.wgsl`) are appended by the host.
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 first scale word of x (values / 4),
//    6 bytes per row.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Word k of the slice for rows (tokens) 4g..4g+4.
var<workgroup> wq: array<array<vec4<u32>, 16>, 8>;
var<workgroup> xq: array<array<vec4<u32>, 16>, 8>;
// Per row: scale of the first 16 values, of the last 16, and the
// minimum's coefficient.
var<workgroup> wlo: array<f32, 64>;
var<workgroup> whi: array<f32, 64>;
var<workgroup> wmn: array<f32, 64>;
// Per group of 4 tokens: the activations' scale, and scale · sum.
var<workgroup> xsc: array<vec4<f32>, 16>;
var<workgroup> xsm: array<vec4<f32>, 16>;

// Word k of weight row r's sub-block sb (zero past the last row).
fn wword(r: u32, rows: u32, sb: u32, k: u32) -> u32 {
    if (r < rows) {
        return qw(r * p[6], sb, k);
    }
    return 0u;
}

// Weight row r's scales of sub-block sb (zero past the last row).
fn wscale(r: u32, rows: u32, sb: u32) -> vec3<f32> {
    if (r < rows) {
        return qsc(r * p[6], sb);
    }
    return vec3<f32>(0.0);
}

// Word k of token t's activations in sub-block sb (zero past the last
// token).
fn xword(t: u32, nt: u32, nw: u32, sb: u32, k: u32) -> u32 {
    if (t < nt) {
        return x[t * nw + sb * 8u + k];
    }
    return 0u;
}

// Token t's scale of sub-block sb and scale · sum (zero past the last
// token).
fn xscale(t: u32, nt: u32, nsb: u32, sb: u32) -> vec2<f32> {
    if (t < nt) {
        let o = p[5] + 2u * (t * nsb + sb);
        let d = bitcast<f32>(x[o]);
        return vec2<f32>(d, d * f32(bitcast<i32>(x[o + 1u])));
    }
    return vec2<f32>(0.0);
}

fn dot4(wv: vec4<u32>, xw: u32) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(wv.x, xw), dot4I8Packed(wv.y, xw), dot4I8Packed(wv.z, xw), dot4I8Packed(wv[3], xw));
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    let rows = p[0];
    let cols = p[1];
    let nt = p[2];
    let nw = cols / 4u;
    let nsb = cols / 32u;
    let r0 = wid.x * 64u;
    let t0 = wid.y * 64u;
    let tid = l.y * 16u + l.x;
    // Staging: threads 0..128 take word k = tid % 8 of weight rows
    // 4g..4g+4 (g = tid / 8), threads 128..256 the same word of tokens
    // 4g..4g+4, and write it as one vector (no two threads write parts of
    // one vector, which some shader compilers store whole). Threads
    // 128..144 also take four tokens' scales, and threads 192..256 one
    // weight row's scales each (a K-quant's take several dependent loads,
    // so they are spread over 64 threads).
    let half = tid / 128u;
    let g = (tid % 128u) / 8u;
    let sk = tid % 8u;
    let r4 = r0 + 4u * g;
    let t4 = t0 + 4u * g;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var sb = 0u; sb < nsb; sb++) {
        if (half == 0u) {
            wq[sk][g] = vec4<u32>(wword(r4, rows, sb, sk), wword(r4 + 1u, rows, sb, sk),
                wword(r4 + 2u, rows, sb, sk), wword(r4 + 3u, rows, sb, sk));
        } else {
            xq[sk][g] = vec4<u32>(xword(t4, nt, nw, sb, sk), xword(t4 + 1u, nt, nw, sb, sk),
                xword(t4 + 2u, nt, nw, sb, sk), xword(t4 + 3u, nt, nw, sb, sk));
            if (tid < 144u) {
                let u = tid - 128u;
                let s0 = xscale(t0 + 4u * u, nt, nsb, sb);
                let s1 = xscale(t0 + 4u * u + 1u, nt, nsb, sb);
                let s2 = xscale(t0 + 4u * u + 2u, nt, nsb, sb);
                let s3 = xscale(t0 + 4u * u + 3u, nt, nsb, sb);
                xsc[u] = vec4<f32>(s0.x, s1.x, s2.x, s3.x);
                xsm[u] = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
            }
            if (tid >= 192u) {
                let u = tid - 192u;
                let s = wscale(r0 + u, rows, sb);
                wlo[u] = s.x;
                whi[u] = s.y;
                wmn[u] = s.z;
            }
        }
        workgroupBarrier();
        // Integer sums of the first and the last 16 values, per token of
        // the thread (vectors over its 4 rows).
        var i0 = vec4<i32>(0);
        var i1 = vec4<i32>(0);
        var i2 = vec4<i32>(0);
        var i3 = vec4<i32>(0);
        var j0 = vec4<i32>(0);
        var j1 = vec4<i32>(0);
        var j2 = vec4<i32>(0);
        var j3 = vec4<i32>(0);
        for (var k = 0u; k < 4u; k++) {
            let wv = wq[k][l.x];
            let xv = xq[k][l.y];
            i0 += dot4(wv, xv.x);
            i1 += dot4(wv, xv.y);
            i2 += dot4(wv, xv.z);
            i3 += dot4(wv, xv[3]);
        }
        for (var k = 4u; k < 8u; k++) {
            let wv = wq[k][l.x];
            let xv = xq[k][l.y];
            j0 += dot4(wv, xv.x);
            j1 += dot4(wv, xv.y);
            j2 += dot4(wv, xv.z);
            j3 += dot4(wv, xv[3]);
        }
        let w4 = 4u * l.x;
        let lo = vec4<f32>(wlo[w4], wlo[w4 + 1u], wlo[w4 + 2u], wlo[w4 + 3u]);
        let hi = vec4<f32>(whi[w4], whi[w4 + 1u], whi[w4 + 2u], whi[w4 + 3u]);
        let mn = vec4<f32>(wmn[w4], wmn[w4 + 1u], wmn[w4 + 2u], wmn[w4 + 3u]);
        let d = xsc[l.y];
        let m = xsm[l.y];
        acc0 += d.x * (lo * vec4<f32>(i0) + hi * vec4<f32>(j0)) - mn * m.x;
        acc1 += d.y * (lo * vec4<f32>(i1) + hi * vec4<f32>(j1)) - mn * m.y;
        acc2 += d.z * (lo * vec4<f32>(i2) + hi * vec4<f32>(j2)) - mn * m.z;
        acc3 += d[3] * (lo * vec4<f32>(i3) + hi * vec4<f32>(j3)) - mn * m[3];
        workgroupBarrier();
    }
    store4(t0, l.y, r0, l.x, acc0, acc1, acc2, acc3);
}
