// A residual add and the RMSNorm after it, one workgroup per row:
// x += b (b first RMS-normalized and times bw when p[4] is 1), then
// y = rms_norm(x) · w. The products are those of `add.wgsl` and
// `rms_norm.wgsl`; the sums of squares are theirs in the same order (the
// result equals the three kernels run one after the other) unless the
// host swaps in its subgroup version of `total`.
// p: 0 dim, 1 eps (f32 bits), 2 rows, 3 workgroups along x, 4 b is
// normalized first (0/1), 5 `norm_q8.wgsl` flags (the variant with it).

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bw: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

// The workgroup's total of `s` (every thread calls it).
//TOTAL
fn total(lid: u32, s: f32) -> f32 {
    red[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32
        //SGARGS
) {
    //SGSET
    let r = wid.x + wid.y * p[3];
    let dim = p[0];
    let eps = bitcast<f32>(p[1]);
    let ok = r < p[2];
    let normed = p[4] == 1u;
    let base = r * dim;
    var s = 0.0;
    var bscale = 1.0;
    if (normed) {
        if (ok) {
            for (var i = lid; i < dim; i += WG) {
                let v = b[base + i];
                s += v * v;
            }
        }
        bscale = 1.0 / sqrt(total(lid, s) / f32(dim) + eps);
    }
    s = 0.0;
    if (ok) {
        for (var i = lid; i < dim; i += WG) {
            var h = b[base + i];
            if (normed) {
                h = (h * bscale) * bw[i];
            }
            let v = x[base + i] + h;
            x[base + i] = v;
            s += v * v;
        }
    }
    let scale = 1.0 / sqrt(total(lid, s) / f32(dim) + eps);
    if (ok) {
        for (var i = lid; i < dim; i += WG) {
            let v = (x[base + i] * scale) * w[i];
            y[base + i] = v;
            keep(i, v);
        }
    }
    //TAIL
}
