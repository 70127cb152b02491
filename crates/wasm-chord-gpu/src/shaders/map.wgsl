// In-place maps. p: 0 n, 1 threads along x, 2 op (0: x·s, 1: cap·tanh(x/cap)),
// 3 s or cap (f32 bits).
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p[1];
    if (i >= p[0]) {
        return;
    }
    let s = bitcast<f32>(p[3]);
    if (p[2] == 0u) {
        a[i] = a[i] * s;
    } else {
        a[i] = s * tanh(clamp(a[i] * (1.0 / s), -15.0, 15.0));
    }
}
