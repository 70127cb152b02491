//! Speed and parity of the Candle backend on random-weight models made in
//! memory by the project's generator (no files needed, so it runs on a bare
//! GPU machine).
//!
//! ```text
//! candle_bench bench  [--device cuda:0|cpu] [--presets gemma3-270m,llama-1b] [--pp 512] [--tg 128] [--reps 3] [--graphs 1|0|0,1] [--fresh] [--profile]
//! candle_bench parity [--device cuda:0|cpu]
//! ```
//!
//! `bench` runs a pp (one prompt of `--pp` tokens) and a tg (`--tg` tokens
//! one at a time from an empty context) per preset in q4_k_m, like
//! llama-bench, and prints tokens per second (mean and spread over
//! `--reps`). `--profile` adds a per-op table: each Backend call is timed
//! with a device synchronization after it (so totals are slower than the
//! plain run).
//!
//! `--fresh` times each tg repetition in a new session of `--tg` positions
//! and batches of one token, as `wasmchord bench` does (by default one
//! session of `--pp` positions is cleared and reused).
//!
//! `--graphs` picks decode with CUDA graphs (1, the default), without (0),
//! or both in turn for each preset (`0,1`).
//!
//! `parity` compares the logits of every position with the CPU backend on
//! tiny models of every architecture (q4_k_m, q8_0, one f16) and on a
//! Gemma-3-270M-shaped q4_k_m model; then, on CUDA, the logits of 300
//! decode steps with graphs against the same steps without them (the
//! kernels are the same, so they must agree to rounding). It exits non-zero
//! on disagreement.

use std::sync::Arc;
use std::time::Instant;
use wasm_chord_candle::{CandleBackend, CandleDevice};
use wasm_chord_core::backend::Backend;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::synth::{generate, SynthSpec};
use wasm_chord_runtime::{Logits, Model, Session, SessionConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn device(args: &[String]) -> CandleDevice {
    match arg(args, "--device").as_deref() {
        None | Some("cuda") => CandleDevice::Cuda(0),
        Some("cpu") => CandleDevice::Cpu,
        Some(d) if d.starts_with("cuda:") => CandleDevice::Cuda(d[5..].parse().unwrap_or(0)),
        Some(d) if d.starts_with("metal") => CandleDevice::Metal(0),
        Some(d) => {
            eprintln!("unknown device {d}");
            std::process::exit(2)
        }
    }
}

fn synth(arch: Option<&str>, preset: &str, mix: &str) -> Arc<GgufFile> {
    let t = Instant::now();
    let spec = SynthSpec::new(arch, preset, mix, 5).expect("known preset");
    let f = Arc::new(GgufFile::from_bytes(generate(&spec).expect("synth")).expect("gguf"));
    eprintln!(
        "synth {preset} {mix}: {:.1} MB in {:.1}s",
        f.file_len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    f
}

fn tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n_vocab as u64) as u32
        })
        .collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var =
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(2).saturating_sub(1) as f64;
    (m, var.sqrt())
}

fn bench_model<B: Backend>(
    model: &Model<B>,
    pp: usize,
    tg: usize,
    reps: usize,
    fresh: bool,
) -> (f64, f64, f64, f64) {
    let n_vocab = model.n_vocab();
    let cfg = SessionConfig {
        n_ctx: pp.max(tg) + 16,
        n_batch: pp.max(1),
    };
    let mut s = Session::new(model, cfg).expect("session");
    let prompt = tokens(pp, n_vocab, 1);
    let gen = tokens(tg, n_vocab, 2);
    // Warm-up: loads kernels, sizes allocator pools.
    s.forward(&prompt[..pp.min(32)], Logits::Last)
        .expect("warmup");
    s.forward(&gen[..1], Logits::Last).expect("warmup");
    let (mut pps, mut tgs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        s.clear();
        let t = Instant::now();
        s.forward(&prompt, Logits::Last).expect("pp");
        pps.push(pp as f64 / t.elapsed().as_secs_f64());
        s.clear();
        // --fresh: a new session of tg positions and batches of 1 for each
        // repetition, as `wasmchord bench` times it.
        let fresh_cfg = SessionConfig {
            n_ctx: tg.max(1),
            n_batch: 1,
        };
        let mut fs = fresh.then(|| Session::new(model, fresh_cfg).expect("session"));
        let s = fs.as_mut().unwrap_or(&mut s);
        let t = Instant::now();
        for tok in &gen {
            s.forward(std::slice::from_ref(tok), Logits::Last)
                .expect("tg");
        }
        tgs.push(tg as f64 / t.elapsed().as_secs_f64());
    }
    let (a, b) = mean_sd(&pps);
    let (c, d) = mean_sd(&tgs);
    (a, b, c, d)
}

fn bench(args: &[String]) {
    let dev = device(args);
    let presets = arg(args, "--presets").unwrap_or_else(|| "gemma3-270m,llama-1b".into());
    let pp: usize = arg(args, "--pp")
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let tg: usize = arg(args, "--tg")
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let reps: usize = arg(args, "--reps")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let profile = args.iter().any(|a| a == "--profile");
    let fresh = args.iter().any(|a| a == "--fresh");
    let graphs: Vec<bool> = arg(args, "--graphs")
        .unwrap_or_else(|| "1".into())
        .split(',')
        .map(|g| g.trim() == "1")
        .collect();
    let be = CandleBackend::new(dev).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    println!("device: {}", be.device_summary());
    println!("| model | quant | graphs | pp{pp} tok/s | tg{tg} tok/s |");
    println!("|---|---|---|---|---|");
    for preset in presets.split(',') {
        let file = synth(None, preset, "q4_k_m");
        let t = Instant::now();
        let model = Model::load(file.clone(), Arc::new(be.clone())).expect("load");
        eprintln!("load: {:.2}s", t.elapsed().as_secs_f64());
        for &g in &graphs {
            be.set_graphs(g);
            let on = if be.graphs_enabled() { "on" } else { "off" };
            let (a, b, c, d) = bench_model(&model, pp, tg, reps, fresh);
            println!("| {preset} | q4_k_m | {on} | {a:.0} ± {b:.0} | {c:.1} ± {d:.1} |");
        }
        drop(model);
        if profile {
            let pb = Profiled::new(be.clone());
            let model = Model::load(file, Arc::new(pb)).expect("load");
            let _ = bench_model(&model, pp, tg.min(32), 1, false);
            model
                .backend()
                .report(&format!("{preset}: pp{pp} + tg{}", tg.min(32)));
        }
    }
}

#[derive(Default, Debug)]
struct Agreement {
    worst_rel_l2: f64,
    top1_checked: usize,
    top1_agree: usize,
    worst_top20_mean_abs: f64,
}

fn compare(want: &[f32], have: &[f32], n_vocab: usize) -> Agreement {
    let mut a = Agreement::default();
    for (w, h) in want.chunks_exact(n_vocab).zip(have.chunks_exact(n_vocab)) {
        let num: f64 = w.iter().zip(h).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let den: f64 = w.iter().map(|x| f64::from(*x).powi(2)).sum();
        a.worst_rel_l2 = a.worst_rel_l2.max((num / den.max(1e-30)).sqrt());
        let mut idx: Vec<usize> = (0..n_vocab).collect();
        idx.sort_by(|&i, &j| w[j].total_cmp(&w[i]));
        if w[idx[0]] - w[idx[1]] > 0.5 {
            a.top1_checked += 1;
            let best = wasm_chord_core::backend::host_argmax(h) as usize;
            a.top1_agree += usize::from(best == idx[0]);
        }
        let k = 20.min(n_vocab);
        let m = idx[..k]
            .iter()
            .map(|&i| f64::from((w[i] - h[i]).abs()))
            .sum::<f64>()
            / k as f64;
        a.worst_top20_mean_abs = a.worst_top20_mean_abs.max(m);
    }
    a
}

fn logits<B: Backend>(file: &Arc<GgufFile>, be: B, toks: &[u32], split: usize) -> Vec<f32> {
    let model = Model::load(file.clone(), Arc::new(be)).expect("load");
    let cfg = SessionConfig {
        n_ctx: 64,
        n_batch: 8,
    };
    let mut s = Session::new(&model, cfg).expect("session");
    let mut out = s.forward(&toks[..split], Logits::All).expect("forward");
    for t in &toks[split..] {
        out.extend(
            s.forward(std::slice::from_ref(t), Logits::All)
                .expect("forward"),
        );
    }
    out
}

fn parity(args: &[String]) {
    let dev = device(args);
    let be = CandleBackend::new(dev).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    println!("device: {}", be.device_summary());
    let mut cases: Vec<(Option<&str>, &str, &str, usize, usize)> = Vec::new();
    for arch in [
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
    ] {
        cases.push((Some(arch), "tiny", "q4_k_m", 16, 12));
        cases.push((Some(arch), "tiny", "q8_0", 16, 12));
    }
    cases.push((Some("llama"), "tiny", "f16", 16, 12));
    cases.push((Some("gemma3"), "gemma3-270m", "q4_k_m", 8, 6));
    let mut failed = 0;
    println!("| arch | preset | mix | worst rel L2 | top-1 agree | worst mean abs diff top-20 |");
    println!("|---|---|---|---|---|---|");
    for (arch, preset, mix, n, split) in cases {
        let file = synth(arch, preset, mix);
        let n_vocab = SynthSpec::new(arch, preset, mix, 5)
            .expect("spec")
            .shape
            .n_vocab;
        let toks = tokens(n, n_vocab, 3);
        let want = logits(&file, CpuBackend::new(), &toks, split);
        let have = logits(&file, be.clone(), &toks, split);
        let a = compare(&want, &have, n_vocab);
        // The reference quantizes activations as ggml-cpu does (Q8_K for
        // K-quants, Q8_0 for Q8_0); candle's CUDA kernels use Q8_1 (one
        // scale per 32 values) for every type, as llama.cpp's CUDA backend
        // does, so K-quant mixes differ by that rounding. f16 and q8_0 must
        // agree to a few 1e-3.
        let tol = if mix == "q4_k_m" { 0.1 } else { 0.03 };
        let ok = have.iter().all(|v| v.is_finite())
            && a.worst_rel_l2 < tol
            && a.top1_agree == a.top1_checked
            && a.worst_top20_mean_abs < tol;
        failed += usize::from(!ok);
        println!(
            "| {} | {preset} | {mix} | {:.2e} | {}/{} | {:.4} |{}",
            arch.unwrap_or("-"),
            a.worst_rel_l2,
            a.top1_agree,
            a.top1_checked,
            a.worst_top20_mean_abs,
            if ok { "" } else { " FAIL" }
        );
    }
    if be.graphs_enabled() {
        failed += graphs_vs_plain(&be);
    }
    if failed > 0 {
        eprintln!("{failed} case(s) disagree");
        std::process::exit(1);
    }
}

/// Logits of `steps` one-token passes after a 4-token prompt.
fn decode_logits(model: &Model<CandleBackend>, toks: &[u32]) -> Vec<Vec<f32>> {
    let cfg = SessionConfig {
        n_ctx: toks.len() + 8,
        n_batch: 8,
    };
    let mut s = Session::new(model, cfg).expect("session");
    s.forward(&toks[..4], Logits::Last).expect("prompt");
    toks[4..]
        .iter()
        .map(|t| {
            s.forward(std::slice::from_ref(t), Logits::Last)
                .expect("decode")
        })
        .collect()
}

/// Decode steps replayed from CUDA graphs against the same steps run call
/// by call: 300 steps cross a padding bucket (256 rows), and the tiny
/// gemma3's sliding-window layers wrap their ring of cache rows.
fn graphs_vs_plain(be: &CandleBackend) -> usize {
    println!();
    println!("| arch | preset | decode steps | max abs diff, graphs vs plain |");
    println!("|---|---|---|---|");
    let mut failed = 0;
    for (arch, preset) in [
        (Some("gemma3"), "tiny"),
        (Some("llama"), "tiny"),
        (Some("gemma3"), "gemma3-270m"),
    ] {
        let file = synth(arch, preset, "q4_k_m");
        let model = Model::load(file, Arc::new(be.clone())).expect("load");
        let toks = tokens(304, model.n_vocab(), 4);
        be.set_graphs(false);
        let want = decode_logits(&model, &toks);
        be.set_graphs(true);
        let have = decode_logits(&model, &toks);
        let diff = want
            .iter()
            .flatten()
            .zip(have.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let ok = diff <= 1e-4 && have.iter().flatten().all(|v| v.is_finite());
        failed += usize::from(!ok);
        println!(
            "| {} | {preset} | {} | {diff:.2e} |{}",
            arch.unwrap_or("-"),
            want.len(),
            if ok { "" } else { " FAIL" }
        );
    }
    failed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("bench") => bench(&args),
        Some("parity") => parity(&args),
        _ => {
            eprintln!("usage: candle_bench bench|parity [--device cuda:0|cpu] ...");
            std::process::exit(2)
        }
    }
}

/// A [`CandleBackend`] that times every Backend call, synchronizing the
/// device after each so that the time is the op's own.
mod profile {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Instant;
    use wasm_chord_candle::{CandleBackend, CandleBuffer, CandleWeight};
    use wasm_chord_core::backend::{
        AttentionParams, Backend, Caps, GluKind, Result, RopeParams, TensorBytes,
    };
    use wasm_chord_core::gguf::TensorInfo;

    pub struct Profiled {
        inner: CandleBackend,
        times: Mutex<BTreeMap<&'static str, (u64, f64)>>,
    }

    impl Profiled {
        pub fn new(inner: CandleBackend) -> Self {
            Self {
                inner,
                times: Mutex::new(BTreeMap::new()),
            }
        }

        fn timed<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
            let _ = self.inner.device().synchronize();
            let t = Instant::now();
            let r = f();
            let _ = self.inner.device().synchronize();
            let dt = t.elapsed().as_secs_f64();
            if let Ok(mut m) = self.times.lock() {
                let e = m.entry(op).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += dt;
            }
            r
        }

        pub fn report(&self, title: &str) {
            let Ok(m) = self.times.lock() else { return };
            let total: f64 = m.values().map(|v| v.1).sum();
            println!("\nper-op profile ({title}), synchronized after each call:");
            println!("| op | calls | total ms | us/call | share |");
            println!("|---|---|---|---|---|");
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
            for (op, (n, t)) in rows {
                println!(
                    "| {op} | {n} | {:.1} | {:.1} | {:.1}% |",
                    t * 1e3,
                    t * 1e6 / *n as f64,
                    100.0 * t / total
                );
            }
        }
    }

    impl Backend for Profiled {
        type Buffer = CandleBuffer;
        type Weight = CandleWeight;
        type Cache = CandleBuffer;

        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn caps(&self) -> Caps {
            self.inner.caps()
        }
        fn upload_weight(&self, info: &TensorInfo, data: TensorBytes) -> Result<CandleWeight> {
            self.inner.upload_weight(info, data)
        }
        fn alloc_cache(&self, len: usize) -> Result<CandleBuffer> {
            self.timed("alloc", || self.inner.alloc_cache(len))
        }
        fn download_cache(&self, c: &CandleBuffer, out: &mut [f32]) -> Result<()> {
            self.timed("download", || self.inner.download_cache(c, out))
        }
        fn alloc(&self, len: usize) -> Result<CandleBuffer> {
            self.timed("alloc", || self.inner.alloc(len))
        }
        fn upload(&self, data: &[f32]) -> Result<CandleBuffer> {
            self.timed("upload", || self.inner.upload(data))
        }
        fn download(&self, buf: &CandleBuffer, out: &mut [f32]) -> Result<()> {
            self.timed("download", || self.inner.download(buf, out))
        }
        fn len(&self, buf: &CandleBuffer) -> usize {
            self.inner.len(buf)
        }
        fn embed(
            &self,
            t: &CandleWeight,
            tok: &[u32],
            s: f32,
            out: &mut CandleBuffer,
        ) -> Result<()> {
            self.timed("embed", || self.inner.embed(t, tok, s, out))
        }
        fn matmul(
            &self,
            w: &CandleWeight,
            x: &CandleBuffer,
            n: usize,
            out: &mut CandleBuffer,
        ) -> Result<()> {
            let op = match n {
                1 => "matmul (1 token)",
                _ => "matmul (batch)",
            };
            self.timed(op, || self.inner.matmul(w, x, n, out))
        }
        fn add_bias(&self, x: &mut CandleBuffer, b: &CandleWeight, n: usize) -> Result<()> {
            self.timed("add_bias", || self.inner.add_bias(x, b, n))
        }
        fn rms_norm(
            &self,
            x: &CandleBuffer,
            w: &CandleWeight,
            eps: f32,
            n: usize,
            d: usize,
            out: &mut CandleBuffer,
        ) -> Result<()> {
            self.timed("rms_norm", || self.inner.rms_norm(x, w, eps, n, d, out))
        }
        fn rope(
            &self,
            x: &mut CandleBuffer,
            pos: &[u32],
            nh: usize,
            hd: usize,
            p: &RopeParams<'_>,
        ) -> Result<()> {
            self.timed("rope", || self.inner.rope(x, pos, nh, hd, p))
        }
        fn add(&self, a: &mut CandleBuffer, b: &CandleBuffer, n: usize) -> Result<()> {
            self.timed("add", || self.inner.add(a, b, n))
        }
        fn glu(&self, k: GluKind, g: &mut CandleBuffer, u: &CandleBuffer, n: usize) -> Result<()> {
            self.timed("glu", || self.inner.glu(k, g, u, n))
        }
        fn write_rows(
            &self,
            d: &mut CandleBuffer,
            s: &CandleBuffer,
            rows: &[usize],
            w: usize,
        ) -> Result<()> {
            self.timed("write_rows", || self.inner.write_rows(d, s, rows, w))
        }
        fn attention(
            &self,
            q: &CandleBuffer,
            k: &CandleBuffer,
            v: &CandleBuffer,
            p: &AttentionParams<'_>,
            out: &mut CandleBuffer,
        ) -> Result<()> {
            let op = match p.query_positions.len() {
                1 => "attention (1 token)",
                _ => "attention (batch)",
            };
            self.timed(op, || self.inner.attention(q, k, v, p, out))
        }
        fn softcap(&self, x: &mut CandleBuffer, cap: f32, n: usize) -> Result<()> {
            self.timed("softcap", || self.inner.softcap(x, cap, n))
        }
        fn scale(&self, x: &mut CandleBuffer, s: f32, n: usize) -> Result<()> {
            self.timed("scale", || self.inner.scale(x, s, n))
        }
        fn copy_rows(
            &self,
            x: &CandleBuffer,
            st: usize,
            n: usize,
            w: usize,
        ) -> Result<CandleBuffer> {
            self.timed("copy_rows", || self.inner.copy_rows(x, st, n, w))
        }
        fn argmax(&self, x: &CandleBuffer, n: usize) -> Result<u32> {
            self.timed("argmax", || self.inner.argmax(x, n))
        }
        fn top_k(&self, x: &CandleBuffer, n: usize, k: usize) -> Result<Vec<(u32, f32)>> {
            self.timed("top_k", || self.inner.top_k(x, n, k))
        }
    }
}

use profile::Profiled;
