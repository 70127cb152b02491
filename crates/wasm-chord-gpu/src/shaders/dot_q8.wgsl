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

// Byte i (0..4) of v as a signed value.
fn sbyte(v: u32, i: u32) -> i32 {
    return bitcast<i32>(v << (24u - 8u * i)) >> 24u;
}

// block_q6_K, four sub-blocks at a time: half qi & 1 of block qi >> 1
// (128 values), whose four sub-blocks share their bytes: the low and high
// nibbles of 64 bytes and the four 2-bit fields of 32 more. Each word is
// loaded once for the four (a thread per sub-block loads the 2-bit bytes
// four times and the nibbles twice). Returns each sub-block's product
// before the activations' scale, as `idot_q6_k` computes it; `a_c`, `b_c`
// are sub-block c's activations.
fn idot4_q6_k(base: u32, qi: u32, a0: vec4<u32>, b0: vec4<u32>, a1: vec4<u32>, b1: vec4<u32>,
              a2: vec4<u32>, b2: vec4<u32>, a3: vec4<u32>, b3: vec4<u32>) -> vec4<f32> {
    let o = base + (qi >> 1u) * 210u;
    let n = qi & 1u;
    let lo = o + 64u * n;
    let ho = o + 128u + 32u * n;
    // Sums of each sub-block's first and last 16 values.
    var s0 = vec4<i32>(0);
    var s1 = vec4<i32>(0);
    for (var k = 0u; k < 8u; k++) {
        let la = wu32(lo + 4u * k);
        let lb = wu32(lo + 32u + 4u * k);
        let h = wu32(ho + 4u * k);
        let q0 = unbias((la & 0x0f0f0f0fu) | ((h & 0x03030303u) << 4u), 32u);
        let q1 = unbias((lb & 0x0f0f0f0fu) | (((h >> 2u) & 0x03030303u) << 4u), 32u);
        let q2 = unbias(((la >> 4u) & 0x0f0f0f0fu) | (((h >> 4u) & 0x03030303u) << 4u), 32u);
        let q3 = unbias(((lb >> 4u) & 0x0f0f0f0fu) | (((h >> 6u) & 0x03030303u) << 4u), 32u);
        let d = vec4<i32>(
            dot4I8Packed(q0, xw(a0, b0, k)),
            dot4I8Packed(q1, xw(a1, b1, k)),
            dot4I8Packed(q2, xw(a2, b2, k)),
            dot4I8Packed(q3, xw(a3, b3, k))
        );
        if (k < 4u) {
            s0 += d;
        } else {
            s1 += d;
        }
    }
    // Sub-block c's two scales are bytes 2c and 2c + 1 of these 8.
    let sc0 = wu32(o + 192u + 8u * n);
    let sc1 = wu32(o + 196u + 8u * n);
    let d = wf16(o + 208u);
    return vec4<f32>(
        d * f32(sbyte(sc0, 0u) * s0.x + sbyte(sc0, 1u) * s1.x),
        d * f32(sbyte(sc0, 2u) * s0.y + sbyte(sc0, 3u) * s1.y),
        d * f32(sbyte(sc1, 0u) * s0.z + sbyte(sc1, 1u) * s1.z),
        d * f32(sbyte(sc1, 2u) * s0[3] + sbyte(sc1, 3u) * s1[3])
    );
}
