// RMSNorm: one workgroup per row. p: 0 dim, 1 eps (f32 bits), 2 rows,
// 3 workgroups along x, 4 `norm_q8.wgsl` flags (the variant with it).

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * p[3];
    let dim = p[0];
    let ok = r < p[2];
    let base = r * dim;
    var s = 0.0;
    if (ok) {
        for (var i = lid; i < dim; i += WG) {
            let v = x[base + i];
            s += v * v;
        }
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let mean = red[0] / f32(dim);
    let scale = 1.0 / sqrt(mean + bitcast<f32>(p[1]));
    if (ok) {
        for (var i = lid; i < dim; i += WG) {
            let v = (x[base + i] * scale) * w[i];
            y[base + i] = v;
            keep(i, v);
        }
    }
    //TAIL
}
