// A residual add and the RMSNorm after it, one workgroup per row:
// x += b (b first RMS-normalized and times bw when p[4] is 1), then
// y = rms_norm(x) · w. The products are those of `add.wgsl` and
// `rms_norm.wgsl`; the sums of squares are theirs in the same order (the
// result equals the three kernels run one after the other) unless the
// host swaps in its subgroup version of `total`.
// p: 0 dim, 1 eps (f32 bits), 2 rows, 3 workgroups along x, 4 b is
// normalized first (0/1), 5 `norm_q8.wgsl` flags (the variant with it).
//
// Rows of at most 8 × 256 values (every model up to ~3B) take `short_row`:
// a thread loads its 8 values of x, b and the norm weights at once and keeps
// them in registers, so the kernel waits for memory twice (the loads, the
// stores) rather than once per value in each of three loops. The sums are
// the same, in the same order.

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bw: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

// The workgroup's total of `s` (every thread calls it).
//TOTAL
fn total(lid: u32, s: f32) -> f32 {
    red[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}


// Index i of the row at base in x (src 0) or b (1), or of the norm weights
// w (2) or bw (3); 0 past the row's n values.
fn ld(src: u32, base: u32, i: u32, n: u32) -> f32 {
    if (i >= n) {
        return 0.0;
    }
    switch src {
        case 0u: { return x[base + i]; }
        case 1u: { return b[base + i]; }
        case 2u: { return w[i]; }
        default: { return bw[i]; }
    }
}
// Values 4h..4h+4 of this thread's eight (indices lid + k·WG).
fn ld4(src: u32, base: u32, lid: u32, n: u32, h: u32) -> vec4<f32> {
    let i = lid + 4u * h * WG;
    return vec4<f32>(ld(src, base, i, n), ld(src, base, i + WG, n), ld(src, base, i + 2u * WG, n), ld(src, base, i + 3u * WG, n));
}
// The sum of squares of four values added one after the other to s.
fn sq4(s: f32, v: vec4<f32>) -> f32 {
    var t = s;
    t += v.x * v.x;
    t += v.y * v.y;
    t += v.z * v.z;
    t += v.w * v.w;
    return t;
}
// Stores index i of the row into x (to_y false) or y (and `keep`s it).
fn st(to_y: bool, base: u32, i: u32, n: u32, v: f32) {
    if (i < n) {
        if (to_y) {
            y[base + i] = v;
            keep(i, v);
        } else {
            x[base + i] = v;
        }
    }
}
fn st4(to_y: bool, base: u32, lid: u32, n: u32, h: u32, v: vec4<f32>) {
    let i = lid + 4u * h * WG;
    st(to_y, base, i, n, v.x);
    st(to_y, base, i + WG, n, v.y);
    st(to_y, base, i + 2u * WG, n, v.z);
    st(to_y, base, i + 3u * WG, n, v.w);
}

// A row of at most 8·WG values (see the top).
fn short_row(lid: u32, base: u32, dim: u32, n: u32, eps: f32, normed: bool) {
    // Values lid + k·WG: k = 0..4 in the first vector, 4..8 in the second.
    let x0 = ld4(0u, base, lid, n, 0u);
    let x1 = ld4(0u, base, lid, n, 1u);
    var b0 = ld4(1u, base, lid, n, 0u);
    var b1 = ld4(1u, base, lid, n, 1u);
    let w0 = ld4(2u, 0u, lid, n, 0u);
    let w1 = ld4(2u, 0u, lid, n, 1u);
    if (normed) {
        let bw0 = ld4(3u, 0u, lid, n, 0u);
        let bw1 = ld4(3u, 0u, lid, n, 1u);
        let bscale = 1.0 / sqrt(total(lid, sq4(sq4(0.0, b0), b1)) / f32(dim) + eps);
        b0 = (b0 * bscale) * bw0;
        b1 = (b1 * bscale) * bw1;
    }
    let v0 = x0 + b0;
    let v1 = x1 + b1;
    st4(false, base, lid, n, 0u, v0);
    st4(false, base, lid, n, 1u, v1);
    let scale = 1.0 / sqrt(total(lid, sq4(sq4(0.0, v0), v1)) / f32(dim) + eps);
    st4(true, base, lid, n, 0u, (v0 * scale) * w0);
    st4(true, base, lid, n, 1u, (v1 * scale) * w1);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32
        //SGARGS
) {
    //SGSET
    let r = wid.x + wid.y * p[3];
    let dim = p[0];
    let eps = bitcast<f32>(p[1]);
    let ok = r < p[2];
    let normed = p[4] == 1u;
    let base = r * dim;
    if (dim <= 8u * WG) {
        short_row(lid, base, dim, select(0u, dim, ok), eps, normed);
    } else {
        long_row(lid, base, dim, ok, eps, normed);
    }
    //TAIL
}

fn long_row(lid: u32, base: u32, dim: u32, ok: bool, eps: f32, normed: bool) {
    var s = 0.0;
    var bscale = 1.0;
    if (normed) {
        if (ok) {
            for (var i = lid; i < dim; i += WG) {
                let v = b[base + i];
                s += v * v;
            }
        }
        bscale = 1.0 / sqrt(total(lid, s) / f32(dim) + eps);
    }
    s = 0.0;
    if (ok) {
        for (var i = lid; i < dim; i += WG) {
            var h = b[base + i];
            if (normed) {
                h = (h * bscale) * bw[i];
            }
            let v = x[base + i] + h;
            x[base + i] = v;
            s += v * v;
        }
    }
    let scale = 1.0 / sqrt(total(lid, s) / f32(dim) + eps);
    if (ok) {
        for (var i = lid; i < dim; i += WG) {
            let v = (x[base + i] * scale) * w[i];
            y[base + i] = v;
            keep(i, v);
        }
    }
}
