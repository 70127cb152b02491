// gate = act(gate) · up, in place. p: 0 n, 1 threads along x, 2 kind (0 SiLU,
// 1 GELU-tanh through ggml-cpu's f16 table: input and result rounded to f16).
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p[1];
    if (i >= p[0]) {
        return;
    }
    let x = g[i];
    var a: f32;
    if (p[2] == 0u) {
        a = x / (1.0 + exp(-x));
    } else if (x <= -10.0) {
        a = 0.0;
    } else if (x >= 10.0) {
        a = x;
    } else {
        let xr = f16r(x);
        let t = tanh(0.7978846 * xr * (1.0 + 0.044715 * xr * xr));
        a = f16r(0.5 * xr * (1.0 + t));
    }
    g[i] = a * u[i];
}
