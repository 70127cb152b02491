// gate = act(gate) · up, in place (`glu_act.wgsl` is appended). p: 0 n,
// 1 threads along x, 2 kind (0 SiLU, 1 GELU-tanh).
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p[1];
    if (i >= p[0]) {
        return;
    }
    g[i] = glu_act(g[i], p[2]) * u[i];
}
