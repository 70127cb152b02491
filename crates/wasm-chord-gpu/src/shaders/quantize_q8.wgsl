// Activations quantized to 8 bits (`norm_q8.wgsl`, appended, says how and
// in which layout), 2048 values per workgroup. p: 0 values (a whole number
// of blocks), 1 mode (0: Q8_0 blocks of 32 into q0, 1: Q8_K blocks of 256
// into qk), 2 workgroups along x.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> q0: array<u32>;
@group(0) @binding(3) var<storage, read_write> qk: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = (wid.x + wid.y * p[2]) * 2048u;
    let n = p[0];
    for (var i = lid; i < 2048u; i += 256u) {
        if (c + i < n) {
            row[i] = x[c + i];
        }
    }
    q8_chunk(lid, c, c, n, select(1u, 2u, p[1] == 1u));
}
