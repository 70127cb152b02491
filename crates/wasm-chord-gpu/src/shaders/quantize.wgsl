// Activations as the CPU backend (and ggml-cpu) sees them before a dot
// product with a quantized weight: quantized to 8 bits and decoded again.
// p: 0 values (a whole number of blocks), 1 mode (0: Q8_0 blocks of 32
// with an f16 scale, 1: Q8_K blocks of 256, 2: f16 rounding), 2 threads
// along x.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x + gid.y * p[2];
    let n = p[0];
    let mode = p[1];
    if (mode == 2u) {
        if (b < n) {
            y[b] = f16r(x[b]);
        }
        return;
    }
    let bs = select(32u, 256u, mode == 1u);
    let start = b * bs;
    if (start >= n) {
        return;
    }
    var amax = 0.0;
    var mx = 0.0;
    for (var i = 0u; i < bs; i++) {
        let v = x[start + i];
        if (amax < abs(v)) {
            amax = abs(v);
            mx = v;
        }
    }
    if (mode == 0u) {
        // quantize_row_q8_0 (x86 SIMD flavour): d = amax/127, q = round(x·127/amax).
        let id = select(0.0, 127.0 / amax, amax != 0.0);
        let d = f16r(amax / 127.0);
        for (var i = 0u; i < bs; i++) {
            y[start + i] = clamp(round(x[start + i] * id), -128.0, 127.0) * d;
        }
    } else {
        // quantize_row_q8_K: iscale = -127/max (signed), d = 1/iscale.
        if (amax == 0.0) {
            for (var i = 0u; i < bs; i++) {
                y[start + i] = 0.0;
            }
            return;
        }
        let iscale = -127.0 / mx;
        let d = 1.0 / iscale;
        for (var i = 0u; i < bs; i++) {
            y[start + i] = min(round(iscale * x[start + i]), 127.0) * d;
        }
    }
}
