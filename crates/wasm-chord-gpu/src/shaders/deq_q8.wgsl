// A weight sub-block as 8-bit integers and scales, for the int8 tiled
// kernel (`matmul_q8.wgsl`): the integers and scales of `dot_q8.wgsl`'s
// products, taken apart. `qw_*(base, sb, k)` returns values 4k..4k+4 of
// sub-block sb of the row at byte `base` as four signed bytes (a weight's
// offset already taken off), `qsc_*(base, sb)` the scale of its first 16
// values, of its last 16, and the minimum's coefficient: value i is
// scale · q_i − min. Appended to `dequant.wgsl` and `dot_q8.wgsl`.

fn qw_q8_0(base: u32, sb: u32, k: u32) -> u32 {
    return wu32(base + sb * 34u + 2u + 4u * k);
}
fn qsc_q8_0(base: u32, sb: u32) -> vec3<f32> {
    let d = wf16(base + sb * 34u);
    return vec3<f32>(d, d, 0.0);
}

// Values 0..16 are the low nibbles of the 16 bytes, 16..32 the high ones.
fn qw_q4_0(base: u32, sb: u32, k: u32) -> u32 {
    let q = wu32(base + sb * 18u + 2u + 4u * (k & 3u));
    return unbias((q >> (4u * (k >> 2u))) & 0x0f0f0f0fu, 8u);
}
fn qsc_q4_0(base: u32, sb: u32) -> vec3<f32> {
    let d = wf16(base + sb * 18u);
    return vec3<f32>(d, d, 0.0);
}

fn qw_q5_0(base: u32, sb: u32, k: u32) -> u32 {
    let o = base + sb * 22u;
    let qh = wu32(o + 2u);
    let q = wu32(o + 6u + 4u * (k & 3u));
    let hi = k >> 2u;
    let n = ((q >> (4u * hi)) & 0x0f0f0f0fu) | fifth4(qh >> (16u * hi + 4u * (k & 3u)));
    return unbias(n, 16u);
}
fn qsc_q5_0(base: u32, sb: u32) -> vec3<f32> {
    let d = wf16(base + sb * 22u);
    return vec3<f32>(d, d, 0.0);
}

fn qw_q4_k(base: u32, sb: u32, k: u32) -> u32 {
    let o = base + (sb >> 3u) * 144u;
    let j = sb & 7u;
    let qo = (o + 16u + 32u * (j >> 1u)) >> 2u;
    return (w[qo + k] >> (4u * (j & 1u))) & 0x0f0f0f0fu;
}
// The scales of sub-block j of the Q4_K or Q5_K block at byte o (both
// begin with d, dmin and the same 12 scale bytes).
fn qsc_k4(o: u32, j: u32) -> vec3<f32> {
    let sm = scale_min_k4(o + 4u, j);
    let dm = unpack2x16float(w[o >> 2u]);
    let d = dm.x * sm.x;
    return vec3<f32>(d, d, dm.y * sm.y);
}
fn qsc_q4_k(base: u32, sb: u32) -> vec3<f32> {
    return qsc_k4(base + (sb >> 3u) * 144u, sb & 7u);
}

fn qw_q5_k(base: u32, sb: u32, k: u32) -> u32 {
    let o = base + (sb >> 3u) * 176u;
    let j = sb & 7u;
    let qo = (o + 48u + 32u * (j >> 1u)) >> 2u;
    let ho = (o + 16u) >> 2u;
    return ((w[qo + k] >> (4u * (j & 1u))) & 0x0f0f0f0fu) | (((w[ho + k] >> j) & 0x01010101u) << 4u);
}
fn qsc_q5_k(base: u32, sb: u32) -> vec3<f32> {
    return qsc_k4(base + (sb >> 3u) * 176u, sb & 7u);
}

fn qw_q6_k(base: u32, sb: u32, k: u32) -> u32 {
    let o = base + (sb >> 3u) * 210u;
    let kb = (sb & 7u) * 32u;
    let n = kb >> 7u;
    let qd = (kb >> 5u) & 3u;
    let lo_o = o + 64u * n + select(0u, 32u, (qd & 1u) == 1u);
    let hi_o = o + 128u + 32u * n;
    let low = (wu32(lo_o + 4u * k) >> select(0u, 4u, qd >= 2u)) & 0x0f0f0f0fu;
    let hi = ((wu32(hi_o + 4u * k) >> (2u * qd)) & 0x03030303u) << 4u;
    return unbias(low | hi, 32u);
}
fn qsc_q6_k(base: u32, sb: u32) -> vec3<f32> {
    let o = base + (sb >> 3u) * 210u;
    let kb = (sb & 7u) * 32u;
    let d = wf16(o + 208u);
    let sc0 = bitcast<i32>(wbyte(o + 192u + (kb >> 4u)) << 24u) >> 24u;
    let sc1 = bitcast<i32>(wbyte(o + 193u + (kb >> 4u)) << 24u) >> 24u;
    return vec3<f32>(d * f32(sc0), d * f32(sc1), 0.0);
}
