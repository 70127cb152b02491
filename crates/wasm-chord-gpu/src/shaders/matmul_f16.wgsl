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
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < cols; k0 += 32u) {
        let kk = k0 + kq * 4u;
        if (tid < 128u) {
            var a: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i++) {
                let r = r0 + 4u * q + i;
                if (r < rows) {
                    a[i] = deq4(r * p[6], kk);
                } else {
                    a[i] = vec4<f32>(0.0);
                }
            }
            for (var c = 0u; c < 4u; c++) {
                ws[kq * 4u + c][q] = vec4<f16>(vec4<f32>(a[0][c], a[1][c], a[2][c], a[3][c]));
            }
        } else {
            var a: array<vec4<f16>, 4>;
            var s = vec4<f32>(0.0);
            for (var i = 0u; i < 4u; i++) {
                let t = t0 + 4u * q + i;
                if (t < nt) {
                    a[i] = vec4<f16>(unpack4xI8(x[t * nw + kk / 4u])) * 0.0078125h;
                    if (kq == 0u) {
                        s[i] = bitcast<f32>(x[p[5] + 2u * (t * nsb + k0 / 32u)]) * 128.0;
                    }
                } else {
                    a[i] = vec4<f16>(0.0h);
                }
            }
            for (var c = 0u; c < 4u; c++) {
                xs[kq * 4u + c][q] = vec4<f16>(a[0][c], a[1][c], a[2][c], a[3][c]);
            }
            if (kq == 0u) {
                xsc[q] = s;
            }
        }
        workgroupBarrier();
        var h: array<vec4<f16>, 4>;
        for (var k = 0u; k < 32u; k++) {
            let wv = ws[k][l.x];
            let xv = xs[k][l.y];
            h[0] = fma(wv, vec4<f16>(xv.x), h[0]);
            h[1] = fma(wv, vec4<f16>(xv.y), h[1]);
            h[2] = fma(wv, vec4<f16>(xv.z), h[2]);
            h[3] = fma(wv, vec4<f16>(xv.w), h[3]);
        }
        let sc = xsc[l.y];
        for (var j = 0u; j < 4u; j++) {
            acc[j] += vec4<f32>(h[j]) * sc[j];
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * l.y + j;
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * l.x + i;
            if (t < nt && r < rows) {
                y[t * p[3] + p[4] + r] = acc[j][i];
            }
        }
    }
}
