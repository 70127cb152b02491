// Tiled matrix product for prompts: a workgroup computes 64 weight rows x
// 64 tokens, staging 32-wide slices of decoded weights and activations in
// workgroup memory as vec4s of 4 rows (or 4 tokens), so that each thread's
// 4 x 4 outputs take two vector loads per step of k. Threads 0..127 decode
// the weights (4 rows x 4 values each), threads 128..255 load activations.
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 unused, 6 bytes per row.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> ws: array<array<vec4<f32>, 16>, 32>;
var<workgroup> xs: array<array<vec4<f32>, 16>, 32>;

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
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < cols; k0 += 32u) {
        let kk = k0 + kq * 4u;
        var a: array<vec4<f32>, 4>;
        if (tid < 128u) {
            for (var i = 0u; i < 4u; i++) {
                let r = r0 + 4u * q + i;
                if (r < rows && kk < cols) {
                    a[i] = deq4(r * p[6], kk);
                } else {
                    a[i] = vec4<f32>(0.0);
                }
            }
            for (var c = 0u; c < 4u; c++) {
                ws[kq * 4u + c][q] = vec4<f32>(a[0][c], a[1][c], a[2][c], a[3][c]);
            }
        } else {
            for (var i = 0u; i < 4u; i++) {
                let t = t0 + 4u * q + i;
                if (t < nt && kk < cols) {
                    a[i] = x[t * nv + kk / 4u];
                } else {
                    a[i] = vec4<f32>(0.0);
                }
            }
            for (var c = 0u; c < 4u; c++) {
                xs[kq * 4u + c][q] = vec4<f32>(a[0][c], a[1][c], a[2][c], a[3][c]);
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let wv = ws[k][l.x];
            let xv = xs[k][l.y];
            acc[0] += wv * xv.x;
            acc[1] += wv * xv.y;
            acc[2] += wv * xv.z;
            acc[3] += wv * xv.w;
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
