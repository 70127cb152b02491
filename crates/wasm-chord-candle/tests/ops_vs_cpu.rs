//! Every Backend op of the Candle backend (candle's CPU device) against the
//! reference CPU backend, on random inputs: quantized matmuls for every
//! weight type the backend accepts (weights quantized with core's
//! llama.cpp-reference quantizers), embedding, norms, RoPE variants, gated
//! activations, KV-cache writes and attention with GQA, sliding window,
//! soft-capping and ring-buffer slots, argmax and top-k.
//!
//! One script of ops ([`script`]) runs on both backends and every named
//! output is compared.

use std::sync::Arc;
use wasm_chord_candle::{CandleBackend, CandleDevice, MATMUL_TYPES};
use wasm_chord_core::backend::{
    AttentionParams, Backend, GluKind, QkRope, RopeKind, RopeParams, TensorBytes,
};
use wasm_chord_core::gguf::{GgufFile, GgufWriter};
use wasm_chord_core::GgmlType;
use wasm_chord_cpu::CpuBackend;

fn rand_vec(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

const COLS: usize = 512;
const ROWS: usize = 48;

fn quantized(ty: GgmlType, v: &[f32]) -> Vec<u8> {
    let n = ty.row_bytes(v.len() as u64).unwrap() as usize;
    let mut out = vec![0u8; n];
    wasm_chord_core::quant::quantize(ty, v, &mut out).unwrap();
    out
}

/// Random IQ4_NL blocks (core has no IQ quantizer): an f16 scale in
/// [0.005, 0.02] and random 4-bit indices.
fn iq4_nl_blocks(n: usize) -> Vec<u8> {
    let scales = rand_vec(n, 50);
    let idx = rand_vec(n * 16, 51);
    let mut out = Vec::with_capacity(n * 18);
    for (b, &s) in scales.iter().enumerate() {
        let d = half::f16::from_f32(0.0125 + 0.0075 * s);
        out.extend_from_slice(&d.to_le_bytes());
        for &r in &idx[b * 16..b * 16 + 16] {
            out.push(((r + 1.0) * 127.99) as u8);
        }
    }
    out
}

/// A GGUF holding a `ROWS × COLS` matrix of every accepted type, an
/// embedding table, norm weights and a bias.
fn weights_file() -> Arc<GgufFile> {
    let mut w = GgufWriter::new();
    for (i, &ty) in MATMUL_TYPES.iter().enumerate() {
        let v = rand_vec(ROWS * COLS, 100 + i as u32);
        w.add_tensor(
            format!("mat.{}", ty.name()),
            &[COLS as u64, ROWS as u64],
            ty,
            quantized(ty, &v),
        )
        .unwrap();
    }
    w.add_tensor(
        "mat.iq4_nl",
        &[COLS as u64, ROWS as u64],
        GgmlType::IQ4_NL,
        iq4_nl_blocks(ROWS * COLS / 32),
    )
    .unwrap();
    let v = rand_vec(ROWS * COLS, 7);
    w.add_tensor(
        "embd",
        &[COLS as u64, ROWS as u64],
        GgmlType::Q4_K,
        quantized(GgmlType::Q4_K, &v),
    )
    .unwrap();
    for (name, n, seed) in [("norm", COLS, 8), ("hnorm", 32, 9), ("bias", ROWS, 10)] {
        let v: Vec<f32> = rand_vec(n, seed).iter().map(|x| 1.0 + 0.5 * x).collect();
        w.add_tensor(
            name,
            &[n as u64],
            GgmlType::F32,
            quantized(GgmlType::F32, &v),
        )
        .unwrap();
    }
    Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())
}

fn weight<B: Backend>(be: &B, f: &Arc<GgufFile>, name: &str) -> B::Weight {
    let info = f.tensor(name).unwrap();
    be.upload_weight(info, TensorBytes::new(f, info).unwrap())
        .unwrap()
}

fn get<B: Backend>(be: &B, b: &B::Buffer, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    be.download(b, &mut v).unwrap();
    v
}

/// Runs every op on `be` and returns the named outputs.
fn script<B: Backend>(be: &B, f: &Arc<GgufFile>) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    // Matmuls, one and several tokens.
    for &ty in MATMUL_TYPES {
        let w = weight(be, f, &format!("mat.{}", ty.name()));
        for n_tok in [1usize, 5, 8, 16] {
            let x = be
                .upload(&rand_vec(n_tok * COLS, 20 + n_tok as u32))
                .unwrap();
            let mut y = be.alloc(n_tok * ROWS).unwrap();
            be.matmul(&w, &x, n_tok, &mut y).unwrap();
            out.push((format!("matmul {ty} x{n_tok}"), get(be, &y, n_tok * ROWS)));
        }
    }
    // A type candle lacks, expanded to f32 at upload.
    let w = weight(be, f, "mat.iq4_nl");
    let x = be.upload(&rand_vec(3 * COLS, 23)).unwrap();
    let mut y = be.alloc(3 * ROWS).unwrap();
    be.matmul(&w, &x, 3, &mut y).unwrap();
    out.push(("matmul iq4_nl x3".into(), get(be, &y, 3 * ROWS)));

    // Embedding with a scale.
    let embd = weight(be, f, "embd");
    let mut e = be.alloc(3 * COLS).unwrap();
    be.embed(&embd, &[5, 0, 47], 1.7, &mut e).unwrap();
    out.push(("embed".into(), get(be, &e, 3 * COLS)));

    // RMSNorm over hidden rows and per-head rows.
    let x = be.upload(&rand_vec(3 * COLS, 30)).unwrap();
    let norm = weight(be, f, "norm");
    let mut h = be.alloc(3 * COLS).unwrap();
    be.rms_norm(&x, &norm, 1e-6, 3, COLS, &mut h).unwrap();
    out.push(("rms_norm".into(), get(be, &h, 3 * COLS)));
    let hnorm = weight(be, f, "hnorm");
    be.rms_norm(&x, &hnorm, 1e-5, 3 * COLS / 32, 32, &mut h)
        .unwrap();
    out.push(("rms_norm per head".into(), get(be, &h, 3 * COLS)));

    // Bias, add, scale, softcap, glu.
    let bias = weight(be, f, "bias");
    let mut b = be.upload(&rand_vec(2 * ROWS, 31)).unwrap();
    be.add_bias(&mut b, &bias, 2).unwrap();
    out.push(("add_bias".into(), get(be, &b, 2 * ROWS)));
    let mut a = be.upload(&rand_vec(100, 32)).unwrap();
    let c = be.upload(&rand_vec(100, 33)).unwrap();
    be.add(&mut a, &c, 90).unwrap();
    out.push(("add (partial)".into(), get(be, &a, 100)));
    be.scale(&mut a, 0.37, 100).unwrap();
    out.push(("scale".into(), get(be, &a, 100)));
    let mut s = be
        .upload(
            &rand_vec(64, 34)
                .iter()
                .map(|v| v * 60.0)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    be.softcap(&mut s, 30.0, 64).unwrap();
    out.push(("softcap".into(), get(be, &s, 64)));
    let g: Vec<f32> = rand_vec(300, 35).iter().map(|v| v * 12.0).collect();
    let u = be.upload(&rand_vec(300, 36)).unwrap();
    for kind in [GluKind::Silu, GluKind::GeluTanh] {
        let mut o = be.upload(&g).unwrap();
        be.glu(kind, &mut o, &u, 300).unwrap();
        out.push((format!("glu {kind:?}"), get(be, &o, 300)));
    }

    // RoPE: both pairings, partial rotation, frequency factors.
    let ff: Vec<f32> = (0..12).map(|i| 1.0 + i as f32 * 0.5).collect();
    for (kind, n_rot, factors) in [
        (RopeKind::Normal, 32, false),
        (RopeKind::Neox, 32, false),
        (RopeKind::Neox, 24, true),
        (RopeKind::Normal, 24, true),
    ] {
        let mut r = be.upload(&rand_vec(3 * 4 * 32, 37)).unwrap();
        let p = RopeParams {
            kind,
            n_rot,
            freq_base: 10000.0,
            freq_scale: 0.5,
            freq_factors: factors.then_some(&ff[..]),
        };
        be.rope(&mut r, &[0, 7, 1000], 4, 32, &p).unwrap();
        out.push((format!("rope {kind:?} {n_rot} {factors}"), get(be, &r, 384)));
    }

    // The fused decode ops: residual add and norm (with and without the
    // added branch's norm), and QK-norm + RoPE + q scale over GQA heads.
    for normed in [false, true] {
        let mut xr = be.upload(&rand_vec(3 * COLS, 50)).unwrap();
        let br = be.upload(&rand_vec(3 * COLS, 51)).unwrap();
        let mut o = be.alloc(3 * COLS).unwrap();
        let bn = normed.then_some(&norm);
        be.add_rms_norm(&mut xr, &br, bn, &norm, 1e-6, 3, COLS, &mut o)
            .unwrap();
        out.push((format!("add_rms_norm {normed} x"), get(be, &xr, 3 * COLS)));
        out.push((format!("add_rms_norm {normed} out"), get(be, &o, 3 * COLS)));
    }
    for (normed, kind, n_rot, scale) in [
        (false, RopeKind::Normal, 32, None),
        (true, RopeKind::Neox, 24, Some(0.125f32)),
        (true, RopeKind::Normal, 32, Some(0.5f32)),
    ] {
        let (nh, nkv, hd) = (4usize, 2usize, 32usize);
        let mut q = be.upload(&rand_vec(3 * nh * hd, 52)).unwrap();
        let mut k = be.upload(&rand_vec(3 * nkv * hd, 53)).unwrap();
        let mut qo = be.alloc(3 * nh * hd).unwrap();
        let mut ko = be.alloc(3 * nkv * hd).unwrap();
        let p = RopeParams {
            kind,
            n_rot,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: (n_rot == 24).then_some(&ff[..]),
        };
        let norms = normed.then_some((&hnorm, &hnorm, 1e-6f32));
        let rope = QkRope {
            norms,
            positions: &[3, 9, 40],
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            params: p,
            q_scale: scale,
        };
        be.qk_rope(&mut q, &mut k, &mut qo, &mut ko, &rope).unwrap();
        let name = format!("qk_rope {normed} {kind:?} {n_rot} {scale:?}");
        out.push((format!("{name} q"), get(be, &q, 3 * nh * hd)));
        out.push((format!("{name} k"), get(be, &k, 3 * nkv * hd)));
        if normed {
            out.push((format!("{name} q out"), get(be, &qo, 3 * nh * hd)));
            out.push((format!("{name} k out"), get(be, &ko, 3 * nkv * hd)));
        }
    }

    // KV-cache writes into a ring of 6 slots, then attention with GQA.
    let (nh, nkv, hd, slots) = (4usize, 2usize, 32usize, 6usize);
    let kvw = nkv * hd;
    let mut kc = be.alloc_cache(slots * kvw).unwrap();
    let mut vc = be.alloc_cache(slots * kvw).unwrap();
    let kpos = [Some(6), Some(7), Some(8), None, Some(4), Some(5)];
    let rows: Vec<usize> = vec![0, 1, 2, 4, 5];
    be.write_rows(
        &mut kc,
        &be.upload(&rand_vec(5 * kvw, 38)).unwrap(),
        &rows,
        kvw,
    )
    .unwrap();
    be.write_rows(
        &mut vc,
        &be.upload(&rand_vec(5 * kvw, 39)).unwrap(),
        &rows,
        kvw,
    )
    .unwrap();
    let mut cached = vec![0.0; slots * kvw];
    be.download_cache(&kc, &mut cached).unwrap();
    out.push(("write_rows".into(), cached));
    let qpos = [7u32, 8];
    let q = be.upload(&rand_vec(2 * nh * hd, 40)).unwrap();
    for (window, softcap) in [(None, None), (Some(3), None), (Some(2), Some(0.5))] {
        let p = AttentionParams {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: 0.35,
            softcap,
            window,
            query_positions: &qpos,
            cache_positions: &kpos,
        };
        let mut o = be.alloc(2 * nh * hd).unwrap();
        be.attention(&q, &kc, &vc, &p, &mut o).unwrap();
        out.push((
            format!("attention {window:?} {softcap:?}"),
            get(be, &o, 2 * nh * hd),
        ));
    }

    // Row copy, argmax (with a tie), top-k.
    let r = be.copy_rows(&x, 1, 2, COLS).unwrap();
    out.push(("copy_rows".into(), get(be, &r, 2 * COLS)));
    let mut lv = rand_vec(1000, 41);
    lv[700] = 5.0;
    lv[300] = 5.0;
    let l = be.upload(&lv).unwrap();
    out.push(("argmax".into(), vec![be.argmax(&l, 1000).unwrap() as f32]));
    out.push((
        "argmax prefix".into(),
        vec![be.argmax(&l, 500).unwrap() as f32],
    ));
    let tk = be.top_k(&l, 1000, 5).unwrap();
    out.push((
        "top_k".into(),
        tk.iter().flat_map(|&(i, v)| [i as f32, v]).collect(),
    ));
    out
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let f = weights_file();
    let cpu = script(&CpuBackend::new(), &f);
    let cb = CandleBackend::new(CandleDevice::Cpu).unwrap();
    assert_eq!(cb.name(), "candle-cpu");
    let got = script(&cb, &f);
    assert_eq!(cpu.len(), got.len());
    let mut worst = Vec::new();
    for ((name, want), (name2, have)) in cpu.iter().zip(&got) {
        assert_eq!(name, name2);
        assert_eq!(want.len(), have.len(), "{name}");
        assert!(have.iter().all(|v| v.is_finite()), "{name}: non-finite");
        let e = rel_l2(have, want);
        worst.push((name.clone(), e));
        // Matmuls: candle quantizes activations like ggml, except that on
        // x86 with AVX-VNNI its repacked Q8_0 kernel (rows a multiple of 16)
        // takes Q8_K activations (one scale per 256 values) where ggml uses
        // Q8_0 (one per 32): about 5e-3 relative error on random data.
        // Element-wise ops follow the same formulas (1e-5).
        let tol = if name.starts_with("matmul") {
            1e-2
        } else {
            1e-5
        };
        assert!(e <= tol, "{name}: relative L2 {e:.2e} > {tol:.0e}");
    }
    eprintln!("{worst:#?}");
}

#[test]
fn composed_ops_match_the_cpu_backend() {
    // The Metal path (candle built-in ops instead of the custom ops), run on
    // candle's CPU device.
    let f = weights_file();
    let cpu = script(&CpuBackend::new(), &f);
    let cb = CandleBackend::new(CandleDevice::Cpu)
        .unwrap()
        .with_composed_ops(true);
    let got = script(&cb, &f);
    for ((name, want), (_, have)) in cpu.iter().zip(&got) {
        assert!(have.iter().all(|v| v.is_finite()), "{name}: non-finite");
        let e = rel_l2(have, want);
        // GELU goes through candle's own tanh, then f16: a last-bit
        // difference before the rounding moves a few values by one f16 ulp.
        let tol = if name.starts_with("matmul") {
            1e-2
        } else if name.contains("Gelu") {
            1e-3
        } else {
            1e-5
        };
        assert!(e <= tol, "{name}: relative L2 {e:.2e} > {tol:.0e}");
    }
}

#[test]
fn unavailable_devices_are_named_errors() {
    #[cfg(not(feature = "cuda"))]
    assert!(matches!(
        CandleBackend::new(CandleDevice::Cuda(0)),
        Err(wasm_chord_core::backend::BackendError::NotAvailable {
            backend: "cuda",
            ..
        })
    ));
    #[cfg(not(feature = "metal"))]
    assert!(matches!(
        CandleBackend::new(CandleDevice::Metal(0)),
        Err(wasm_chord_core::backend::BackendError::NotAvailable {
            backend: "metal",
            ..
        })
    ));
    let cb = CandleBackend::new(CandleDevice::Cpu).unwrap();
    assert!(cb.device_summary().contains("CPU"));
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let f = weights_file();
    let be = CandleBackend::new(CandleDevice::Cpu).unwrap();
    let w = weight(&be, &f, "mat.q4_K");
    let x = be.upload(&rand_vec(COLS, 1)).unwrap();
    let mut y = be.alloc(ROWS).unwrap();
    assert!(be.matmul(&w, &x, 2, &mut y).is_err());
    let embd = weight(&be, &f, "embd");
    let mut e = be.alloc(COLS).unwrap();
    assert!(be.embed(&embd, &[ROWS as u32], 1.0, &mut e).is_err());
    let mut kc = be.alloc_cache(4).unwrap();
    assert!(be.write_rows(&mut kc, &x, &[3], 2).is_err());
}

#[test]
fn large_matrices_of_types_candle_lacks_are_refused() {
    // Above 4M values a type candle has no QTensor for is not expanded to
    // f32 (it would quadruple the memory of a big matrix).
    let (cols, rows) = (256usize, 16_400usize);
    let mut w = GgufWriter::new();
    w.add_tensor(
        "big",
        &[cols as u64, rows as u64],
        GgmlType::IQ4_NL,
        iq4_nl_blocks(cols * rows / 32),
    )
    .unwrap();
    let f = Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap());
    let be = CandleBackend::new(CandleDevice::Cpu).unwrap();
    let info = f.tensor("big").unwrap();
    let r = be.upload_weight(info, TensorBytes::new(&f, info).unwrap());
    assert!(matches!(
        r,
        Err(wasm_chord_core::backend::BackendError::UnsupportedType {
            ty: GgmlType::IQ4_NL,
            ..
        })
    ));
}
