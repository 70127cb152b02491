// Tiled matrix product for prompts in f16 arithmetic (adapters with
// shader-f16): `matmul.wgsl`'s tiles (64 weight rows x 64 tokens, 32-wide
// k slices, 4 x 4 outputs per thread), staged in workgroup memory as f16.
// The activations come as 8-bit integers with a scale per 32-value
// sub-block (`norm_q8.wgsl`'s layout, the rounding the f32 path decodes
// again), so a k slice is one sub-block of every token and its scale
// multiplies the slice's sum once. A slice's 32 products per output are
// summed in f16, then scaled and added in f32.
//
// Staged as q / 128, which is exact in f16, so a slice's sum is at most 32
// times the largest weight (no overflow below weights of 2000); the 128
// goes back with the scale. Weights are decoded in f32 and rounded to f16
// (relative error 2^-11), a slice's sum rounds at each step: products agree
// with the f32 path to ~1e-3 relative, as llama.cpp's f16 Vulkan kernels
// do with its f32 ones.
//
// `wrow` and `store` are in `tile_io.wgsl`, which the host appends.
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 first scale word of x (values / 4),
//    6 bytes per row.

enable f16;

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> ws: array<array<vec4<f16>, 16>, 32>;
var<workgroup> xs: array<array<vec4<f16>, 16>, 32>;
// Per group of 4 tokens: their scales for the current slice (x 128).
var<workgroup> xsc: array<vec4<f32>, 16>;

// Token t's 8-bit activations kk..kk+4, as q / 128 (zero past the last
// token).
fn xq(t: u32, nt: u32, nw: u32, kk: u32) -> vec4<f16> {
    if (t < nt) {
        return vec4<f16>(unpack4xI8(x[t * nw + kk / 4u])) * 0.0078125h;
    }
    return vec4<f16>(0.0h);
}

// Token t's scale of sub-block sb, times 128 (zero past the last token).
fn xscale(t: u32, nt: u32, nsb: u32, sb: u32) -> f32 {
    if (t < nt) {
        return bitcast<f32>(x[p[5] + 2u * (t * nsb + sb)]) * 128.0;
    }
    return 0.0;
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
    let q = tid % 16u;
    let kq = (tid / 16u) % 8u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < cols; k0 += 32u) {
        let kk = k0 + kq * 4u;
        let b = kq * 4u;
        if (tid < 128u) {
            let r = r0 + 4u * q;
            let a0 = vec4<f16>(wrow(r, rows, kk));
            let a1 = vec4<f16>(wrow(r + 1u, rows, kk));
            let a2 = vec4<f16>(wrow(r + 2u, rows, kk));
            let a3 = vec4<f16>(wrow(r + 3u, rows, kk));
            ws[b][q] = vec4<f16>(a0.x, a1.x, a2.x, a3.x);
            ws[b + 1u][q] = vec4<f16>(a0.y, a1.y, a2.y, a3.y);
            ws[b + 2u][q] = vec4<f16>(a0.z, a1.z, a2.z, a3.z);
            ws[b + 3u][q] = vec4<f16>(a0.w, a1.w, a2.w, a3.w);
        } else {
            let t = t0 + 4u * q;
            let a0 = xq(t, nt, nw, kk);
            let a1 = xq(t + 1u, nt, nw, kk);
            let a2 = xq(t + 2u, nt, nw, kk);
            let a3 = xq(t + 3u, nt, nw, kk);
            xs[b][q] = vec4<f16>(a0.x, a1.x, a2.x, a3.x);
            xs[b + 1u][q] = vec4<f16>(a0.y, a1.y, a2.y, a3.y);
            xs[b + 2u][q] = vec4<f16>(a0.z, a1.z, a2.z, a3.z);
            xs[b + 3u][q] = vec4<f16>(a0.w, a1.w, a2.w, a3.w);
            if (kq == 0u) {
                let sb = k0 / 32u;
                xsc[q] = vec4<f32>(
                    xscale(t, nt, nsb, sb),
                    xscale(t + 1u, nt, nsb, sb),
                    xscale(t + 2u, nt, nsb, sb),
                    xscale(t + 3u, nt, nsb, sb),
                );
            }
        }
        workgroupBarrier();
        var h0 = vec4<f16>(0.0h);
        var h1 = vec4<f16>(0.0h);
        var h2 = vec4<f16>(0.0h);
        var h3 = vec4<f16>(0.0h);
        for (var k = 0u; k < 32u; k++) {
            let wv = ws[k][l.x];
            let xv = xs[k][l.y];
            h0 = fma(wv, vec4<f16>(xv.x), h0);
            h1 = fma(wv, vec4<f16>(xv.y), h1);
            h2 = fma(wv, vec4<f16>(xv.z), h2);
            h3 = fma(wv, vec4<f16>(xv.w), h3);
        }
        let sc = xsc[l.y];
        acc0 += vec4<f32>(h0) * sc.x;
        acc1 += vec4<f32>(h1) * sc.y;
        acc2 += vec4<f32>(h2) * sc.z;
        acc3 += vec4<f32>(h3) * sc.w;
        workgroupBarrier();
    }
    store4(t0, l.y, r0, l.x, acc0, acc1, acc2, acc3);
}
