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
// Per group of 4 rows: scale of the first 16 values, of the last 16, and
// the minimum's coefficient.
var<workgroup> wlo: array<vec4<f32>, 16>;
var<workgroup> whi: array<vec4<f32>, 16>;
var<workgroup> wmn: array<vec4<f32>, 16>;
// Per group of 4 tokens: the activations' scale, and scale · sum.
var<workgroup> xsc: array<vec4<f32>, 16>;
var<workgroup> xsm: array<vec4<f32>, 16>;

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
    // Staging: thread tid takes words 2(tid % 4), +1 of row (and token)
    // tid / 4; the first of each four also the scales.
    let sr = tid / 4u;
    let sk = 2u * (tid % 4u);
    let wr = r0 + sr;
    let xt = t0 + sr;
    let base = wr * p[6];
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var sb = 0u; sb < nsb; sb++) {
        var w0 = 0u;
        var w1 = 0u;
        if (wr < rows) {
            w0 = qw(base, sb, sk);
            w1 = qw(base, sb, sk + 1u);
        }
        wq[sk][sr / 4u][sr % 4u] = w0;
        wq[sk + 1u][sr / 4u][sr % 4u] = w1;
        var x0 = 0u;
        var x1 = 0u;
        if (xt < nt) {
            x0 = x[xt * nw + sb * 8u + sk];
            x1 = x[xt * nw + sb * 8u + sk + 1u];
        }
        xq[sk][sr / 4u][sr % 4u] = x0;
        xq[sk + 1u][sr / 4u][sr % 4u] = x1;
        if (sk == 0u) {
            var s = vec3<f32>(0.0);
            if (wr < rows) {
                s = qsc(base, sb);
            }
            wlo[sr / 4u][sr % 4u] = s.x;
            whi[sr / 4u][sr % 4u] = s.y;
            wmn[sr / 4u][sr % 4u] = s.z;
            var d = 0.0;
            var m = 0.0;
            if (xt < nt) {
                let o = p[5] + 2u * (xt * nsb + sb);
                d = bitcast<f32>(x[o]);
                m = d * f32(bitcast<i32>(x[o + 1u]));
            }
            xsc[sr / 4u][sr % 4u] = d;
            xsm[sr / 4u][sr % 4u] = m;
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
        let lo = wlo[l.x];
        let hi = whi[l.x];
        let mn = wmn[l.x];
        let d = xsc[l.y];
        let m = xsm[l.y];
        acc0 += d.x * (lo * vec4<f32>(i0) + hi * vec4<f32>(j0)) - mn * m.x;
        acc1 += d.y * (lo * vec4<f32>(i1) + hi * vec4<f32>(j1)) - mn * m.y;
        acc2 += d.z * (lo * vec4<f32>(i2) + hi * vec4<f32>(j2)) - mn * m.z;
        acc3 += d[3] * (lo * vec4<f32>(i3) + hi * vec4<f32>(j3)) - mn * m[3];
        workgroupBarrier();
    }
    let t = t0 + 4u * l.y;
    store(t, r0, l.x, acc0);
    store(t + 1u, r0, l.x, acc1);
    store(t + 2u, r0, l.x, acc2);
    store(t + 3u, r0, l.x, acc3);
}
