// One-token Q4_K products, two sub-blocks at a time: sub-blocks 2pr and
// 2pr + 1 of a block are the low and the high nibbles of the same 32
// bytes, so a thread that takes both loads them once, as two 16-byte
// words, where a thread per sub-block loads them twice, four bytes at a
// time (eight loads each). The weight is bound as 16-byte words (`wv`):
// a Q4_K block is 144 bytes and a row a whole number of blocks, so a row's
// blocks and their nibbles start on 16-byte boundaries.
//
// Appended, with `dequant.wgsl` and `dot_q8.wgsl` reading their words
// through `w_at`, for a weight of the matrix-vector kernel whose
// activations are 8-bit (`quantize_q8.wgsl` layout, Q8_K blocks).

fn w_at(i: u32) -> u32 {
    return wv[i >> 2u][i & 3u];
}

// Byte k (0..12) of a Q4_K block's scales, given as three words.
fn sc_byte(sc: vec3<u32>, k: u32) -> u32 {
    return (sc[k >> 2u] >> (8u * (k & 3u))) & 0xffu;
}

// get_scale_min_k4 (ggml) on the scales as words.
fn sc_min_k4(sc: vec3<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(sc_byte(sc, j) & 63u), f32(sc_byte(sc, j + 4u) & 63u));
    }
    let a = sc_byte(sc, j + 4u);
    return vec2<f32>(
        f32((a & 15u) | ((sc_byte(sc, j - 4u) >> 6u) << 4u)),
        f32((a >> 4u) | ((sc_byte(sc, j) >> 6u) << 4u))
    );
}

// (Component 3 by index: `w` is renamed as the weight.)
fn dot4x(q: vec4<u32>, x: vec4<u32>) -> i32 {
    return dot4I8Packed(q.x, x.x) + dot4I8Packed(q.y, x.y) + dot4I8Packed(q.z, x.z) + dot4I8Packed(q[3], x[3]);
}

// Sub-blocks 2pr and 2pr + 1 of the row starting at byte `base` against
// their activations (values a0, b0 and a1, b1; sums xs0, xs1): each
// sub-block's d·scale·Σq·x − dmin·min·Σx, as `idot_q4_k` gives it.
fn idot2_q4_k(base: u32, pr: u32, a0: vec4<u32>, b0: vec4<u32>, a1: vec4<u32>, b1: vec4<u32>,
              xs0: i32, xs1: i32) -> vec2<f32> {
    let blk = (base >> 4u) + (pr >> 2u) * 9u;
    let j = 2u * (pr & 3u);
    let head = wv[blk];
    let dm = unpack2x16float(head.x);
    let sc = head.yzw;
    let sm0 = sc_min_k4(sc, j);
    let sm1 = sc_min_k4(sc, j + 1u);
    let q0 = wv[blk + 1u + j];
    let q1 = wv[blk + 2u + j];
    let m = vec4<u32>(0x0f0f0f0fu);
    let s0 = dot4x(q0 & m, a0) + dot4x(q1 & m, b0);
    let s1 = dot4x((q0 >> vec4<u32>(4u)) & m, a1) + dot4x((q1 >> vec4<u32>(4u)) & m, b1);
    return vec2<f32>(
        dm.x * sm0.x * f32(s0) - dm.y * sm0.y * f32(xs0),
        dm.x * sm1.x * f32(s1) - dm.y * sm1.y * f32(xs1)
    );
}
