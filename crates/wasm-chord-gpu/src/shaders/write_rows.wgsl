// dst[rows[i]] = src[i] rounded to f16 (the KV cache's precision).
// p: 0 n (rows · width), 1 threads along x, 2 width.
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p[1];
    if (i >= p[0]) {
        return;
    }
    let wd = p[2];
    let v = src[i];
    dst[rows[i / wd] * wd + i % wd] = unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}
