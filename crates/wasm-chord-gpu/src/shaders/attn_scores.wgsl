// Decoding attention, kernel 1 of 2: the masked, scaled and capped score of
// every (token, head, cache row), stored (NEG where masked) for `attn_out`.
// T threads share one row (a power of two; each takes the vec4s d ≡ lane
// mod T of the head, at most four, all loads in flight at once), so a
// workgroup of 256 threads takes 256 / T rows of one (token, head).
// Prepended by the host: `const T: u32` and `const HD4: u32` (head_dim / 4).
// p: 0 tokens, 1 heads, 2 kv heads, 3 head_dim, 4 cache rows, 5 scale,
//    6 softcap (0: none), 7 window (0: none).
@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> qpos: array<u32>;
@group(0) @binding(4) var<storage, read> kpos: array<u32>;
@group(0) @binding(5) var<storage, read_write> sc: array<f32>;

const WG: u32 = 256u;
const RP: u32 = WG / T;
const NEG: f32 = -3.0e38;
var<workgroup> part: array<f32, 256>;

fn f16r4(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(pack2x16float(x.xy)), unpack2x16float(pack2x16float(x.zw)));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let nh = p[1];
    let items = p[0] * nh;
    let n = p[4];
    let idx = wid.y + wid.z * 65535u;
    let it = min(idx, items - 1u);
    let h = it % nh;
    let kvh = h / (nh / p[2]);
    let r = lid / T;
    let lane = lid % T;
    let j = wid.x * RP + r;
    let row = idx < items && j < n;
    let jc = min(j, n - 1u);
    // Every load is issued before the mask is known: masked rows are
    // rare, and the mask's own loads (positions) then overlap with K's.
    let qo = it * HD4;
    let ko = (jc * p[2] + kvh) * HD4;
    let qp = qpos[it / nh];
    let kp = kpos[jc];
    let window = p[7];
    let masked = kp == 0xffffffffu || kp > qp || (window != 0u && qp - kp >= window);
    var acc = vec4<f32>(0.0);
    // A constant trip count (at most four), so that the loop unrolls and
    // every load is issued before the first product.
    for (var i = 0u; i < (HD4 + T - 1u) / T; i++) {
        let d = lane + i * T;
        if (d < HD4) {
            // q rounded to f16 as ggml's f16 K·q product does.
            acc += f16r4(q[qo + d]) * k[ko + d];
        }
    }
    part[lid] = (acc.x + acc.y) + (acc.z + acc.w);
    workgroupBarrier();
    if (row && lane == 0u) {
        var s = 0.0;
        for (var i = 0u; i < T; i++) {
            s += part[lid + i];
        }
        s *= bitcast<f32>(p[5]);
        let cap = bitcast<f32>(p[6]);
        if (cap > 0.0) {
            s = cap * tanh(clamp(s * (1.0 / cap), -15.0, 15.0));
        }
        sc[it * n + j] = select(s, NEG, masked);
    }
}
