// Weight decoding: `w` holds a weight's GGUF bytes as u32 words. `deq4_*`
// returns values i..i+4 (i a multiple of 4) of the row starting at byte
// `base`, as ggml's dequantize_row_* computes them.

fn wbyte(o: u32) -> u32 {
    return (w[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}
fn wu16(o: u32) -> u32 {
    return (w[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu;
}
fn wf16(o: u32) -> f32 {
    return unpack2x16float(wu16(o)).x;
}
// Four bytes starting at an even offset.
fn wu32(o: u32) -> u32 {
    let i = o >> 2u;
    if ((o & 3u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16u) | (w[i + 1u] << 16u);
}
fn bytes4(v: u32) -> vec4<u32> {
    return vec4<u32>(v & 0xffu, (v >> 8u) & 0xffu, (v >> 16u) & 0xffu, v >> 24u);
}
fn sbytes4(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(
        bitcast<i32>(v << 24u) >> 24u,
        bitcast<i32>(v << 16u) >> 24u,
        bitcast<i32>(v << 8u) >> 24u,
        bitcast<i32>(v) >> 24u
    ));
}
fn nibbles(q: vec4<u32>, high: bool) -> vec4<u32> {
    return select(q & vec4<u32>(15u), q >> vec4<u32>(4u), high);
}

fn deq4_f32(base: u32, i: u32) -> vec4<f32> {
    let o = (base >> 2u) + i;
    return vec4<f32>(bitcast<f32>(w[o]), bitcast<f32>(w[o + 1u]), bitcast<f32>(w[o + 2u]), bitcast<f32>(w[o + 3u]));
}

fn deq4_f16(base: u32, i: u32) -> vec4<f32> {
    let o = (base >> 2u) + (i >> 1u);
    return vec4<f32>(unpack2x16float(w[o]), unpack2x16float(w[o + 1u]));
}

// block_q8_0: f16 d, 32 x i8.
fn deq4_q8_0(base: u32, i: u32) -> vec4<f32> {
    let o = base + (i >> 5u) * 34u;
    return sbytes4(wu32(o + 2u + (i & 31u))) * wf16(o);
}

// block_q4_0: f16 d, 16 bytes of nibbles (low: values 0..16, high: 16..32).
fn deq4_q4_0(base: u32, i: u32) -> vec4<f32> {
    let o = base + (i >> 5u) * 18u;
    let j = i & 31u;
    let n = nibbles(bytes4(wu32(o + 2u + (j & 15u))), j >= 16u);
    return (vec4<f32>(n) - 8.0) * wf16(o);
}

// block_q5_0: f16 d, u32 of fifth bits, 16 bytes of nibbles.
fn deq4_q5_0(base: u32, i: u32) -> vec4<f32> {
    let o = base + (i >> 5u) * 22u;
    let j = i & 31u;
    let qh = wu32(o + 2u);
    let n = nibbles(bytes4(wu32(o + 6u + (j & 15u))), j >= 16u);
    let h = (vec4<u32>(qh) >> (vec4<u32>(j) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u);
    return (vec4<f32>(n | (h << vec4<u32>(4u))) - 16.0) * wf16(o);
}

// get_scale_min_k4 over the 12 scale bytes at `o`.
fn scale_min_k4(o: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(wbyte(o + j) & 63u), f32(wbyte(o + j + 4u) & 63u));
    }
    let a = wbyte(o + j + 4u);
    return vec2<f32>(
        f32((a & 15u) | ((wbyte(o + j - 4u) >> 6u) << 4u)),
        f32((a >> 4u) | ((wbyte(o + j) >> 6u) << 4u))
    );
}

// block_q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles.
fn deq4_q4_k(base: u32, i: u32) -> vec4<f32> {
    let o = base + (i >> 8u) * 144u;
    let k = i & 255u;
    let sm = scale_min_k4(o + 4u, k >> 5u);
    let d = wf16(o) * sm.x;
    let m = wf16(o + 2u) * sm.y;
    let l = k & 63u;
    let n = nibbles(bytes4(wu32(o + 16u + 32u * (k >> 6u) + (l & 31u))), l >= 32u);
    return d * vec4<f32>(n) - m;
}

// block_q5_K: as Q4_K with 32 bytes of fifth bits before the nibbles.
fn deq4_q5_k(base: u32, i: u32) -> vec4<f32> {
    let o = base + (i >> 8u) * 176u;
    let k = i & 255u;
    let sm = scale_min_k4(o + 4u, k >> 5u);
    let d = wf16(o) * sm.x;
    let m = wf16(o + 2u) * sm.y;
    let c = k >> 6u;
    let l = k & 63u;
    let l32 = l & 31u;
    let n = nibbles(bytes4(wu32(o + 48u + 32u * c + l32)), l >= 32u);
    let bit = 2u * c + select(0u, 1u, l >= 32u);
    let h = (bytes4(wu32(o + 16u + l32)) >> vec4<u32>(bit)) & vec4<u32>(1u);
    return d * vec4<f32>(n + h * 16u) - m;
}

// block_q6_K: 128 bytes low nibbles, 64 bytes high bit pairs, 16 i8 scales, f16 d.
fn deq4_q6_k(base: u32, i: u32) -> vec4<f32> {
    let o = base + (i >> 8u) * 210u;
    let k = i & 255u;
    let n = k >> 7u;
    let r = k & 127u;
    let qd = r >> 5u;
    let l = r & 31u;
    let lo = bytes4(wu32(o + 64u * n + l + select(0u, 32u, (qd & 1u) == 1u)));
    let low = nibbles(lo, qd >= 2u);
    let hi = (bytes4(wu32(o + 128u + 32u * n + l)) >> vec4<u32>(2u * qd)) & vec4<u32>(3u);
    let sc = f32(bitcast<i32>(wbyte(o + 192u + (k >> 4u)) << 24u) >> 24u);
    return (wf16(o + 208u) * sc) * (vec4<f32>(low | (hi << vec4<u32>(4u))) - 32.0);
}

// `sb_*` / `sbv_*`: one sub-block (values i..i+32, i a multiple of 32) in
// two steps, for kernels that multiply as they decode: `sb_*` reads the
// scales once, `sbv_*(s, k)` gives values 4k..4k+4 of it, so no array of
// 32 decoded values is held (an array indexed in a loop may live in local
// memory).
struct Sb {
    o: u32,
    a: u32,
    b: u32,
    d: f32,
    m: f32,
}

fn sb_f32(base: u32, i: u32) -> Sb {
    return Sb(base, i, 0u, 0.0, 0.0);
}
fn sbv_f32(s: Sb, k: u32) -> vec4<f32> {
    return deq4_f32(s.o, s.a + 4u * k);
}

fn sb_f16(base: u32, i: u32) -> Sb {
    return Sb(base, i, 0u, 0.0, 0.0);
}
fn sbv_f16(s: Sb, k: u32) -> vec4<f32> {
    return deq4_f16(s.o, s.a + 4u * k);
}

fn sb_q8_0(base: u32, i: u32) -> Sb {
    let o = base + (i >> 5u) * 34u;
    return Sb(o, 0u, 0u, wf16(o), 0.0);
}
fn sbv_q8_0(s: Sb, k: u32) -> vec4<f32> {
    return sbytes4(wu32(s.o + 2u + 4u * k)) * s.d;
}

fn sb_q4_0(base: u32, i: u32) -> Sb {
    let o = base + (i >> 5u) * 18u;
    return Sb(o, 0u, 0u, wf16(o), 0.0);
}
fn sbv_q4_0(s: Sb, k: u32) -> vec4<f32> {
    let q = bytes4(wu32(s.o + 2u + 4u * (k & 3u)));
    return (vec4<f32>(nibbles(q, k >= 4u)) - 8.0) * s.d;
}

fn sb_q5_0(base: u32, i: u32) -> Sb {
    let o = base + (i >> 5u) * 22u;
    return Sb(o, wu32(o + 2u), 0u, wf16(o), 0.0);
}
fn sbv_q5_0(s: Sb, k: u32) -> vec4<f32> {
    let q = bytes4(wu32(s.o + 6u + 4u * (k & 3u)));
    let sh = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(4u * (k & 3u) + select(0u, 16u, k >= 4u));
    let h = (vec4<u32>(s.a) >> sh) & vec4<u32>(1u);
    return (vec4<f32>(nibbles(q, k >= 4u) | (h << vec4<u32>(4u))) - 16.0) * s.d;
}

fn sb_q4_k(base: u32, i: u32) -> Sb {
    let o = base + (i >> 8u) * 144u;
    let j = (i & 255u) >> 5u;
    let sm = scale_min_k4(o + 4u, j);
    return Sb(o + 16u + 32u * (j >> 1u), j & 1u, 0u, wf16(o) * sm.x, wf16(o + 2u) * sm.y);
}
fn sbv_q4_k(s: Sb, k: u32) -> vec4<f32> {
    return s.d * vec4<f32>(nibbles(bytes4(wu32(s.o + 4u * k)), s.a == 1u)) - s.m;
}

fn sb_q5_k(base: u32, i: u32) -> Sb {
    let o = base + (i >> 8u) * 176u;
    let j = (i & 255u) >> 5u;
    let sm = scale_min_k4(o + 4u, j);
    return Sb(o, j, 0u, wf16(o) * sm.x, wf16(o + 2u) * sm.y);
}
fn sbv_q5_k(s: Sb, k: u32) -> vec4<f32> {
    let j = s.a;
    let n = nibbles(bytes4(wu32(s.o + 48u + 32u * (j >> 1u) + 4u * k)), (j & 1u) == 1u);
    let h = (bytes4(wu32(s.o + 16u + 4u * k)) >> vec4<u32>(j)) & vec4<u32>(1u);
    return s.d * vec4<f32>(n + h * 16u) - s.m;
}

fn sb_q6_k(base: u32, i: u32) -> Sb {
    let o = base + (i >> 8u) * 210u;
    let kb = i & 255u;
    let n = kb >> 7u;
    let qd = (kb >> 5u) & 3u;
    let d = wf16(o + 208u);
    let s0 = d * f32(bitcast<i32>(wbyte(o + 192u + (kb >> 4u)) << 24u) >> 24u);
    let s1 = d * f32(bitcast<i32>(wbyte(o + 193u + (kb >> 4u)) << 24u) >> 24u);
    let lo_o = o + 64u * n + select(0u, 32u, (qd & 1u) == 1u);
    return Sb(lo_o, o + 128u + 32u * n, qd, s0, s1);
}
fn sbv_q6_k(s: Sb, k: u32) -> vec4<f32> {
    let qd = s.b;
    let low = nibbles(bytes4(wu32(s.o + 4u * k)), qd >= 2u);
    let hi = (bytes4(wu32(s.a + 4u * k)) >> vec4<u32>(2u * qd)) & vec4<u32>(3u);
    return select(s.d, s.m, k >= 4u) * (vec4<f32>(low | (hi << vec4<u32>(4u))) - 32.0);
}
