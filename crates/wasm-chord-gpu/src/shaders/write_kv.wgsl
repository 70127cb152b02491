// `write_rows.wgsl` for K and V at once: kd[rows[i]] = ks[i] and
// vd[rows[i]] = vs[i], rounded to f16; the first n threads take K, the next
// n V. p: 0 n (rows · width), 1 threads along x, 2 width.
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> kd: array<f32>;
@group(0) @binding(2) var<storage, read_write> vd: array<f32>;
@group(0) @binding(3) var<storage, read> ks: array<f32>;
@group(0) @binding(4) var<storage, read> vs: array<f32>;
@group(0) @binding(5) var<storage, read> rows: array<u32>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x + gid.y * p[1];
    let n = p[0];
    let wd = p[2];
    if (g < n) {
        kd[rows[g / wd] * wd + g % wd] = f16r(ks[g]);
    } else if (g < 2u * n) {
        let i = g - n;
        vd[rows[i / wd] * wd + i % wd] = f16r(vs[i]);
    }
}
