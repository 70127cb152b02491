// Tiled matrix product for prompts: a workgroup computes 64 weight rows x
// 64 tokens, staging 32-wide slices of decoded weights and activations in
// workgroup memory as vec4s of 4 rows (or 4 tokens), so that each thread's
// 4 x 4 outputs take two vector loads per step of k. Threads 0..127 decode
// the weights (4 rows x 4 values each), threads 128..255 load activations.
// The accumulators are four named vectors, not an array: an array indexed
// by a loop variable can be placed in local memory by the driver, which
// then reads and writes it at every step of k. `wrow` and `store` are in
// `tile_io.wgsl`, which the host appends.
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 unused, 6 bytes per row.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> ws: array<array<vec4<f32>, 16>, 32>;
var<workgroup> xs: array<array<vec4<f32>, 16>, 32>;

// Values kk..kk+4 of token t's activations (zero past the last token).
fn xrow(t: u32, nt: u32, nv: u32, kk: u32) -> vec4<f32> {
    if (t < nt) {
        return x[t * nv + kk / 4u];
    }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    let rows = p[0];
    let cols = p[1];
    let nt = p[2];
    let nv = cols / 4u;
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
        if (tid < 128u) {
            let r = r0 + 4u * q;
            let a0 = wrow(r, rows, kk);
            let a1 = wrow(r + 1u, rows, kk);
            let a2 = wrow(r + 2u, rows, kk);
            let a3 = wrow(r + 3u, rows, kk);
            let b = kq * 4u;
            ws[b][q] = vec4<f32>(a0.x, a1.x, a2.x, a3.x);
            ws[b + 1u][q] = vec4<f32>(a0.y, a1.y, a2.y, a3.y);
            ws[b + 2u][q] = vec4<f32>(a0.z, a1.z, a2.z, a3.z);
            ws[b + 3u][q] = vec4<f32>(a0.w, a1.w, a2.w, a3.w);
        } else {
            let t = t0 + 4u * q;
            let a0 = xrow(t, nt, nv, kk);
            let a1 = xrow(t + 1u, nt, nv, kk);
            let a2 = xrow(t + 2u, nt, nv, kk);
            let a3 = xrow(t + 3u, nt, nv, kk);
            let b = kq * 4u;
            xs[b][q] = vec4<f32>(a0.x, a1.x, a2.x, a3.x);
            xs[b + 1u][q] = vec4<f32>(a0.y, a1.y, a2.y, a3.y);
            xs[b + 2u][q] = vec4<f32>(a0.z, a1.z, a2.z, a3.z);
            xs[b + 3u][q] = vec4<f32>(a0.w, a1.w, a2.w, a3.w);
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let wv = ws[k][l.x];
            let xv = xs[k][l.y];
            acc0 += wv * xv.x;
            acc1 += wv * xv.y;
            acc2 += wv * xv.z;
            acc3 += wv * xv.w;
        }
        workgroupBarrier();
    }
    store4(t0, l.y, r0, l.x, acc0, acc1, acc2, acc3);
}
