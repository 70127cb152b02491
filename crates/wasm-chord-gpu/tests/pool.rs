//! The activation buffer pool: a buffer taken again from the pool comes
//! back zeroed, and the cache of quantized activations never answers for
//! the buffer's previous contents.

mod common;

use common::*;
use wasm_chord_core::backend::Backend;
use wasm_chord_core::GgmlType;
use wasm_chord_gpu::GpuBackend;

/// A fresh backend (its own pool and counters).
fn own_gpu() -> Option<GpuBackend> {
    gpu()?;
    GpuBackend::new().ok()
}

#[test]
fn pooled_buffer_comes_back_zeroed() {
    let Some(g) = own_gpu() else { return };
    for (n, seed) in [(1000usize, 1u64), (64, 2), (4099, 3)] {
        let x = rand_vec(n, seed);
        let y = rand_vec(n, seed + 10);
        let xg = g.upload(&x).unwrap();
        let mut a = g.alloc(n).unwrap();
        // Written by a recorded dispatch that is still unsubmitted when
        // the buffer goes back to the pool.
        g.add(&mut a, &xg, n).unwrap();
        drop(a);
        let before = g.host_counters().buffers_reused;
        let mut b = g.alloc(n).unwrap();
        assert_eq!(g.host_counters().buffers_reused, before + 1, "n={n}");
        assert!(read(&g, &b).iter().all(|&v| v == 0.0), "n={n}: not zeroed");
        // Still zero before the first op on it: b + y == y exactly.
        let yg = g.upload(&y).unwrap();
        g.add(&mut b, &yg, n).unwrap();
        assert_eq!(read(&g, &b), y, "n={n}");
    }
}

#[test]
fn quantized_cache_does_not_survive_buffer_reuse() {
    let Some(g) = own_gpu() else { return };
    let c = cpu();
    let (cols, rows) = (512usize, 40usize);
    for (i, ty) in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F16]
        .into_iter()
        .enumerate()
    {
        let file = gguf(&[("w", cols, rows, ty, rand_vec(cols * rows, 20 + i as u64))]);
        let (wg, wc) = (weight(&g, &file, "w"), weight(&c, &file, "w"));
        let xa = rand_vec(cols, 30 + i as u64);
        let xb = rand_vec(cols, 40 + i as u64);
        // `x` holds xa and is multiplied (its quantized copy is cached) ...
        let mut x = g.alloc(cols).unwrap();
        g.add(&mut x, &g.upload(&xa).unwrap(), cols).unwrap();
        let mut out_a = g.alloc(rows).unwrap();
        g.matmul(&wg, &x, 1, &mut out_a).unwrap();
        let out_a = read(&g, &out_a);
        drop(x);
        // ... then dropped; the same buffer, taken again, holds xb.
        let before = g.host_counters().buffers_reused;
        let mut x = g.alloc(cols).unwrap();
        assert!(
            g.host_counters().buffers_reused > before,
            "{ty:?}: not reused"
        );
        g.add(&mut x, &g.upload(&xb).unwrap(), cols).unwrap();
        let mut out_b = g.alloc(rows).unwrap();
        g.matmul(&wg, &x, 1, &mut out_b).unwrap();
        let out_b = read(&g, &out_b);
        // The same product from a buffer that was never pooled.
        let fresh = g.upload(&xb).unwrap();
        let mut out_f = g.alloc(rows).unwrap();
        g.matmul(&wg, &fresh, 1, &mut out_f).unwrap();
        assert_eq!(
            out_b,
            read(&g, &out_f),
            "{ty:?}: differs from a fresh buffer"
        );
        // And against the CPU backend.
        let (xc, mut oc) = (c.upload(&xb).unwrap(), c.alloc(rows).unwrap());
        c.matmul(&wc, &xc, 1, &mut oc).unwrap();
        let e = rel_l2(&out_b, &read(&c, &oc));
        assert!(e < 2e-3, "{ty:?}: relative L2 {e} against the CPU");
        assert!(
            rel_l2(&out_b, &out_a) > 0.1,
            "{ty:?}: the old input's product"
        );
    }
}
