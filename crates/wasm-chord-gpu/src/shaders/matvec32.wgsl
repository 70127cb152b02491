// Matrix-vector products for a few tokens (at most 8) on rows that are a
// whole number of 32-value sub-blocks, for one to three weights that read
// the same input (q, k and v), or for a gate and an up weight whose
// products meet in the store (y = act(gate · x) · (up · x)).
//
// TPR threads share a row (a power of two near the row's number of
// sub-blocks, so that a long row is not walked by a few threads one
// sub-block after another), WG / TPR rows per workgroup. Each thread
// takes a whole sub-block at a time (its scales once, then four values at
// a time) and dots it with every token. The host generates, per weight S,
// the binding `wS` with its decoders (`sb_S`/`sbv_S`, or `idot_S` on 8-bit
// activations), the input `xS` (activations rounded
// for that weight's type), the output `yS` and `dot_S`, and one of three
// reductions of a row's TPR partial sums (see `reduce`).
//
// p: 0 cols, 1 tokens, 2 first token, 3 workgroups along x, 4 activation
//    kind of the gated store, then per weight S three words from 5 + 3S:
//    rows, bytes per row, workgroups; 14 output row stride of weight 0,
//    15 first output row of weight 0 (a part of a weight split by rows).

@group(0) @binding(0) var<storage, read> p: array<u32, 16>;
//BINDINGS

const WG: u32 = WGSIZEu;
var<workgroup> red: array<f32, REDSIZE>;

//DOTS

//REDUCE

@compute @workgroup_size(WGSIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32
        //SGARGS
) {
    //SLOT
    let lane = slot % TPR;
    var g = wid.x + wid.y * p[3];
    var s = 0u;
    loop {
        if (s + 1u >= NSEG || g < p[7u + 3u * s]) {
            break;
        }
        g -= p[7u + 3u * s];
        s++;
    }
    let r = g * (WG / TPR) + slot / TPR;
    let ok = r < p[5u + 3u * s];
    let cnt = p[1];
    let t0 = p[2];
    //BODY
}
