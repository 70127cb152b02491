// out[i][d] = Σ over splits of part[i][split][d]. p: 0 items · head_dim,
// 1 threads along x, 2 head_dim, 3 splits.
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x + gid.y * p[1];
    if (g >= p[0]) {
        return;
    }
    let hd = p[2];
    let ns = p[3];
    let i = g / hd;
    let d = g % hd;
    var s = 0.0;
    for (var c = 0u; c < ns; c++) {
        s += part[(i * ns + c) * hd + d];
    }
    o[g] = s;
}
