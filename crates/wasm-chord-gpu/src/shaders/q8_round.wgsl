// The roundings of ggml-cpu's 8-bit activation quantization, appended to
// `norm_q8.wgsl` and `q8_in.wgsl` so that both write the same bits.

fn q8_f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

// quantize_row_q8_0 (x86 SIMD flavour): q = round(x * 127 / amax), with
// s = 127 / amax (0 where amax is 0); the block's scale is q8_f16r(amax / 127).
fn q8_0_of(v: vec4<f32>, s: f32) -> vec4<i32> {
    return vec4<i32>(clamp(round(v * s), vec4<f32>(-128.0), vec4<f32>(127.0)));
}

// quantize_row_q8_K: q = min(round(x * iscale), 127), with iscale = -127 / v
// for the block's first value v of largest |x| (0 where that is 0); the
// block's scale is 1 / iscale.
fn q8_k_of(v: vec4<f32>, iscale: f32) -> vec4<i32> {
    return vec4<i32>(min(round(v * iscale), vec4<f32>(127.0)));
}
