// x[t][i] += bias[i]. p: 0 n, 1 threads along x, 2 width.
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p[1];
    if (i < p[0]) {
        a[i] += b[i % p[2]];
    }
}
