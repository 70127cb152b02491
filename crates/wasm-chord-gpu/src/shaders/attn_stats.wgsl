@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qpos: array<u32>;
@group(0) @binding(4) var<storage, read> kpos: array<u32>;
@group(0) @binding(5) var<storage, read_write> stats: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = item(wid, lid);
    let start = it.split * p[9];
    let end = min(start + p[9], p[4]);
    var m = NEG;
    var l = 0.0;
    for (var j0 = start; j0 < end; j0 += WG) {
        let s = score(it, j0 + lid, end);
        let cmax = reduce_max(lid, s);
        if (cmax > NEG) {
            let m_new = max(m, cmax);
            let csum = reduce_sum(lid, select(0.0, exp(s - m_new), s > NEG));
            l = l * exp(m - m_new) + csum;
            m = m_new;
        }
    }
    if (it.valid && lid == 0u) {
        stats[it.idx * p[8] + it.split] = vec2<f32>(m, l);
    }
}
