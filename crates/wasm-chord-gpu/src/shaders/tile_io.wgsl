// Loads and stores of the tiled kernels (`matmul.wgsl`, `matmul_f16.wgsl`,
// `matmul_q8.wgsl`, which declare `p`, `y` and, with the decoders
// appended, `deq4`).
// p: 0 rows of this part, 2 tokens, 3 rows of the output, 4 first output
// row of this part, 6 bytes per row.

// Values kk..kk+4 of weight row r (zero past the last row).
fn wrow(r: u32, rows: u32, kk: u32) -> vec4<f32> {
    if (r < rows) {
        return deq4(r * p[6], kk);
    }
    return vec4<f32>(0.0);
}

// Writes one token's 4 outputs (rows r0 + 4 * lx ..).
fn store(t: u32, r0: u32, lx: u32, v: vec4<f32>) {
    if (t >= p[2]) {
        return;
    }
    let r = r0 + 4u * lx;
    let o = t * p[3] + p[4] + r;
    if (r < p[0]) { y[o] = v.x; }
    if (r + 1u < p[0]) { y[o + 1u] = v.y; }
    if (r + 2u < p[0]) { y[o + 2u] = v.z; }
    if (r + 3u < p[0]) { y[o + 3u] = v.w; }
}

// Writes a thread's 4 x 4 outputs: tokens t0 + 4 * ly .. + 4 (acc0..acc3),
// rows r0 + 4 * lx ...
fn store4(t0: u32, ly: u32, r0: u32, lx: u32, acc0: vec4<f32>, acc1: vec4<f32>, acc2: vec4<f32>, acc3: vec4<f32>) {
    let t = t0 + 4u * ly;
    store(t, r0, lx, acc0);
    store(t + 1u, r0, lx, acc1);
    store(t + 2u, r0, lx, acc2);
    store(t + 3u, r0, lx, acc3);
}
