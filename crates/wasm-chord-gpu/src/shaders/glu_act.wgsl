// The gated activations of `glu.wgsl`, shared with the matrix-vector
// kernel's fused variant (`act(gate) · up` in its store).

fn glu_f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

// kind 0: SiLU; 1: GELU-tanh through ggml-cpu's f16 table (input and result
// rounded to f16).
fn glu_act(x: f32, kind: u32) -> f32 {
    if (kind == 0u) {
        return x / (1.0 + exp(-x));
    } else if (x <= -10.0) {
        return 0.0;
    } else if (x >= 10.0) {
        return x;
    }
    let xr = glu_f16r(x);
    let t = tanh(0.7978846 * xr * (1.0 + 0.044715 * xr * xr));
    return glu_f16r(0.5 * xr * (1.0 + t));
}
