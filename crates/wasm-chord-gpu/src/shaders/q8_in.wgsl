// One token's activations quantized to 8 bits inside the matrix-vector
// kernel that multiplies them (appended to `matvec32.wgsl`), so that the
// product needs no quantize dispatch before it: every workgroup quantizes
// the whole row for itself, from the f32 input `xin`, into workgroup memory
// `xq`, in the layout `norm_q8.wgsl` writes to a buffer (words 0..cols/4:
// the values as packed i8; then per 32-value sub-block s, word
// cols/4 + 2s its scale as f32 bits and cols/4 + 2s + 1 the sum of its
// values as i32 bits), with the same arithmetic, so the bits are the same.
// The host binds this only where the row is short and the workgroups few
// (each reads the whole row).
//
// A thread takes 16 values (one vec4 of `xq`) per step, WG * 16 values a
// step. BG: the threads of one block (2: Q8_0 blocks of 32, 16: Q8_K
// blocks of 256); MODE_K: whether they are Q8_K. The roundings are in
// `q8_round.wgsl`, appended.

var<workgroup> xq: array<vec4<u32>, XQLEN>;
var<workgroup> qi_max: array<f32, WGSIZE>;
var<workgroup> qi_val: array<f32, WGSIZE>;
var<workgroup> qi_d: array<f32, WGSIZE>;
var<workgroup> qi_sum: array<i32, WGSIZE>;

fn q8_in(lid: u32) {
    let n = p[0];
    let mo = n / 16u;
    for (var c = 0u; c < n; c += WG * 16u) {
        let g = c / 16u + lid;
        let on = g * 16u < n;
        var v0 = vec4<f32>(0.0);
        var v1 = vec4<f32>(0.0);
        var v2 = vec4<f32>(0.0);
        var v3 = vec4<f32>(0.0);
        var amax = 0.0;
        var mx = 0.0;
        if (on) {
            v0 = xin[4u * g];
            v1 = xin[4u * g + 1u];
            v2 = xin[4u * g + 2u];
            v3 = xin[4u * g + 3u];
            // The first value of the largest |x|, in order.
            for (var j = 0u; j < 16u; j++) {
                var v = v0[j & 3u];
                if (j >= 12u) {
                    v = v3[j & 3u];
                } else if (j >= 8u) {
                    v = v2[j & 3u];
                } else if (j >= 4u) {
                    v = v1[j & 3u];
                }
                if (abs(v) > amax) {
                    amax = abs(v);
                    mx = v;
                }
            }
        }
        qi_max[lid] = amax;
        qi_val[lid] = mx;
        workgroupBarrier();
        let first = lid & ~(BG - 1u);
        var bm = 0.0;
        var bv = 0.0;
        for (var j = 0u; j < BG; j++) {
            if (qi_max[first + j] > bm) {
                bm = qi_max[first + j];
                bv = qi_val[first + j];
            }
        }
        var s = 0.0;
        var d = 0.0;
        if (MODE_K) {
            if (bm != 0.0) {
                s = -127.0 / bv;
                d = 1.0 / s;
            }
        } else {
            s = select(0.0, 127.0 / bm, bm != 0.0);
            d = q8_f16r(bm / 127.0);
        }
        var q0 = q8_0_of(v0, s);
        var q1 = q8_0_of(v1, s);
        var q2 = q8_0_of(v2, s);
        var q3 = q8_0_of(v3, s);
        if (MODE_K) {
            q0 = q8_k_of(v0, s);
            q1 = q8_k_of(v1, s);
            q2 = q8_k_of(v2, s);
            q3 = q8_k_of(v3, s);
        }
        let sum = (q0.x + q0.y + q0.z + q0.w) + (q1.x + q1.y + q1.z + q1.w)
            + (q2.x + q2.y + q2.z + q2.w) + (q3.x + q3.y + q3.z + q3.w);
        if (on) {
            xq[g] = vec4<u32>(pack4xI8(q0), pack4xI8(q1), pack4xI8(q2), pack4xI8(q3));
        }
        qi_d[lid] = d;
        qi_sum[lid] = sum;
        workgroupBarrier();
        // Two sub-blocks' scales and sums, by the thread of their first
        // 16 values.
        if (on && (lid & 3u) == 0u) {
            xq[mo + g / 4u] = vec4<u32>(
                bitcast<u32>(qi_d[lid]),
                bitcast<u32>(qi_sum[lid] + qi_sum[lid + 1u]),
                bitcast<u32>(qi_d[lid + 2u]),
                bitcast<u32>(qi_sum[lid + 2u] + qi_sum[lid + 3u]),
            );
        }
        workgroupBarrier();
    }
}
