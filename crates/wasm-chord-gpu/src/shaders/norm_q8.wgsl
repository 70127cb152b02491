// Activations quantized to 8 bits as the CPU backend (and ggml-cpu)
// quantizes them before an integer dot product, kept as integers for the
// one-token matrix-vector kernels (`dot4I8Packed`): the values of
// `quantize.wgsl` modes 0 and 1 before they are decoded again.
//
// Output for a row of dim values (a whole number of blocks): words
// 0..dim/4 hold the values as packed i8 (four per word, the first in the
// low byte); then, per 32-value sub-block s, word dim/4 + 2s holds the
// block's scale (f32 bits: the Q8_0 block's f16-rounded scale, or the
// scale of the Q8_K block the sub-block is part of) and word dim/4 + 2s + 1
// the sum of its 32 values (i32 bits), for the weights whose values carry
// an offset (the K-quants' minimums).
//
// Used by `quantize_q8.wgsl` and appended to `rms_norm.wgsl` and
// `add_rms_norm.wgsl`, which quantize their one-row output in the same
// workgroup (`q8_tail`), so that the products after them need no quantize
// dispatch. The values are held in workgroup memory (`row`, ROWLEN values;
// the norms `keep` their row, the host checks the size against the limit).
// A thread takes 8 values, four threads a 32-value sub-block, 2048 values
// at a time. Every thread of the workgroup calls these functions.

var<workgroup> row: array<f32, ROWLEN>;
// Per thread: largest |x| of its 8 values and the first value of that
// size; then per sub-block (index lid / 4) the same.
var<workgroup> t_max: array<f32, 256>;
var<workgroup> t_val: array<f32, 256>;
var<workgroup> s_max: array<f32, 64>;
var<workgroup> s_val: array<f32, 64>;
// Per thread: the sums of its 8 values as quantized for Q8_0 and Q8_K.
var<workgroup> t_sum: array<vec2<i32>, 256>;

fn keep(i: u32, v: f32) {
    row[i] = v;
}

fn q8_tail(lid: u32, dim: u32, flags: u32) {
    if (flags == 0u) {
        return;
    }
    for (var c = 0u; c < dim; c += 2048u) {
        q8_chunk(lid, c, 0u, dim, flags);
    }
}

// Values c..c+2048 of a row of dim values, held in `row` from index
// c - rbase. flags bit 0: write Q8_0 blocks into q0, bit 1: Q8_K into qk.
fn q8_chunk(lid: u32, c: u32, rbase: u32, dim: u32, flags: u32) {
    let mo = dim / 4u;
    let with_0 = (flags & 1u) != 0u;
    let with_k = (flags & 2u) != 0u;
    workgroupBarrier();
    let g = c / 8u + lid;
    let r = 8u * g - rbase;
    let on = g * 8u < dim;
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    var amax = 0.0;
    var mx = 0.0;
    if (on) {
        a = vec4<f32>(row[r], row[r + 1u], row[r + 2u], row[r + 3u]);
        b = vec4<f32>(row[r + 4u], row[r + 5u], row[r + 6u], row[r + 7u]);
        for (var j = 0u; j < 8u; j++) {
            let v = select(a[j & 3u], b[j & 3u], j >= 4u);
            if (abs(v) > amax) {
                amax = abs(v);
                mx = v;
            }
        }
    }
    t_max[lid] = amax;
    t_val[lid] = mx;
    workgroupBarrier();
    if ((lid & 3u) == 0u) {
        var m = 0.0;
        var v = 0.0;
        for (var j = 0u; j < 4u; j++) {
            if (t_max[lid + j] > m) {
                m = t_max[lid + j];
                v = t_val[lid + j];
            }
        }
        s_max[lid / 4u] = m;
        s_val[lid / 4u] = v;
    }
    workgroupBarrier();
    var sums = vec2<i32>(0);
    if (on) {
        let sm = s_max[lid / 4u];
        let id = select(0.0, 127.0 / sm, sm != 0.0);
        let qa = q8_0_of(a, id);
        let qb = q8_0_of(b, id);
        if (with_0) {
            q0[2u * g] = pack4xI8(qa);
            q0[2u * g + 1u] = pack4xI8(qb);
        }
        sums.x = qa.x + qa.y + qa.z + qa.w + qb.x + qb.y + qb.z + qb.w;
        if (with_k) {
            // Q8_K: the block's first value of largest |x| (bv).
            let first = (lid / 4u) & ~7u;
            var bm = 0.0;
            var bv = 0.0;
            for (var j = 0u; j < 8u; j++) {
                if (s_max[first + j] > bm) {
                    bm = s_max[first + j];
                    bv = s_val[first + j];
                }
            }
            var iscale = 0.0;
            if (bm != 0.0) {
                iscale = -127.0 / bv;
            }
            let ka = q8_k_of(a, iscale);
            let kb = q8_k_of(b, iscale);
            qk[2u * g] = pack4xI8(ka);
            qk[2u * g + 1u] = pack4xI8(kb);
            sums.y = ka.x + ka.y + ka.z + ka.w + kb.x + kb.y + kb.z + kb.w;
            if ((lid & 3u) == 0u) {
                qk[mo + g / 2u] = bitcast<u32>(select(0.0, 1.0 / iscale, bm != 0.0));
            }
        }
        if (with_0 && (lid & 3u) == 0u) {
            q0[mo + g / 2u] = bitcast<u32>(q8_f16r(sm / 127.0));
        }
    }
    t_sum[lid] = sums;
    workgroupBarrier();
    if (on && (lid & 3u) == 0u) {
        let s = t_sum[lid] + t_sum[lid + 1u] + t_sum[lid + 2u] + t_sum[lid + 3u];
        if (with_0) {
            q0[mo + g / 2u + 1u] = bitcast<u32>(s.x);
        }
        if (with_k) {
            qk[mo + g / 2u + 1u] = bitcast<u32>(s.y);
        }
    }
}
