//! Every op of the WebGPU backend against the CPU backend (the reference,
//! which mimics llama.cpp) on random inputs, for every supported weight type.

mod common;

use common::*;
use wasm_chord_core::backend::{
    AttentionParams, Backend, BackendError, GluKind, QkRope, RopeKind, RopeParams,
};
use wasm_chord_core::GgmlType;
use wasm_chord_gpu::{GpuBackend, GPU_TYPES};

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// The weight types whose products take 8-bit activations.
const INT8_TYPES: [GgmlType; 6] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

#[test]
fn matmul_matches_cpu_for_every_type_and_batch_size() {
    let g = gpu_or_skip!();
    let c = cpu();
    // Row lengths for each shape of the matrix-vector kernel (8 (two or
    // eight sub-blocks), 16,
    // 32, 128 and 256 threads per row, the last with two sub-blocks for
    // some threads; rows within one subgroup and rows over several);
    // batches for both kernels and their edges. Rows of 100 values (float
    // types only) take the 4-wide kernel.
    let shapes: [(usize, usize, &[usize]); 7] = [
        (512, 72, &[1, 3, 8, 9, 70, 130]),
        (2304, 40, &[1, 9]),
        (1024, 24, &[1]),
        (8448, 12, &[2]),
        (256, 36, &[1, 4]),
        (64, 50, &[1, 8]),
        (100, 20, &[1, 9]),
    ];
    for (cols, rows, batches) in shapes {
        for (i, &ty) in GPU_TYPES.iter().enumerate() {
            if cols % ty.block_size() != 0 {
                continue;
            }
            let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 10 + i as u64))]);
            let (wg, wc) = (weight(&*g, &file, "w"), weight(&c, &file, "w"));
            for &n in batches {
                let x = rand_vec(n * cols, 100 + n as u64);
                let (xg, xc) = (g.upload(&x).unwrap(), c.upload(&x).unwrap());
                let mut og = g.alloc(n * rows).unwrap();
                let mut oc = c.alloc(n * rows).unwrap();
                g.matmul(&wg, &xg, n, &mut og).unwrap();
                c.matmul(&wc, &xc, n, &mut oc).unwrap();
                let (a, b) = (read(&*g, &og), read(&c, &oc));
                let e = rel_l2(&a, &b);
                assert!(e < 2e-3, "{ty:?} {cols}x{rows} n={n}: relative L2 {e}");
            }
        }
    }
}

#[test]
fn matvec_with_many_rows_matches_cpu() {
    // A vocabulary-sized output: with many rows, a row gets fewer threads
    // than it has sub-blocks (each thread walks several).
    let g = gpu_or_skip!();
    let c = cpu();
    let (cols, rows) = (512usize, 20_000usize);
    for (i, ty) in [GgmlType::Q6_K, GgmlType::Q8_0].into_iter().enumerate() {
        let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 70 + i as u64))]);
        let (wg, wc) = (weight(&*g, &file, "w"), weight(&c, &file, "w"));
        for n in [1usize, 2] {
            let x = rand_vec(n * cols, 80 + n as u64);
            let mut og = g.alloc(n * rows).unwrap();
            let mut oc = c.alloc(n * rows).unwrap();
            g.matmul(&wg, &g.upload(&x).unwrap(), n, &mut og).unwrap();
            c.matmul(&wc, &c.upload(&x).unwrap(), n, &mut oc).unwrap();
            let e = rel_l2(&read(&*g, &og), &read(&c, &oc));
            assert!(e < 2e-3, "{ty:?} {cols}x{rows} n={n}: {e}");
        }
    }
}

#[test]
fn matvec_without_subgroups_matches_cpu() {
    if gpu().is_none() {
        return;
    }
    // The workgroup-memory reduction (the shared backend uses subgroup
    // shuffles where the adapter has them).
    let g = GpuBackend::new().unwrap();
    g.set_subgroups(false);
    let c = cpu();
    for (cols, rows) in [(512usize, 40usize), (2304, 24)] {
        for (i, &ty) in [
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
            GgmlType::F16,
        ]
        .iter()
        .enumerate()
        {
            let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 50 + i as u64))]);
            let (wg, wc) = (weight(&g, &file, "w"), weight(&c, &file, "w"));
            for n in [1usize, 5] {
                let x = rand_vec(n * cols, 60 + n as u64);
                let mut og = g.alloc(n * rows).unwrap();
                let mut oc = c.alloc(n * rows).unwrap();
                g.matmul(&wg, &g.upload(&x).unwrap(), n, &mut og).unwrap();
                c.matmul(&wc, &c.upload(&x).unwrap(), n, &mut oc).unwrap();
                let e = rel_l2(&read(&g, &og), &read(&c, &oc));
                assert!(e < 2e-3, "{ty:?} {cols}x{rows} n={n}: {e}");
            }
        }
    }
}

/// A backend of its own with packed 8-bit dot products, or None (and a
/// note) without an adapter or without them; under CI=true their absence
/// is a failure.
fn int8_backend() -> Option<GpuBackend> {
    gpu()?;
    let g = GpuBackend::new().unwrap();
    if !g.int_dot() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but WGSL's dot4I8Packed is not available"
        );
        eprintln!("skipping: no dot4I8Packed");
        return None;
    }
    Some(g)
}

#[test]
fn one_token_products_with_int8_activations_match_cpu() {
    // One-token products take the activations as 8-bit integers, as the CPU
    // backend does, so their integer sums are the CPU's: only the order of
    // the float sums differs. The f32 path (the same rounded values as
    // floats) is the comparison.
    let Some(g) = int8_backend() else {
        return;
    };
    let c = cpu();
    // The last shape has enough Q6_K half blocks (rows x cols / 128 =
    // 65,536) for its products to take four sub-blocks a step.
    // 96 values: an odd number of 32-value sub-blocks (Q4_0, Q5_0, Q8_0).
    let shapes = [
        (512usize, 40usize),
        (96, 40),
        (1536, 24),
        (4096, 8),
        (2048, 4096),
    ];
    for (cols, rows) in shapes {
        for (i, ty) in INT8_TYPES.into_iter().enumerate() {
            if (rows > 1000 && ty != GgmlType::Q6_K) || !cols.is_multiple_of(ty.block_size()) {
                continue;
            }
            let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 90 + i as u64))]);
            let (wg, wc) = (weight(&g, &file, "w"), weight(&c, &file, "w"));
            // A block of zeros among random values (a scale of 0).
            let mut x = rand_vec(cols, 95 + i as u64);
            x[256.min(cols)..512.min(cols)].fill(0.0);
            let mut oc = c.alloc(rows).unwrap();
            c.matmul(&wc, &c.upload(&x).unwrap(), 1, &mut oc).unwrap();
            let want = read(&c, &oc);
            // int8 (Q4_K: two sub-blocks a step, Q6_K: four) on activations
            // quantized by the product itself, the same after a quantize
            // dispatch, int8 one sub-block a step, f32.
            let paths = [
                ("int8", true, true, usize::MAX, true),
                ("int8 after a quantize dispatch", true, true, 0, true),
                ("int8 by sub-blocks", true, false, usize::MAX, true),
                ("int8 without subgroups", true, true, usize::MAX, false),
                ("f32", false, true, usize::MAX, true),
            ];
            let mut outs = Vec::new();
            for (_, on, groups, q8_in, sg) in paths {
                g.set_subgroups(sg);
                g.set_int_dot(on);
                g.set_subblock_groups(groups);
                g.set_q8_in_max(q8_in);
                assert_eq!(g.int_dot(), on);
                let mut og = g.alloc(rows).unwrap();
                let xg = g.upload(&x).unwrap();
                let d0 = g.counters().0;
                g.matmul(&wg, &xg, 1, &mut og).unwrap();
                // One dispatch where the product quantizes its input.
                let dispatches = g.counters().0 - d0;
                let want_dispatches = if on && q8_in > 0 { 1 } else { 2 };
                assert_eq!(
                    dispatches, want_dispatches,
                    "{ty:?} {cols}x{rows} q8_in {q8_in}"
                );
                outs.push(read(&g, &og));
            }
            g.set_subgroups(true);
            g.set_int_dot(true);
            g.set_subblock_groups(true);
            g.set_q8_in_max(usize::MAX);
            let errs: Vec<f32> = outs.iter().map(|o| rel_l2(o, &want)).collect();
            eprintln!(
                "{ty:?} {cols}x{rows}: int8 {:.2e} (after a quantize dispatch {:.2e}, by sub-blocks {:.2e}, without subgroups {:.2e}), f32 {:.2e}",
                errs[0], errs[1], errs[2], errs[3], errs[4]
            );
            for (e, (path, ..)) in errs.iter().zip(paths) {
                assert!(*e < 2e-6, "{ty:?} {cols}x{rows}: {path} path {e}");
            }
            // The product's own quantization gives the quantize kernel's
            // values, so the same sums in the same order.
            assert_eq!(outs[0], outs[1], "{ty:?} {cols}x{rows}: q8_in");
        }
    }
}

#[test]
fn prompt_products_on_int8_match_cpu_and_the_f32_kernel() {
    // Prompts (more than 8 tokens) on weights with 8-bit products run the
    // int8 tiled kernel where WGSL has dot4I8Packed: integer sums of the
    // same 8-bit activations the CPU backend multiplies, so only the order
    // of the float sums differs. Rows and tokens that fill one tile, two,
    // and part of one; the f32 tiled kernel (the same rounded activations
    // as floats) is the comparison.
    let Some(g) = int8_backend() else {
        return;
    };
    g.set_f16(false);
    let c = cpu();
    for (cols, rows, n) in [(512usize, 72usize, 9usize), (1536, 64, 70), (4096, 20, 130)] {
        for (i, ty) in INT8_TYPES.into_iter().enumerate() {
            let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 120 + i as u64))]);
            let (wg, wc) = (weight(&g, &file, "w"), weight(&c, &file, "w"));
            // Tokens whose sizes differ 1000x.
            let x: Vec<f32> = rand_vec(n * cols, 130 + i as u64)
                .iter()
                .enumerate()
                .map(|(j, v)| v * 10f32.powi((j / cols % 4) as i32 - 1))
                .collect();
            let mut oc = c.alloc(n * rows).unwrap();
            c.matmul(&wc, &c.upload(&x).unwrap(), n, &mut oc).unwrap();
            let want = read(&c, &oc);
            let mut errs = [0f32; 2];
            for (k, on) in [true, false].into_iter().enumerate() {
                g.set_int_dot(on);
                let mut og = g.alloc(n * rows).unwrap();
                g.matmul(&wg, &g.upload(&x).unwrap(), n, &mut og).unwrap();
                // Token by token: a small token's error is not hidden by
                // a large one's.
                errs[k] = (0..n)
                    .map(|t| {
                        let r = t * rows..(t + 1) * rows;
                        rel_l2(&read(&g, &og)[r.clone()], &want[r])
                    })
                    .fold(0f32, f32::max);
            }
            g.set_int_dot(true);
            eprintln!(
                "{ty:?} {cols}x{rows} n={n}: int8 {:.2e}, f32 {:.2e}",
                errs[0], errs[1]
            );
            assert!(
                errs[0] < 2e-6,
                "{ty:?} {cols}x{rows} n={n}: int8 {}",
                errs[0]
            );
            // The f32 kernel sums floats along the whole row.
            assert!(
                errs[1] < 1e-5,
                "{ty:?} {cols}x{rows} n={n}: f32 {}",
                errs[1]
            );
        }
    }
}

#[test]
fn prompt_products_in_f16_match_cpu_and_the_f32_kernel() {
    if gpu().is_none() {
        return;
    }
    // With f16 arithmetic on (where the adapter has shader-f16), prompts
    // (more than 8 tokens) run the tiled kernel in f16: weights rounded to
    // f16, 8-bit activations, 32 products summed in f16 per scale. Against
    // the CPU backend (f32 sums of the same 8-bit activations) the error is
    // f16 rounding; the f32 kernel on the same inputs is the comparison.
    let g = GpuBackend::new().unwrap();
    assert!(
        !g.f16() || std::env::var("WASM_CHORD_GPU_F16").is_ok(),
        "f16 is off by default"
    );
    g.set_f16(true);
    if !g.f16() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but the adapter has no shader-f16"
        );
        eprintln!("skipping: no shader-f16");
        return;
    }
    let c = cpu();
    // Rows and tokens that fill whole tiles of 64 and that end inside one;
    // rows of one K-quant block and of several.
    for (cols, rows, n) in [(256usize, 40usize, 9usize), (1536, 130, 70), (4096, 64, 64)] {
        for (i, ty) in INT8_TYPES.into_iter().enumerate() {
            let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 70 + i as u64))]);
            let (wg, wc) = (weight(&g, &file, "w"), weight(&c, &file, "w"));
            // Activations of very different sizes per token, so that each
            // token's scale matters.
            let mut x = rand_vec(n * cols, 75 + i as u64);
            for (t, row) in x.chunks_mut(cols).enumerate() {
                let f = [0.01f32, 1.0, 30.0][t % 3];
                row.iter_mut().for_each(|v| *v *= f);
            }
            let mut oc = c.alloc(n * rows).unwrap();
            c.matmul(&wc, &c.upload(&x).unwrap(), n, &mut oc).unwrap();
            let want = read(&c, &oc);
            let mut got = Vec::new();
            for on in [true, false] {
                g.set_f16(on);
                assert_eq!(g.f16(), on);
                let mut og = g.alloc(n * rows).unwrap();
                g.matmul(&wg, &g.upload(&x).unwrap(), n, &mut og).unwrap();
                got.push(read(&g, &og));
            }
            // Per token, since their sizes differ by 3000x.
            let (mut e16, mut e32) = (0f32, 0f32);
            for t in 0..n {
                let r = t * rows..(t + 1) * rows;
                e16 = e16.max(rel_l2(&got[0][r.clone()], &want[r.clone()]));
                e32 = e32.max(rel_l2(&got[1][r.clone()], &want[r]));
            }
            eprintln!("{ty:?} {cols}x{rows} n={n}: f16 {e16:.2e}, f32 {e32:.2e}");
            assert!(e32 < 2e-6, "{ty:?} {cols}x{rows} n={n}: f32 kernel {e32}");
            assert!(e16 < 2e-3, "{ty:?} {cols}x{rows} n={n}: f16 kernel {e16}");
            assert!(e16 > e32, "{ty:?}: the f16 kernel did not run");
        }
    }
}

#[test]
fn add_rms_norm_matches_cpu_composed_ops() {
    // The fused kernel against the CPU backend's default (rms_norm of b
    // when asked, add, rms_norm), with and without the norm of b, on one
    // row (decoding), several rows and a row length that is not a multiple
    // of the workgroup; with the sums by subgroups (the shared backend,
    // where the adapter has them) and by the workgroup-memory tree.
    let shared = gpu_or_skip!();
    let tree = GpuBackend::new().unwrap();
    tree.set_subgroups(false);
    let c = cpu();
    for g in [&*shared, &tree] {
        for (case, (rows, dim)) in [(1usize, 640usize), (3, 2048), (5, 100)]
            .into_iter()
            .enumerate()
        {
            let s = 20 * case as u64;
            let nw = |seed| rand_vec(dim, seed).iter().map(|v| 1.0 + 0.5 * v).collect();
            let file = gguf(&[
                ("w", dim, 1, GgmlType::F32, nw(s + 1)),
                ("bn", dim, 1, GgmlType::F32, nw(s + 2)),
            ]);
            let x: Vec<f32> = rand_vec(rows * dim, s + 3)
                .iter()
                .map(|v| v * 4.0)
                .collect();
            let b: Vec<f32> = rand_vec(rows * dim, s + 4)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            let (wg, wc) = (weight(g, &file, "w"), weight(&c, &file, "w"));
            let (bng, bnc) = (weight(g, &file, "bn"), weight(&c, &file, "bn"));
            for normed in [false, true] {
                let mut xg = g.upload(&x).unwrap();
                let mut xc = c.upload(&x).unwrap();
                let mut og = g.upload(&rand_vec(rows * dim, s + 5)).unwrap();
                let mut oc = c.alloc(rows * dim).unwrap();
                let (bg, bc) = (g.upload(&b).unwrap(), c.upload(&b).unwrap());
                let (ng, nc) = if normed {
                    (Some(&bng), Some(&bnc))
                } else {
                    (None, None)
                };
                g.add_rms_norm(&mut xg, &bg, ng, &wg, 1e-6, rows, dim, &mut og)
                    .unwrap();
                c.add_rms_norm(&mut xc, &bc, nc, &wc, 1e-6, rows, dim, &mut oc)
                    .unwrap();
                let ex = rel_l2(&read(g, &xg), &read(&c, &xc));
                let eo = rel_l2(&read(g, &og), &read(&c, &oc));
                assert!(
                    ex < 1e-6 && eo < 1e-6,
                    "{rows}x{dim} normed={normed}: x {ex}, out {eo}"
                );
                // The residual really changed (b is not ignored).
                assert!(rel_l2(&read(g, &xg), &x) > 0.1);
            }
        }
    }
}

#[test]
fn norms_quantize_one_row_for_the_next_product_as_the_quantize_kernel_does() {
    if gpu().is_none() {
        return;
    }
    // A one-row norm also writes its output as 8-bit activations, and the
    // product after it reads them instead of dispatching the quantize
    // kernel. The product must equal, bit for bit, the one of the same
    // values uploaded afresh (which the quantize kernel rounds), for both
    // block sizes (Q8_0: Q8_0/Q5_0 weights; Q8_K: Q4_K/Q6_K weights) and
    // a row length with Q8_0 blocks only (640).
    let g = GpuBackend::new().unwrap();
    if !g.int_dot() {
        return;
    }
    for (case, dim) in [512usize, 640, 2048, 4096].into_iter().enumerate() {
        let s = 300 + 10 * case as u64;
        let nw = |seed| rand_vec(dim, seed).iter().map(|v| 1.0 + 0.5 * v).collect();
        let mut tensors = vec![
            ("nw", dim, 1, GgmlType::F32, nw(s)),
            ("bn", dim, 1, GgmlType::F32, nw(s + 1)),
        ];
        let types: &[GgmlType] = if dim % 256 == 0 {
            &[
                GgmlType::Q8_0,
                GgmlType::Q5_0,
                GgmlType::Q4_K,
                GgmlType::Q6_K,
            ]
        } else {
            &[GgmlType::Q8_0, GgmlType::Q5_0]
        };
        let names = ["w0", "w1", "w2", "w3"];
        for (i, &ty) in types.iter().enumerate() {
            tensors.push((names[i], dim, 24, ty, rand_vec(dim * 24, s + 2 + i as u64)));
        }
        let file = gguf(&tensors);
        let nw_g = weight(&g, &file, "nw");
        let bn_g = weight(&g, &file, "bn");
        // x has a few large values, so blocks' scales differ.
        let x: Vec<f32> = rand_vec(dim, s + 8)
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 97 == 5 { v * 40.0 } else { *v })
            .collect();
        for op in ["rms_norm", "add_rms_norm", "add_rms_norm(b normed)"] {
            let mut y = g.alloc(dim).unwrap();
            match op {
                "rms_norm" => g
                    .rms_norm(&g.upload(&x).unwrap(), &nw_g, 1e-6, 1, dim, &mut y)
                    .unwrap(),
                _ => {
                    let mut r = g.upload(&rand_vec(dim, s + 9)).unwrap();
                    let b = g.upload(&x).unwrap();
                    let bn = (op != "add_rms_norm").then_some(&bn_g);
                    g.add_rms_norm(&mut r, &b, bn, &nw_g, 1e-6, 1, dim, &mut y)
                        .unwrap();
                }
            }
            let fresh = g.upload(&read(&g, &y)).unwrap();
            let ws: Vec<_> = (0..types.len())
                .map(|i| weight(&g, &file, names[i]))
                .collect();
            // Every product after the norm first (a later product of the
            // fresh copy replaces the cached activations).
            let mut after_norm = Vec::new();
            for (w, ty) in ws.iter().zip(types) {
                let mut a = g.alloc(24).unwrap();
                let d0 = g.counters().0;
                g.matmul(w, &y, 1, &mut a).unwrap();
                // The product alone: no quantize dispatch.
                assert_eq!(g.counters().0 - d0, 1, "{op} dim {dim} {ty:?}");
                after_norm.push(read(&g, &a));
            }
            for ((w, ty), va) in ws.iter().zip(types).zip(&after_norm) {
                let mut b = g.alloc(24).unwrap();
                g.matmul(w, &fresh, 1, &mut b).unwrap();
                let vb = read(&g, &b);
                assert_eq!(
                    va.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    vb.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{op} dim {dim} {ty:?}"
                );
                assert!(va.iter().any(|v| v.abs() > 1e-3), "{op} {ty:?}: all zero");
            }
        }
    }
}

#[test]
fn matmul_glu_matches_cpu_composed_ops() {
    // The up projection with the activation in its store (1-8 tokens),
    // and the unfused path (9 tokens, the tiled kernel), against the CPU
    // backend's matmul, matmul, glu; also with the workgroup-memory
    // reduction.
    let shared = gpu_or_skip!();
    let plain = GpuBackend::new().unwrap();
    plain.set_subgroups(false);
    let c = cpu();
    let (cols, rows) = (512usize, 72usize);
    for (i, &ty) in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
        GgmlType::F16,
    ]
    .iter()
    .enumerate()
    {
        let s = 200 + 10 * i as u64;
        let file = gguf(&[
            ("gate", cols, rows, ty, rand_vec(cols * rows, s)),
            ("up", cols, rows, ty, rand_vec(cols * rows, s + 1)),
        ]);
        for g in [&*shared, &plain] {
            let (ggw, cgw) = (weight(g, &file, "gate"), weight(&c, &file, "gate"));
            let (guw, cuw) = (weight(g, &file, "up"), weight(&c, &file, "up"));
            for n in [1usize, 3, 8, 9] {
                let x: Vec<f32> = rand_vec(n * cols, s + 2 + n as u64)
                    .iter()
                    .map(|v| v * 0.3)
                    .collect();
                let (xg, xc) = (g.upload(&x).unwrap(), c.upload(&x).unwrap());
                for kind in [GluKind::Silu, GluKind::GeluTanh] {
                    let mut gg = g.alloc(n * rows).unwrap();
                    let mut ug = g.alloc(n * rows).unwrap();
                    let mut gc = c.alloc(n * rows).unwrap();
                    let mut uc = c.alloc(n * rows).unwrap();
                    let before = g.counters().0;
                    g.matmul_glu(kind, &ggw, &guw, &xg, n, rows, &mut gg, &mut ug)
                        .unwrap();
                    // Counted on this test's own backend (the shared one
                    // records other tests' work at the same time).
                    if n <= 8 && std::ptr::eq(g, &plain) {
                        // One dispatch for both products, after the input's
                        // rounding (done once for this input: the first kind).
                        let dispatches = g.counters().0 - before;
                        let rounding = u64::from(kind == GluKind::Silu);
                        assert_eq!(dispatches, 1 + rounding, "{ty:?} n={n} {kind:?}");
                    }
                    c.matmul_glu(kind, &cgw, &cuw, &xc, n, rows, &mut gc, &mut uc)
                        .unwrap();
                    let e = rel_l2(&read(g, &gg), &read(&c, &gc));
                    assert!(e < 2e-3, "{ty:?} n={n} {kind:?}: relative L2 {e}");
                    // The same backend's unfused ops give the same values.
                    let mut g2 = g.alloc(n * rows).unwrap();
                    g.matmul(&ggw, &xg, n, &mut g2).unwrap();
                    g.matmul(&guw, &xg, n, &mut ug).unwrap();
                    g.glu(kind, &mut g2, &ug, n * rows).unwrap();
                    let d = rel_l2(&read(g, &gg), &read(g, &g2));
                    assert!(d < 1e-6, "{ty:?} n={n} {kind:?}: fused vs unfused {d}");
                }
            }
        }
    }
}

#[test]
fn matmul_qkv_matches_cpu_and_separate_matmuls() {
    // q, k and v in one dispatch (1-8 tokens, weights of different types
    // and row counts, so different activation roundings), the fallback to
    // separate products (9 tokens; weights split by rows), with subgroups
    // and with the workgroup-memory reduction: against the CPU backend, and
    // equal bit for bit to the same backend's separate matmuls.
    let shared = gpu_or_skip!();
    let plain = GpuBackend::new().unwrap();
    plain.set_subgroups(false);
    let mut split = GpuBackend::new().unwrap();
    // Parts of at most 3 rows of 512 Q8_0 values (544 bytes per row).
    split.limit_part_bytes(3 * 544 + 16);
    let c = cpu();
    let cols = 512usize;
    let mixes: [[(GgmlType, usize); 3]; 3] = [
        [
            (GgmlType::Q4_K, 64),
            (GgmlType::Q4_K, 16),
            (GgmlType::Q6_K, 16),
        ],
        [
            (GgmlType::Q5_0, 72),
            (GgmlType::Q8_0, 24),
            (GgmlType::Q6_K, 24),
        ],
        [(GgmlType::F16, 40), (GgmlType::F32, 8), (GgmlType::Q4_0, 8)],
    ];
    for (i, mix) in mixes.iter().enumerate() {
        let s = 400 + 10 * i as u64;
        let names = ["q", "k", "v"];
        let tensors: Vec<_> = (0..3)
            .map(|j| {
                let (ty, rows) = mix[j];
                (
                    names[j],
                    cols,
                    rows,
                    ty,
                    rand_vec(cols * rows, s + j as u64),
                )
            })
            .collect();
        let file = gguf(&tensors);
        let cw: Vec<_> = names.iter().map(|n| weight(&c, &file, n)).collect();
        for g in [&*shared, &plain, &split] {
            let gw: Vec<_> = names.iter().map(|n| weight(g, &file, n)).collect();
            for n in [1usize, 3, 8, 9] {
                let x = rand_vec(n * cols, s + 5 + n as u64);
                let (xg, xc) = (g.upload(&x).unwrap(), c.upload(&x).unwrap());
                let mut og: Vec<_> = mix.iter().map(|&(_, r)| g.alloc(n * r).unwrap()).collect();
                let mut oc: Vec<_> = mix.iter().map(|&(_, r)| c.alloc(n * r).unwrap()).collect();
                let [q, k, v] = &mut og[..] else {
                    unreachable!()
                };
                let before = g.counters().0;
                g.matmul_qkv(&gw[0], &gw[1], &gw[2], &xg, n, q, k, v)
                    .unwrap();
                // Counted on a backend of this test's own (the shared one
                // records other tests' work at the same time).
                if n <= 8 && std::ptr::eq(g, &plain) {
                    // One product dispatch, plus one rounding of the input
                    // per rounding the three types need (Q8_K; Q8_0 and
                    // Q8_K; f16 and Q8_0, none for f32).
                    let roundings = [1, 2, 2][i];
                    let dispatches = (g.counters().0 - before) as usize;
                    assert_eq!(dispatches, 1 + roundings, "mix {i} n={n}");
                }
                let [q, k, v] = &mut oc[..] else {
                    unreachable!()
                };
                c.matmul_qkv(&cw[0], &cw[1], &cw[2], &xc, n, q, k, v)
                    .unwrap();
                for j in 0..3 {
                    let got = read(g, &og[j]);
                    let e = rel_l2(&got, &read(&c, &oc[j]));
                    assert!(
                        e < 2e-3,
                        "{:?} n={n}: {} relative L2 {e}",
                        mix[j].0,
                        names[j]
                    );
                    let mut alone = g.alloc(n * mix[j].1).unwrap();
                    g.matmul(&gw[j], &xg, n, &mut alone).unwrap();
                    assert!(
                        got == read(g, &alone),
                        "{:?} n={n}: {} differs from its own matmul",
                        mix[j].0,
                        names[j]
                    );
                }
            }
        }
    }
}

#[test]
fn qk_rope_matches_cpu_composed_ops() {
    // q and k rotated in one dispatch, with and without QK-norm, with and
    // without the q scale, against the CPU backend's rms_norm, rope, rope,
    // scale.
    if gpu().is_none() {
        return;
    }
    // A backend of its own, whose dispatches this test counts.
    let g = std::sync::Arc::new(GpuBackend::new().unwrap());
    let c = cpu();
    let ff: Vec<f32> = (0..64).map(|i| 1.0 + i as f32 * 0.25).collect();
    let cases = [
        // (heads, kv heads, head_dim, n_rot, kind, freq factors, positions)
        (
            4usize,
            1usize,
            256usize,
            256usize,
            RopeKind::Neox,
            false,
            vec![37u32],
        ),
        (
            4,
            2,
            64,
            64,
            RopeKind::Normal,
            true,
            vec![0, 7, 130, 17, 1000],
        ),
        (3, 1, 80, 48, RopeKind::Neox, false, vec![5, 6, 900]),
        (2, 2, 128, 128, RopeKind::Normal, false, vec![4000]),
    ];
    for (case, (nh, nkv, hd, n_rot, kind, with_ff, positions)) in cases.into_iter().enumerate() {
        let n = positions.len();
        let s = 300 + 10 * case as u64;
        let nw = |seed| rand_vec(hd, seed).iter().map(|v| 1.0 + 0.5 * v).collect();
        let file = gguf(&[
            ("qn", hd, 1, GgmlType::F32, nw(s)),
            ("kn", hd, 1, GgmlType::F32, nw(s + 1)),
        ]);
        let (qwg, qwc) = (weight(&*g, &file, "qn"), weight(&c, &file, "qn"));
        let (kwg, kwc) = (weight(&*g, &file, "kn"), weight(&c, &file, "kn"));
        let q: Vec<f32> = rand_vec(n * nh * hd, s + 2)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let k: Vec<f32> = rand_vec(n * nkv * hd, s + 3)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let params = RopeParams {
            kind,
            n_rot,
            freq_base: 10000.0,
            freq_scale: if with_ff { 0.5 } else { 1.0 },
            freq_factors: if with_ff {
                Some(&ff[..n_rot / 2])
            } else {
                None
            },
        };
        for normed in [false, true] {
            for q_scale in [None, Some(0.0625f32), Some(0.3)] {
                let mut qg = g.upload(&q).unwrap();
                let mut kg = g.upload(&k).unwrap();
                let mut qc = c.upload(&q).unwrap();
                let mut kc = c.upload(&k).unwrap();
                let fill_q = rand_vec(n * nh * hd, s + 4);
                let fill_k = rand_vec(n * nkv * hd, s + 5);
                let mut qog = g.upload(&fill_q).unwrap();
                let mut kog = g.upload(&fill_k).unwrap();
                let mut qoc = c.upload(&fill_q).unwrap();
                let mut koc = c.upload(&fill_k).unwrap();
                let (ng, nc) = if normed {
                    (Some((&qwg, &kwg, 1e-6)), Some((&qwc, &kwc, 1e-6)))
                } else {
                    (None, None)
                };
                let rope_g = QkRope {
                    norms: ng,
                    positions: &positions,
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    params,
                    q_scale,
                };
                let rope_c = rope_g.with_norms(nc);
                g.qk_rope(&mut qg, &mut kg, &mut qog, &mut kog, &rope_g)
                    .unwrap();
                c.qk_rope(&mut qc, &mut kc, &mut qoc, &mut koc, &rope_c)
                    .unwrap();
                let what = format!("case {case} normed={normed} scale={q_scale:?}");
                for (a, b) in [(&qg, &qc), (&kg, &kc), (&qog, &qoc), (&kog, &koc)] {
                    let d = max_abs(&read(&*g, a), &read(&c, b));
                    assert!(d < 2e-3, "{what}: {d}");
                }
                // Whichever pair holds the result really changed.
                let moved = if normed {
                    read(&*g, &qog)
                } else {
                    read(&*g, &qg)
                };
                assert!(rel_l2(&moved, &q) > 0.1, "{what}: q unchanged");

                // qk_rope_kv: the same rotation with the layer's new cache
                // rows written by the same dispatch, bit for bit this
                // backend's qk_rope then write_kv, and against the CPU's
                // default (its own two calls). Rows out of order, in a
                // cache with rows to spare.
                let v = rand_vec(n * nkv * hd, s + 6);
                let slots: Vec<usize> = (0..n).map(|i| (i * 5 + 3) % (n + 4)).collect();
                let (width, cap) = (nkv * hd, (n + 4) * nkv * hd);
                let vg = g.upload(&v).unwrap();
                let (mut kd0, mut vd0) = (g.alloc_cache(cap).unwrap(), g.alloc_cache(cap).unwrap());
                let k_rot = if normed { &kog } else { &kg };
                g.write_kv(&mut kd0, &mut vd0, k_rot, &vg, &slots, width)
                    .unwrap();
                let mut q2 = g.upload(&q).unwrap();
                let mut k2 = g.upload(&k).unwrap();
                let mut qo2 = g.upload(&fill_q).unwrap();
                let mut ko2 = g.upload(&fill_k).unwrap();
                let (mut kd1, mut vd1) = (g.alloc_cache(cap).unwrap(), g.alloc_cache(cap).unwrap());
                let d0 = g.counters().0;
                g.qk_rope_kv(
                    &mut q2, &mut k2, &vg, &mut qo2, &mut ko2, &rope_g, &mut kd1, &mut vd1, &slots,
                )
                .unwrap();
                // One dispatch where the adapter allows the bindings.
                let one = g.limits().max_storage_buffers_per_shader_stage >= 11 || !normed;
                assert_eq!(g.counters().0 - d0, if one { 1 } else { 2 }, "{what}");
                let vc = c.upload(&v).unwrap();
                let mut q3 = c.upload(&q).unwrap();
                let mut k3 = c.upload(&k).unwrap();
                let mut qo3 = c.upload(&fill_q).unwrap();
                let mut ko3 = c.upload(&fill_k).unwrap();
                let (mut kdc, mut vdc) = (c.alloc_cache(cap).unwrap(), c.alloc_cache(cap).unwrap());
                c.qk_rope_kv(
                    &mut q3, &mut k3, &vc, &mut qo3, &mut ko3, &rope_c, &mut kdc, &mut vdc, &slots,
                )
                .unwrap();
                let cache = |b: &dyn Fn(&mut [f32])| {
                    let mut out = vec![0.0; cap];
                    b(&mut out);
                    out
                };
                for (a, b) in [(&q2, &qg), (&k2, &kg), (&qo2, &qog), (&ko2, &kog)] {
                    assert_eq!(read(&*g, a), read(&*g, b), "{what}: qk_rope_kv vs qk_rope");
                }
                for (a, b, dc) in [(&kd1, &kd0, &kdc), (&vd1, &vd0, &vdc)] {
                    let fused = cache(&|o| g.download_cache(a, o).unwrap());
                    assert_eq!(fused, cache(&|o| g.download_cache(b, o).unwrap()), "{what}");
                    let d = max_abs(&fused, &cache(&|o| c.download_cache(dc, o).unwrap()));
                    assert!(d < 2e-3, "{what}: cache {d}");
                    assert!(fused.iter().filter(|x| **x != 0.0).count() >= n * width / 2);
                }
            }
        }
    }
}

#[test]
fn weights_split_by_rows_give_the_same_products_and_embeddings() {
    if gpu().is_none() {
        return;
    }
    let mut g = GpuBackend::new().unwrap();
    // Parts of at most 3 rows of 256 Q8_0 values (272 bytes per row).
    g.limit_part_bytes(3 * 272 + 16);
    let c = cpu();
    let (cols, rows) = (256, 10);
    let file = gguf(&[("w", cols, rows, GgmlType::Q8_0, rand_vec(cols * rows, 7))]);
    let (wg, wc) = (weight(&g, &file, "w"), weight(&c, &file, "w"));
    assert!(wg.n_parts() >= 3, "{} parts", wg.n_parts());
    for n in [1usize, 12] {
        let x = rand_vec(n * cols, 8);
        let mut og = g.alloc(n * rows).unwrap();
        let mut oc = c.alloc(n * rows).unwrap();
        g.matmul(&wg, &g.upload(&x).unwrap(), n, &mut og).unwrap();
        c.matmul(&wc, &c.upload(&x).unwrap(), n, &mut oc).unwrap();
        let e = rel_l2(&read(&g, &og), &read(&c, &oc));
        assert!(e < 2e-3, "n={n}: {e}");
    }
    let tokens = [9u32, 0, 4, 4, 7];
    let mut eg = g.alloc(tokens.len() * cols).unwrap();
    let mut ec = c.alloc(tokens.len() * cols).unwrap();
    g.embed(&wg, &tokens, 1.0, &mut eg).unwrap();
    c.embed(&wc, &tokens, 1.0, &mut ec).unwrap();
    assert!(max_abs(&read(&g, &eg), &read(&c, &ec)) < 1e-6);
}

#[test]
fn embed_matches_cpu_for_every_type() {
    let g = gpu_or_skip!();
    let c = cpu();
    let (cols, rows) = (256, 20);
    let tokens = [3u32, 19, 0, 3, 11];
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let file = gguf(&[("t", cols, rows, ty, rand_vec(cols * rows, 30 + i as u64))]);
        let (tg, tc) = (weight(&*g, &file, "t"), weight(&c, &file, "t"));
        let mut og = g.alloc(tokens.len() * cols).unwrap();
        let mut oc = c.alloc(tokens.len() * cols).unwrap();
        g.embed(&tg, &tokens, 1.7, &mut og).unwrap();
        c.embed(&tc, &tokens, 1.7, &mut oc).unwrap();
        let d = max_abs(&read(&*g, &og), &read(&c, &oc));
        assert!(d < 1e-5, "{ty:?}: {d}");
        let e = g.embed(&tg, &[rows as u32], 1.0, &mut og).unwrap_err();
        assert!(matches!(e, BackendError::TokenOutOfRange { .. }), "{e}");
    }
}

#[test]
fn unsupported_types_are_refused_by_type() {
    let g = gpu_or_skip!();
    let file = gguf(&[("w", 256, 4, GgmlType::Q2_K, rand_vec(1024, 1))]);
    let w = weight(&*g, &file, "w");
    let x = g.upload(&rand_vec(256, 2)).unwrap();
    let mut o = g.alloc(4).unwrap();
    let e = g.matmul(&w, &x, 1, &mut o).unwrap_err();
    assert!(
        matches!(
            e,
            BackendError::UnsupportedType {
                ty: GgmlType::Q2_K,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn norm_rope_and_elementwise_ops_match_cpu() {
    let g = gpu_or_skip!();
    let c = cpu();
    let (n, dim) = (5usize, 192usize);
    let nw = rand_vec(dim, 3)
        .iter()
        .map(|v| 1.0 + 0.3 * v)
        .collect::<Vec<_>>();
    let file = gguf(&[
        ("norm", dim, 1, GgmlType::F32, nw),
        ("bias", dim, 1, GgmlType::F32, rand_vec(dim, 4)),
        ("qnorm", 64, 1, GgmlType::F32, rand_vec(64, 14)),
    ]);
    let x = rand_vec(n * dim, 5)
        .iter()
        .map(|v| v * 3.0)
        .collect::<Vec<_>>();
    let (xg, xc) = (g.upload(&x).unwrap(), c.upload(&x).unwrap());

    // RMSNorm over rows and over heads (QK-norm shape).
    for (rows, d, name) in [(n, dim, "norm"), (n * 3, 64, "qnorm")] {
        let (ng, nc) = (weight(&*g, &file, name), weight(&c, &file, name));
        let mut og = g.alloc(n * dim).unwrap();
        let mut oc = c.alloc(n * dim).unwrap();
        g.rms_norm(&xg, &ng, 1e-6, rows, d, &mut og).unwrap();
        c.rms_norm(&xc, &nc, 1e-6, rows, d, &mut oc).unwrap();
        assert!(rel_l2(&read(&*g, &og), &read(&c, &oc)) < 1e-6);
    }

    // add_bias, add, scale, softcap.
    let (bg, bc) = (weight(&*g, &file, "bias"), weight(&c, &file, "bias"));
    let mut ag = g.upload(&x).unwrap();
    let mut ac = c.upload(&x).unwrap();
    g.add_bias(&mut ag, &bg, n).unwrap();
    c.add_bias(&mut ac, &bc, n).unwrap();
    let y = rand_vec(n * dim, 6);
    g.add(&mut ag, &g.upload(&y).unwrap(), n * dim - 7).unwrap();
    c.add(&mut ac, &c.upload(&y).unwrap(), n * dim - 7).unwrap();
    g.scale(&mut ag, 0.37, n * dim).unwrap();
    c.scale(&mut ac, 0.37, n * dim).unwrap();
    g.softcap(&mut ag, 0.9, n * dim - 3).unwrap();
    c.softcap(&mut ac, 0.9, n * dim - 3).unwrap();
    assert!(max_abs(&read(&*g, &ag), &read(&c, &ac)) < 1e-5);

    // glu, both activations.
    for kind in [GluKind::Silu, GluKind::GeluTanh] {
        let gate: Vec<f32> = rand_vec(n * dim, 8).iter().map(|v| v * 12.0).collect();
        let mut og = g.upload(&gate).unwrap();
        let mut oc = c.upload(&gate).unwrap();
        g.glu(kind, &mut og, &xg, n * dim).unwrap();
        c.glu(kind, &mut oc, &xc, n * dim).unwrap();
        let d = max_abs(&read(&*g, &og), &read(&c, &oc));
        assert!(d < 1e-4, "{kind:?}: {d}");
    }

    // RoPE: both kinds, partial rotation, frequency factors and scaling.
    let (nh, hd) = (3usize, 64usize);
    let positions = [0u32, 7, 130, 4095, 17];
    let q = rand_vec(positions.len() * nh * hd, 9);
    let ff: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 * 0.5).collect();
    for (kind, n_rot, freq_factors, freq_scale) in [
        (RopeKind::Normal, 64, None, 1.0),
        (RopeKind::Neox, 64, None, 1.0),
        (RopeKind::Neox, 32, Some(&ff[..]), 0.25),
        (RopeKind::Normal, 32, Some(&ff[..]), 1.0),
    ] {
        let p = RopeParams {
            kind,
            n_rot,
            freq_base: 10000.0,
            freq_scale,
            freq_factors,
        };
        let mut qg = g.upload(&q).unwrap();
        let mut qc = c.upload(&q).unwrap();
        g.rope(&mut qg, &positions, nh, hd, &p).unwrap();
        c.rope(&mut qc, &positions, nh, hd, &p).unwrap();
        let d = max_abs(&read(&*g, &qg), &read(&c, &qc));
        assert!(d < 2e-3, "{kind:?} n_rot={n_rot}: {d}");
    }
}

#[test]
fn write_rows_copy_rows_argmax_and_top_k_match_cpu() {
    let g = gpu_or_skip!();
    let c = cpu();
    let width = 24;
    let src = rand_vec(3 * width, 11);
    // Cache rows written twice (the second write replaces one row).
    let mut dg = g.alloc_cache(8 * width).unwrap();
    let mut dc = c.alloc_cache(8 * width).unwrap();
    let again = rand_vec(width, 12);
    for (rows, s) in [(&[6usize, 1, 3][..], &src), (&[1][..], &again)] {
        g.write_rows(&mut dg, &g.upload(s).unwrap(), rows, width)
            .unwrap();
        c.write_rows(&mut dc, &c.upload(s).unwrap(), rows, width)
            .unwrap();
    }
    let (mut hg, mut hc) = (vec![0.0; 8 * width], vec![0.0; 8 * width]);
    g.download_cache(&dg, &mut hg).unwrap();
    c.download_cache(&dc, &mut hc).unwrap();
    assert_eq!(hg, hc);
    assert!(hc[width..2 * width].iter().all(|v| *v != 0.0));
    // K and V in one call, against the CPU backend's two write_rows.
    let (kv, vv) = (rand_vec(2 * width, 15), rand_vec(2 * width, 16));
    let mut kg = g.alloc_cache(8 * width).unwrap();
    let mut vg = g.alloc_cache(8 * width).unwrap();
    let mut kc = c.alloc_cache(8 * width).unwrap();
    let mut vc = c.alloc_cache(8 * width).unwrap();
    for (rows, seed) in [(&[2usize, 7][..], 0u64), (&[7, 0][..], 1)] {
        let (k, v) = if seed == 0 {
            (kv.clone(), vv.clone())
        } else {
            (rand_vec(2 * width, 17), rand_vec(2 * width, 18))
        };
        let (k_g, v_g) = (g.upload(&k).unwrap(), g.upload(&v).unwrap());
        g.write_kv(&mut kg, &mut vg, &k_g, &v_g, rows, width)
            .unwrap();
        let (k_c, v_c) = (c.upload(&k).unwrap(), c.upload(&v).unwrap());
        c.write_kv(&mut kc, &mut vc, &k_c, &v_c, rows, width)
            .unwrap();
    }
    for (a, b) in [(&kg, &kc), (&vg, &vc)] {
        let (mut ha, mut hb) = (vec![0.0; 8 * width], vec![0.0; 8 * width]);
        g.download_cache(a, &mut ha).unwrap();
        c.download_cache(b, &mut hb).unwrap();
        assert_eq!(ha, hb);
        assert!(hb[2 * width..3 * width].iter().all(|v| *v != 0.0));
    }
    // The copy is recorded right after a dispatch, then both are read.
    let mut xg = g.upload(&rand_vec(8 * width, 14)).unwrap();
    let mut xc = c.upload(&rand_vec(8 * width, 14)).unwrap();
    g.scale(&mut xg, 0.5, 8 * width).unwrap();
    let rg = g.copy_rows(&xg, 2, 3, width).unwrap();
    let rc = c.copy_rows(&xc, 2, 3, width).unwrap();
    g.scale(&mut xg, 2.0, 8 * width).unwrap();
    c.scale(&mut xc, 0.5, 8 * width).unwrap();
    c.scale(&mut xc, 2.0, 8 * width).unwrap();
    let rc_scaled: Vec<f32> = read(&c, &rc).iter().map(|v| v * 0.5).collect();
    assert_eq!(read(&*g, &rg), rc_scaled);
    assert_eq!(read(&*g, &xg), read(&c, &xc));

    // Ties, NaN and more candidates than one chunk (several rounds).
    let n = 70_000;
    let mut v = rand_vec(n, 13);
    v[5] = 3.0;
    v[69_000] = 3.0;
    v[100] = f32::NAN;
    v[40_000] = 2.5;
    let (vg, vc) = (g.upload(&v).unwrap(), c.upload(&v).unwrap());
    assert_eq!(g.argmax(&vg, n).unwrap(), 5);
    assert_eq!(g.argmax(&vg, n).unwrap(), c.argmax(&vc, n).unwrap());
    for k in [1, 5, 40, 256, 300] {
        assert_eq!(
            g.top_k(&vg, n, k).unwrap(),
            c.top_k(&vc, n, k).unwrap(),
            "k={k}"
        );
    }
    assert_eq!(g.top_k(&vg, 7, 10).unwrap(), c.top_k(&vc, 7, 10).unwrap());
}

#[allow(clippy::too_many_arguments)]
fn attention_case(
    nh: usize,
    nkv: usize,
    hd: usize,
    qpos: &[u32],
    kpos: &[Option<u32>],
    window: Option<u32>,
    softcap: Option<f32>,
    seed: u64,
) {
    let Some(g) = gpu() else { return };
    attention_case_on(&g, nh, nkv, hd, qpos, kpos, window, softcap, seed);
}

/// `attention_case` on backend `g`; returns the dispatches the attention
/// took.
#[allow(clippy::too_many_arguments)]
fn attention_case_on(
    g: &GpuBackend,
    nh: usize,
    nkv: usize,
    hd: usize,
    qpos: &[u32],
    kpos: &[Option<u32>],
    window: Option<u32>,
    softcap: Option<f32>,
    seed: u64,
) -> u64 {
    let c = cpu();
    let q = rand_vec(qpos.len() * nh * hd, seed);
    let k = rand_vec(kpos.len() * nkv * hd, seed + 1);
    let v = rand_vec(kpos.len() * nkv * hd, seed + 2);
    // Keys and values as the cache holds them (through write_rows, f16).
    let rows: Vec<usize> = (0..kpos.len()).collect();
    let mut kg = g.alloc_cache(k.len()).unwrap();
    let mut vg = g.alloc_cache(v.len()).unwrap();
    let mut kc = c.alloc_cache(k.len()).unwrap();
    let mut vc = c.alloc_cache(v.len()).unwrap();
    g.write_rows(&mut kg, &g.upload(&k).unwrap(), &rows, nkv * hd)
        .unwrap();
    g.write_rows(&mut vg, &g.upload(&v).unwrap(), &rows, nkv * hd)
        .unwrap();
    c.write_rows(&mut kc, &c.upload(&k).unwrap(), &rows, nkv * hd)
        .unwrap();
    c.write_rows(&mut vc, &c.upload(&v).unwrap(), &rows, nkv * hd)
        .unwrap();
    let p = AttentionParams {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: hd,
        scale: 1.0 / (hd as f32).sqrt() * 2.0,
        softcap,
        window,
        query_positions: qpos,
        cache_positions: kpos,
    };
    let mut og = g.alloc(q.len()).unwrap();
    let mut oc = c.alloc(q.len()).unwrap();
    let qg = g.upload(&q).unwrap();
    let d0 = g.counters().0;
    g.attention(&qg, &kg, &vg, &p, &mut og).unwrap();
    let dispatches = g.counters().0 - d0;
    c.attention(&c.upload(&q).unwrap(), &kc, &vc, &p, &mut oc)
        .unwrap();
    let (a, b) = (read(g, &og), read(&c, &oc));
    let d = max_abs(&a, &b);
    assert!(
        d < 2e-3,
        "nh={nh} nkv={nkv} hd={hd} rows={} window={window:?} softcap={softcap:?}: {d}",
        kpos.len()
    );
    dispatches
}

#[test]
fn attention_over_short_caches_takes_one_kernel_and_matches_cpu() {
    if gpu().is_none() {
        return;
    }
    // Decoding over at most 256 cache rows runs in one kernel (scores in
    // workgroup memory), with the lanes of a row added by subgroup
    // shuffles where subgroups are wide enough and through workgroup
    // memory otherwise: both, on backends of their own (their dispatches
    // counted). Shapes: Gemma 3 (4 heads over 1, head_dim 256, window,
    // soft-capping), Llama 3.2 (32 over 8, 64), head_dim 80 (row lanes
    // that do not divide the workgroup) and 128; one row, a ring of 100
    // with an empty slot, and 256 rows; 257 rows take two kernels.
    for subgroups in [true, false] {
        let g = GpuBackend::new().unwrap();
        g.set_subgroups(subgroups);
        for (n, seed) in [(1usize, 41u64), (100, 51), (256, 61), (257, 71)] {
            let mut kpos = ring(n as u32, 3, (n as u32 * 7) / 10);
            if n == 100 {
                kpos[40] = None;
            }
            let last = n as u32 + 2;
            // (heads, kv heads, head_dim, window, soft-cap, query tokens)
            let cases = [
                (4, 1, 256, Some(64), Some(50.0), 1),
                (32, 8, 64, None, None, 1),
                (4, 2, 80, Some(30), None, 1),
                (8, 2, 128, None, Some(20.0), 2),
            ];
            for (i, (nh, nkv, hd, window, cap, nq)) in cases.into_iter().enumerate() {
                let qpos: Vec<u32> = (0..nq).map(|j| last + 1 - nq + j).collect();
                let d =
                    attention_case_on(&g, nh, nkv, hd, &qpos, &kpos, window, cap, seed + i as u64);
                let want = if n <= 256 { 1 } else { 2 };
                assert_eq!(d, want, "rows {n} head_dim {hd} subgroups {subgroups}");
            }
        }
    }
}

#[test]
fn attention_matches_cpu_with_gqa_window_softcap_and_ring_slots() {
    // A ring of 6 slots holding positions out of order, one empty.
    let kpos = [Some(6), Some(7), Some(8), None, Some(4), Some(5)];
    for (window, softcap) in [(None, None), (Some(3), None), (Some(2), Some(0.5))] {
        attention_case(4, 2, 64, &[7, 8], &kpos, window, softcap, 21);
    }
    // Many cache rows (several 64-row chunks), a prompt of queries, a
    // query that sees nothing, head_dim 256 and 80.
    let kpos: Vec<Option<u32>> = (0..200)
        .map(|i| if i % 17 == 5 { None } else { Some(i) })
        .collect();
    let qpos: Vec<u32> = (0..200).step_by(13).collect();
    attention_case(8, 2, 128, &qpos, &kpos, None, None, 31);
    attention_case(2, 1, 256, &qpos, &kpos, Some(70), Some(30.0), 41);
    attention_case(4, 4, 80, &qpos, &kpos, Some(1), None, 51);
    let kpos: Vec<Option<u32>> = (0..10).map(|i| Some(i + 50)).collect();
    attention_case(2, 1, 64, &[3, 55], &kpos, None, None, 61);
}

/// A ring of `n` cache slots holding positions `base..base + n` rotated by
/// `rot`, with every 37th slot (from the 5th) empty.
fn ring(n: u32, base: u32, rot: u32) -> Vec<Option<u32>> {
    (0..n)
        .map(|i| (i % 37 != 5).then_some(base + (i + rot) % n))
        .collect()
}

#[test]
fn attention_two_kernel_and_split_paths_match_cpu() {
    // Decoding (one or two query tokens) on the two-kernel path: the
    // Gemma-3 shape (4 heads over 1 kv head, head_dim 256, sliding window,
    // soft-capping), the Llama-3.2 shape (32 over 8, head_dim 64), head_dim
    // 80 and 128, with a ring of 640 slots.
    let kpos = ring(640, 100, 333);
    attention_case(4, 1, 256, &[739], &kpos, Some(512), Some(50.0), 71);
    attention_case(4, 1, 256, &[738, 739], &kpos, None, None, 72);
    attention_case(32, 8, 64, &[739], &kpos, None, None, 73);
    attention_case(4, 2, 80, &[739], &kpos, Some(100), None, 74);
    attention_case(8, 2, 128, &[600, 739], &kpos, None, Some(20.0), 75);
    // Few workgroups (one vec4 of dimensions each), and a head that sees
    // nothing next to one that sees every row.
    attention_case(2, 1, 64, &[50, 739], &kpos, None, None, 76);
    // Tokens × heads on both sides of the limit (256): 64 and 65 tokens of
    // 4 heads (the second on the split path, several row ranges).
    let kpos = ring(150, 0, 40);
    let qpos: Vec<u32> = (0..64).map(|i| 20 + 2 * i).collect();
    attention_case(4, 2, 64, &qpos, &kpos, Some(64), None, 81);
    let qpos: Vec<u32> = (0..65).map(|i| 20 + 2 * i).collect();
    attention_case(4, 2, 64, &qpos, &kpos, Some(64), None, 82);
    // Cache rows on both sides of the limit (4096).
    for (n, seed) in [(4096, 91), (4097, 92)] {
        let kpos = ring(n, 7, 1000);
        attention_case(2, 1, 64, &[n + 6], &kpos, None, Some(30.0), seed);
        attention_case(4, 1, 256, &[n + 6], &kpos, Some(1024), None, seed + 10);
    }
}
