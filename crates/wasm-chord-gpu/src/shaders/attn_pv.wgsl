@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> qpos: array<u32>;
@group(0) @binding(5) var<storage, read> kpos: array<u32>;
@group(0) @binding(6) var<storage, read> stats: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;

var<workgroup> ps: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = item(wid, lid);
    let ns = p[8];
    let hd = p[3];
    // The softmax maximum and sum over every range.
    var m = NEG;
    for (var c = 0u; c < ns; c++) {
        m = max(m, stats[min(it.idx, p[0] * p[1] - 1u) * ns + c].x);
    }
    var l = 0.0;
    for (var c = 0u; c < ns; c++) {
        let st = stats[min(it.idx, p[0] * p[1] - 1u) * ns + c];
        if (st.y > 0.0) {
            l += st.y * exp(st.x - m);
        }
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let start = it.split * p[9];
    let end = min(start + p[9], p[4]);
    let kvw = p[2] * hd;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var j0 = start; j0 < end; j0 += WG) {
        let s = score(it, j0 + lid, end);
        let pj = select(0.0, f16r(exp(s - m) * inv), s > NEG);
        ps[lid] = pj;
        let any = reduce_max(lid, pj);
        if (any > 0.0) {
            // Rows four at a time, all dimensions of this thread: sixteen
            // independent loads per step.
            let cnt = min(WG, end - j0);
            let vb = j0 * kvw + it.kvh * hd;
            var jj = 0u;
            for (; jj + 4u <= cnt; jj += 4u) {
                let p0 = ps[jj];
                let p1 = ps[jj + 1u];
                let p2 = ps[jj + 2u];
                let p3 = ps[jj + 3u];
                if (p0 + p1 + p2 + p3 != 0.0) {
                    let o = vb + jj * kvw;
                    for (var c = 0u; c < 4u; c++) {
                        let d = lid + c * WG;
                        if (d < hd) {
                            acc[c] += p0 * v[o + d] + p1 * v[o + kvw + d] + p2 * v[o + 2u * kvw + d] + p3 * v[o + 3u * kvw + d];
                        }
                    }
                }
            }
            for (; jj < cnt; jj++) {
                let pw = ps[jj];
                for (var c = 0u; c < 4u; c++) {
                    let d = lid + c * WG;
                    if (d < hd) {
                        acc[c] += pw * v[vb + jj * kvw + d];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (it.valid) {
        let o = (it.idx * ns + it.split) * hd;
        for (var c = 0u; c < 4u; c++) {
            let d = lid + c * WG;
            if (d < hd) {
                part[o + d] = acc[c];
            }
        }
    }
}
