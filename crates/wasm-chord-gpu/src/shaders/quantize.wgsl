// Activations as the CPU backend (and ggml-cpu) sees them before a dot
// product with a quantized weight: quantized to 8 bits and decoded again.
// One thread per value; a workgroup of 256 holds 8 Q8_0 blocks or one Q8_K
// block and finds each block's largest |x| (first one on ties) by a tree
// reduction within the block.
// p: 0 values (a whole number of blocks), 1 mode (0: Q8_0 blocks of 32
// with an f16 scale, 1: Q8_K blocks of 256, 2: f16 rounding), 2 workgroups
// along x.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> ra: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = (wid.x + wid.y * p[2]) * 256u + lid;
    let n = p[0];
    let mode = p[1];
    let ok = g < n;
    var v = 0.0;
    if (ok) {
        v = x[g];
    }
    if (mode == 2u) {
        if (ok) {
            y[g] = f16r(v);
        }
        return;
    }
    let bs = select(32u, 256u, mode == 1u);
    let lane = lid % bs;
    ra[lid] = abs(v);
    ri[lid] = lid;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (s < bs && lane < s) {
            let o = lid + s;
            if (ra[o] > ra[lid]) {
                ra[lid] = ra[o];
                ri[lid] = ri[o];
            }
        }
        workgroupBarrier();
    }
    let head = lid - lane;
    let amax = ra[head];
    if (!ok) {
        return;
    }
    if (mode == 0u) {
        // quantize_row_q8_0 (x86 SIMD flavour): d = amax/127, q = round(x·127/amax).
        let id = select(0.0, 127.0 / amax, amax != 0.0);
        y[g] = clamp(round(v * id), -128.0, 127.0) * f16r(amax / 127.0);
    } else if (amax == 0.0) {
        y[g] = 0.0;
    } else {
        // quantize_row_q8_K: iscale = -127/max (signed), d = 1/iscale.
        let mx = x[g - lane + (ri[head] - head)];
        let iscale = -127.0 / mx;
        y[g] = min(round(iscale * v), 127.0) * (1.0 / iscale);
    }
}
