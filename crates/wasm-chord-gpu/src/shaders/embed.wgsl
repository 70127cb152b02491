// Embedding rows: out[t] = table[row] · scale for (t, row) pairs.
// p: 0 pairs · cols/4, 1 threads along x, 2 cols, 3 bytes per row, 4 scale (f32 bits).
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> pairs: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x + gid.y * p[1];
    if (g >= p[0]) {
        return;
    }
    let nv = p[2] / 4u;
    let e = g / nv;
    let i = g % nv;
    let t = pairs[2u * e];
    let row = pairs[2u * e + 1u];
    y[t * nv + i] = deq4(row * p[3], i * 4u) * bitcast<f32>(p[4]);
}
