// Integer dot products of one 32-value sub-block of a weight row (the row
// starting at byte `base`, sub-block `sb`) with 32 activations quantized
// to 8 bits (`quantize_q8.wgsl`): `a` and `b` hold the activations as
// packed i8, `xs` their sum. `idot_*` returns the sub-block's dot product
// before the activations' scale, as ggml-cpu's vec_dot_*_q8_* computes it:
// the integer sums are exact and the weight's scales are applied to them.
// Appended to `dequant.wgsl` (its `w`, `wu32`, `wf16`, `scale_min_k4`).

// Four bytes holding values in [0, 2c) as the signed bytes value − c
// (bytewise, with no borrow between bytes).
fn unbias(q: u32, c: u32) -> u32 {
    return ((q | 0x80808080u) - c * 0x01010101u) ^ 0x80808080u;
}

// The values 4k..4k+4 of the activations.
fn xw(a: vec4<u32>, b: vec4<u32>, k: u32) -> u32 {
    return select(a[k & 3u], b[k & 3u], k >= 4u);
}

// block_q8_0 against Q8_0 activations.
fn idot_q8_0(base: u32, sb: u32, a: vec4<u32>, b: vec4<u32>, xs: i32) -> f32 {
    let o = base + sb * 34u;
    var s = 0;
    for (var k = 0u; k < 8u; k++) {
        s += dot4I8Packed(wu32(o + 2u + 4u * k), xw(a, b, k));
    }
    return wf16(o) * f32(s);
}

// block_q4_0: nibbles − 8.
fn idot_q4_0(base: u32, sb: u32, a: vec4<u32>, b: vec4<u32>, xs: i32) -> f32 {
    let o = base + sb * 18u;
    var s = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = wu32(o + 2u + 4u * k);
        s += dot4I8Packed(unbias(q & 0x0f0f0f0fu, 8u), a[k]);
        s += dot4I8Packed(unbias((q >> 4u) & 0x0f0f0f0fu, 8u), b[k]);
    }
    return wf16(o) * f32(s);
}

// Bits 0..3 of `h` as the fifth bit (16) of four bytes.
fn fifth4(h: u32) -> u32 {
    return ((h & 1u) << 4u) | ((h & 2u) << 11u) | ((h & 4u) << 18u) | ((h & 8u) << 25u);
}

// block_q5_0: (nibble | fifth bit) − 16.
fn idot_q5_0(base: u32, sb: u32, a: vec4<u32>, b: vec4<u32>, xs: i32) -> f32 {
    let o = base + sb * 22u;
    let qh = wu32(o + 2u);
    var s = 0;
    for (var k = 0u; k < 4u; k++) {
        let q = wu32(o + 6u + 4u * k);
        let lo = (q & 0x0f0f0f0fu) | fifth4(qh >> (4u * k));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | fifth4(qh >> (16u + 4u * k));
        s += dot4I8Packed(unbias(lo, 16u), a[k]);
        s += dot4I8Packed(unbias(hi, 16u), b[k]);
    }
    return wf16(o) * f32(s);
}

// block_q4_K: d·scale·Σq·x − dmin·min·Σx.
fn idot_q4_k(base: u32, sb: u32, a: vec4<u32>, b: vec4<u32>, xs: i32) -> f32 {
    let o = base + (sb >> 3u) * 144u;
    let j = sb & 7u;
    let sm = scale_min_k4(o + 4u, j);
    let dm = unpack2x16float(w[o >> 2u]);
    let qo = (o + 16u + 32u * (j >> 1u)) >> 2u;
    let sh = 4u * (j & 1u);
    var s = 0;
    for (var k = 0u; k < 8u; k++) {
        s += dot4I8Packed((w[qo + k] >> sh) & 0x0f0f0f0fu, xw(a, b, k));
    }
    return dm.x * sm.x * f32(s) - dm.y * sm.y * f32(xs);
}

// block_q5_K: as Q4_K with the fifth bits.
fn idot_q5_k(base: u32, sb: u32, a: vec4<u32>, b: vec4<u32>, xs: i32) -> f32 {
    let o = base + (sb >> 3u) * 176u;
    let j = sb & 7u;
    let sm = scale_min_k4(o + 4u, j);
    let dm = unpack2x16float(w[o >> 2u]);
    let qo = (o + 48u + 32u * (j >> 1u)) >> 2u;
    let ho = (o + 16u) >> 2u;
    let sh = 4u * (j & 1u);
    var s = 0;
    for (var k = 0u; k < 8u; k++) {
        let q = ((w[qo + k] >> sh) & 0x0f0f0f0fu) | (((w[ho + k] >> j) & 0x01010101u) << 4u);
        s += dot4I8Packed(q, xw(a, b, k));
    }
    return dm.x * sm.x * f32(s) - dm.y * sm.y * f32(xs);
}

// block_q6_K: d·scale·(q − 32), one scale per 16 values.
fn idot_q6_k(base: u32, sb: u32, a: vec4<u32>, b: vec4<u32>, xs: i32) -> f32 {
    let o = base + (sb >> 3u) * 210u;
    let kb = (sb & 7u) * 32u;
    let n = kb >> 7u;
    let qd = (kb >> 5u) & 3u;
    let lo_o = o + 64u * n + select(0u, 32u, (qd & 1u) == 1u);
    let hi_o = o + 128u + 32u * n;
    let lsh = select(0u, 4u, qd >= 2u);
    var s0 = 0;
    var s1 = 0;
    for (var k = 0u; k < 8u; k++) {
        let low = (wu32(lo_o + 4u * k) >> lsh) & 0x0f0f0f0fu;
        let hi = ((wu32(hi_o + 4u * k) >> (2u * qd)) & 0x03030303u) << 4u;
        let d = dot4I8Packed(unbias(low | hi, 32u), xw(a, b, k));
        if (k < 4u) {
            s0 += d;
        } else {
            s1 += d;
        }
    }
    let sc0 = bitcast<i32>(wbyte(o + 192u + (kb >> 4u)) << 24u) >> 24u;
    let sc1 = bitcast<i32>(wbyte(o + 193u + (kb >> 4u)) << 24u) >> 24u;
    return wf16(o + 208u) * f32(sc0 * s0 + sc1 * s1);
}
