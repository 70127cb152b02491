// Matrix-vector products for a few tokens (at most 8) on rows that are a
// whole number of 32-value sub-blocks: a workgroup of 256 threads takes
// 256 / TPR weight rows, TPR threads per row; each thread decodes a whole
// sub-block at a time (its scales once, eight vec4s of weights) and dots
// it with every token of the batch; partial sums are added by a tree in
// workgroup memory, or, when the adapter has subgroups at least TPR wide,
// by a butterfly of subgroup shuffles (no barrier). TPR is substituted by
// the host.
// p: 0 rows of this part, 1 cols, 2 tokens, 3 rows of the output,
//    4 first output row of this part, 5 workgroups along x, 6 bytes per row,
//    7 first token, 8 activation kind of the fused GLU variant, whose store
//    writes y = act(y) · sum (y holding the gate product).

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 2048>;

fn store(i: u32, v: f32) { y[i] = v; }

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // SLOT-BEGIN (the subgroup variant numbers threads by subgroup)
    let slot = lid;
    // SLOT-END
    let lane = slot % TPR;
    let r = (wid.x + wid.y * p[5]) * (WG / TPR) + slot / TPR;
    let rows = p[0];
    let nt = p[2];
    let nv = p[1] / 4u;
    let nsb = p[1] / 32u;
    let t0 = p[7];
    var acc: array<f32, 8>;
    if (r < rows) {
        let base = r * p[6];
        for (var sb = lane; sb < nsb; sb += TPR) {
            let wv = deq32(base, sb * 32u);
            for (var t = 0u; t < nt; t++) {
                let xo = (t0 + t) * nv + sb * 8u;
                var s = vec4<f32>(0.0);
                for (var k = 0u; k < 8u; k++) {
                    s += wv[k] * x[xo + k];
                }
                acc[t] += (s.x + s.y) + (s.z + s.w);
            }
        }
    }
    // REDUCE-BEGIN (the subgroup variant replaces this block)
    for (var t = 0u; t < nt; t++) {
        red[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var t = 0u; t < nt; t++) {
                red[t * WG + lid] += red[t * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (r < rows && lane < nt) {
        store((t0 + lane) * p[3] + p[4] + r, red[lane * WG + lid - lane]);
    }
    // REDUCE-END
}
