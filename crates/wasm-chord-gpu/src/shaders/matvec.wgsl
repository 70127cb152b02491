// Matrix-vector products for a few tokens: one workgroup per weight row,
// threads striding over the row four values at a time, every token of the
// batch (at most 8) against each decoded group of weights.
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 workgroups along x, 6 bytes per row,
//    7 first token.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 512>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * p[5];
    let rows = p[0];
    let nt = p[2];
    let nv = p[1] / 4u;
    var acc: array<f32, 8>;
    if (r < rows) {
        let base = r * p[6];
        for (var i = lid; i < nv; i += WG) {
            let wv = deq4(base, i * 4u);
            for (var t = 0u; t < nt; t++) {
                acc[t] += dot(wv, x[(p[7] + t) * nv + i]);
            }
        }
    }
    for (var t = 0u; t < 8u; t++) {
        red[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var t = 0u; t < 8u; t++) {
                red[t * WG + lid] += red[t * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (r < rows && lid < nt) {
        y[(p[7] + lid) * p[3] + p[4] + r] = red[lid * WG];
    }
}
