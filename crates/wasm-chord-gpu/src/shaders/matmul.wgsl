// Tiled matrix product for prompts: a workgroup computes 64 weight rows x
// 64 tokens, staging 32-wide slices of decoded weights and activations in
// workgroup memory; each thread accumulates 4 x 4 outputs (rows tx + 16i,
// tokens ty + 16j, so that neighbouring threads write neighbouring rows).
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 unused, 6 bytes per row.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> ws: array<array<f32, 64>, 32>;
var<workgroup> xs: array<array<f32, 64>, 32>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    let rows = p[0];
    let cols = p[1];
    let nt = p[2];
    let nv = cols / 4u;
    let r0 = wid.x * 64u;
    let t0 = wid.y * 64u;
    let tid = l.y * 16u + l.x;
    // Loader coordinates: 64 rows (or tokens) x 8 values each.
    let lr = tid / 4u;
    let lk = (tid % 4u) * 8u;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < cols; k0 += 32u) {
        let wr = r0 + lr;
        var a = vec4<f32>(0.0);
        var b = vec4<f32>(0.0);
        if (wr < rows && k0 + lk < cols) {
            let base = wr * p[6];
            a = deq4(base, k0 + lk);
            b = deq4(base, k0 + lk + 4u);
        }
        ws[lk][lr] = a.x; ws[lk + 1u][lr] = a.y; ws[lk + 2u][lr] = a.z; ws[lk + 3u][lr] = a.w;
        ws[lk + 4u][lr] = b.x; ws[lk + 5u][lr] = b.y; ws[lk + 6u][lr] = b.z; ws[lk + 7u][lr] = b.w;
        let xt = t0 + lr;
        var c = vec4<f32>(0.0);
        var d = vec4<f32>(0.0);
        if (xt < nt && k0 + lk < cols) {
            let xi = xt * nv + (k0 + lk) / 4u;
            c = x[xi];
            d = x[xi + 1u];
        }
        xs[lk][lr] = c.x; xs[lk + 1u][lr] = c.y; xs[lk + 2u][lr] = c.z; xs[lk + 3u][lr] = c.w;
        xs[lk + 4u][lr] = d.x; xs[lk + 5u][lr] = d.y; xs[lk + 6u][lr] = d.z; xs[lk + 7u][lr] = d.w;
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            var wv: array<f32, 4>;
            var xv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                wv[i] = ws[k][l.x + 16u * i];
                xv[i] = xs[k][l.y + 16u * i];
            }
            for (var j = 0u; j < 4u; j++) {
                for (var i = 0u; i < 4u; i++) {
                    acc[j][i] += wv[i] * xv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + l.y + 16u * j;
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + l.x + 16u * i;
            if (t < nt && r < rows) {
                y[t * p[3] + p[4] + r] = acc[j][i];
            }
        }
    }
}
