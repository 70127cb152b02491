//! Prompt and generation speed of the WebGPU backend, like llama-bench's
//! pp512 / tg128, on random-weight models synthesized in memory (same
//! shapes and types as the real ones, so the same speed).
//!
//! ```text
//! cargo run --release -p wasm-chord-gpu --example gpu_bench -- \
//!     [--presets gemma3-270m,llama-1b,gemma3:tiny] [--mix q4_k_m] [--pp 512] [--tg 128] [--reps 3] [--profile]
//! ```
//! With `--profile` (and an adapter with timestamp queries) a second run
//! prints the GPU time of every kernel. `--pass-per-dispatch` records each
//! dispatch in its own compute pass (default: one pass per submission);
//! `--both-modes` times both. `--submit-every 0,64` times each number of
//! dispatches per submission (0: submit only at read-backs). `--int-dot 1,0`
//! times one-token products with 8-bit activations and integer dot products
//! (1, the default where WGSL has them) and with f32 activations (0).
//! `--f16 0,1` times prompts with the f32 tiled kernel (0, the default) and
//! with f16 arithmetic (1, where the adapter has shader-f16). `--fresh`
//! times tg as `wasmchord bench` does: from an empty cache, in a session
//! of its own with batches of one token (default: after the prompt, in its
//! session).
//! `--check N` (default 32, 0 to skip)
//! first runs an N-token prompt on this backend and on the CPU backend and
//! prints how their logits agree at every position.

use std::sync::Arc;
use std::time::Instant;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_gpu::GpuBackend;
use wasm_chord_runtime::synth::{generate, SynthSpec};
use wasm_chord_runtime::{Logits, Model, Session, SessionConfig};

/// One timed setting: a pass per dispatch, dispatches per submission,
/// integer dot products, f16 arithmetic (None: the backend's default).
type Mode = (bool, Option<u64>, Option<bool>, Option<bool>);

struct Args {
    presets: Vec<String>,
    mix: String,
    pp: usize,
    tg: usize,
    reps: usize,
    profile: bool,
    check: usize,
    pass_per_dispatch: bool,
    both_modes: bool,
    /// Dispatches per submission to time (empty: the backend's default).
    submit_every: Vec<u64>,
    int_dot: Vec<bool>,
    f16: Vec<bool>,
    fresh: bool,
}

fn args() -> Args {
    let mut a = Args {
        presets: vec!["gemma3-270m".into(), "llama-1b".into()],
        mix: "q4_k_m".into(),
        pp: 512,
        tg: 128,
        reps: 3,
        profile: false,
        check: 32,
        pass_per_dispatch: false,
        both_modes: false,
        submit_every: Vec::new(),
        int_dot: Vec::new(),
        f16: Vec::new(),
        fresh: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match k.as_str() {
            "--presets" => a.presets = val().split(',').map(String::from).collect(),
            "--mix" => a.mix = val(),
            "--pp" => a.pp = val().parse().unwrap_or(512),
            "--tg" => a.tg = val().parse().unwrap_or(128),
            "--reps" => a.reps = val().parse().unwrap_or(3),
            "--profile" => a.profile = true,
            "--pass-per-dispatch" => a.pass_per_dispatch = true,
            "--both-modes" => a.both_modes = true,
            "--submit-every" => {
                a.submit_every = val().split(',').filter_map(|v| v.parse().ok()).collect()
            }
            "--int-dot" => a.int_dot = val().split(',').map(|v| v != "0").collect(),
            "--f16" => a.f16 = val().split(',').map(|v| v != "0").collect(),
            "--fresh" => a.fresh = true,
            "--check" => a.check = val().parse().unwrap_or(32),
            other => eprintln!("ignoring {other}"),
        }
    }
    a
}

fn tokens(n: usize, n_vocab: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(7919).wrapping_add(seed) % n_vocab as u32).max(1))
        .collect()
}

/// Seconds for a pp-token prompt and for tg single-token steps after it
/// (`fresh`: from an empty cache in a session of their own).
fn run_once(model: &Model<GpuBackend>, pp: usize, tg: usize, seed: u32, fresh: bool) -> (f64, f64) {
    let v = model.n_vocab();
    let mut s = Session::new(
        model,
        SessionConfig {
            n_ctx: pp + tg + 8,
            n_batch: pp.max(1),
        },
    )
    .expect("session");
    let prompt = tokens(pp, v, seed);
    let t = Instant::now();
    let logits = s.forward(&prompt, Logits::Last).expect("prompt");
    let t_pp = t.elapsed().as_secs_f64();
    let mut next = wasm_chord_core::backend::host_argmax(&logits);
    if fresh {
        s = Session::new(
            model,
            SessionConfig {
                n_ctx: tg.max(1),
                n_batch: 1,
            },
        )
        .expect("session");
    }
    let t = Instant::now();
    for _ in 0..tg {
        let logits = s.forward(&[next], Logits::Last).expect("token");
        next = wasm_chord_core::backend::host_argmax(&logits);
    }
    (t_pp, t.elapsed().as_secs_f64())
}

/// Logits of the GPU and CPU backends on the same prompt: worst relative L2
/// over positions, top-1 agreement where the CPU's margin exceeds 0.5, and
/// the worst mean |difference| over the CPU's top 20.
fn check(file: &Arc<GgufFile>, gpu: &Model<GpuBackend>, n: usize) {
    let cpu =
        Model::load(file.clone(), Arc::new(wasm_chord_cpu::CpuBackend::new())).expect("cpu load");
    let v = gpu.n_vocab();
    let prompt = tokens(n, v, 5);
    let cfg = SessionConfig {
        n_ctx: n,
        n_batch: n,
    };
    let a = Session::new(gpu, cfg)
        .expect("session")
        .forward(&prompt, Logits::All)
        .expect("gpu");
    let b = Session::new(&cpu, cfg)
        .expect("session")
        .forward(&prompt, Logits::All)
        .expect("cpu");
    let (mut worst, mut top1, mut checked, mut worst_top20) = (0.0f64, 0, 0, 0.0f64);
    for (ra, rb) in a.chunks_exact(v).zip(b.chunks_exact(v)) {
        let num: f64 = ra
            .iter()
            .zip(rb)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        let den: f64 = rb.iter().map(|y| f64::from(*y).powi(2)).sum();
        worst = worst.max((num / den.max(1e-30)).sqrt());
        let mut idx: Vec<usize> = (0..v).collect();
        idx.sort_by(|&i, &j| rb[j].total_cmp(&rb[i]));
        if rb[idx[0]] - rb[idx[1]] > 0.5 {
            checked += 1;
            top1 += usize::from(wasm_chord_core::backend::host_argmax(ra) as usize == idx[0]);
        }
        let m: f64 = idx[..20]
            .iter()
            .map(|&i| f64::from((ra[i] - rb[i]).abs()))
            .sum::<f64>()
            / 20.0;
        worst_top20 = worst_top20.max(m);
    }
    println!(
        "  vs CPU on {n} tokens: worst rel L2 {worst:.2e}, top-1 {top1}/{checked} (margin > 0.5), worst top-20 mean |diff| {worst_top20:.3}"
    );
}

fn print_profile(backend: &GpuBackend, what: &str) {
    let prof = backend.kernel_profile();
    let total: f64 = prof.iter().map(|p| p.1).sum();
    println!("  kernels during {what} (GPU time, {total:.1} ms total):");
    for (name, ms, n) in prof {
        println!(
            "    {name:12} {ms:9.2} ms  {n:7} dispatches  {:5.1}%",
            100.0 * ms / total.max(1e-9)
        );
    }
    backend.reset_profile();
}

fn main() {
    let a = args();
    let backend = Arc::new(GpuBackend::new().expect("a WebGPU adapter"));
    println!("adapter: {}", backend.adapter_summary());
    backend.set_pass_per_dispatch(a.pass_per_dispatch);
    if a.pass_per_dispatch {
        println!("one compute pass per dispatch");
    }
    for preset in &a.presets {
        // `arch:preset` picks an architecture (e.g. `gemma3:tiny`).
        let (arch, name) = match preset.split_once(':') {
            Some((arch, name)) => (Some(arch), name),
            None => (None, preset.as_str()),
        };
        let spec = SynthSpec::new(arch, name, &a.mix, 1).expect("preset");
        let t = Instant::now();
        let file = Arc::new(GgufFile::from_bytes(generate(&spec).expect("synth")).expect("gguf"));
        let t_gen = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let model = Model::load(file.clone(), backend.clone()).expect("load");
        let t_load = t.elapsed().as_secs_f64();
        println!(
            "{preset} {}: synth {t_gen:.1} s, upload {t_load:.2} s",
            a.mix
        );
        if a.check > 0 {
            check(&file, &model, a.check);
        }
        let modes: &[bool] = if a.both_modes {
            &[false, true]
        } else {
            &[a.pass_per_dispatch]
        };
        let every: Vec<Option<u64>> = if a.submit_every.is_empty() {
            vec![None]
        } else {
            a.submit_every.iter().map(|&n| Some(n)).collect()
        };
        let ints: Vec<Option<bool>> = if a.int_dot.is_empty() {
            vec![None]
        } else {
            a.int_dot.iter().map(|&b| Some(b)).collect()
        };
        let f16s: Vec<Option<bool>> = if a.f16.is_empty() {
            vec![None]
        } else {
            a.f16.iter().map(|&b| Some(b)).collect()
        };
        let modes: Vec<Mode> = modes
            .iter()
            .flat_map(|&per| every.iter().map(move |&n| (per, n)))
            .flat_map(|(per, n)| ints.iter().map(move |&i| (per, n, i)))
            .flat_map(|(per, n, i)| f16s.iter().map(move |&h| (per, n, i, h)))
            .collect();
        for (per, every, int, f16) in modes {
            backend.set_pass_per_dispatch(per);
            if let Some(on) = f16 {
                backend.set_f16(on);
                println!("  f16 arithmetic in prompts: {}", backend.f16());
            }
            if let Some(on) = int {
                backend.set_int_dot(on);
                println!(
                    "  8-bit activations with integer dot products: {}",
                    backend.int_dot()
                );
            }
            if let Some(n) = every {
                backend.set_submit_every(n);
                println!("  submitting every {n} dispatches (0: at read-backs only)");
            }
            println!(
                "  {}:",
                if per {
                    "a compute pass per dispatch"
                } else {
                    "one compute pass per submission"
                }
            );
            // Warm-up with the timed shapes (so that every pipeline they
            // use, the prompt's attention included, is compiled before
            // timing), then the timed repetitions.
            run_once(&model, a.pp, 4, 99, a.fresh);
            let (c0, s0, r0, w0) = backend.counters();
            let h0 = backend.host_counters();
            let mut pp = Vec::new();
            let mut tg = Vec::new();
            for r in 0..a.reps {
                let (tp, tt) = run_once(&model, a.pp, a.tg, r as u32, a.fresh);
                pp.push(a.pp as f64 / tp);
                tg.push(a.tg as f64 / tt);
            }
            let (c1, s1, r1, w1) = backend.counters();
            let h1 = backend.host_counters();
            let stat = |v: &[f64]| {
                let m = v.iter().sum::<f64>() / v.len() as f64;
                let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
                (m, sd)
            };
            let ((pm, ps), (tm, ts)) = (stat(&pp), stat(&tg));
            println!("  pp{:<4} {pm:10.1} ± {ps:.1} tok/s", a.pp);
            println!("  tg{:<4} {tm:10.1} ± {ts:.1} tok/s", a.tg);
            let steps = (a.reps * (1 + a.tg)) as f64;
            println!(
                "  {} dispatches, {} submissions over {} runs; per forward pass: {:.2} ms recording, {:.2} ms waiting (host)",
                c1 - c0,
                s1 - s0,
                a.reps,
                (r1 - r0) as f64 / 1e6 / steps,
                (w1 - w0) as f64 / 1e6 / steps,
            );
            println!(
                "  host ns per dispatch: {:.0} recording, {:.0} finishing passes and encoders, {:.0} in queue.submit",
                (r1 - r0) as f64 / (c1 - c0).max(1) as f64,
                (h1.finish_ns - h0.finish_ns) as f64 / (c1 - c0).max(1) as f64,
                (h1.submit_ns - h0.submit_ns) as f64 / (c1 - c0).max(1) as f64,
            );
            println!(
                "  bind groups: {} made, {} reused; activation buffers: {} new, {} from the pool",
                h1.groups_made - h0.groups_made,
                h1.groups_reused - h0.groups_reused,
                h1.buffers_made - h0.buffers_made,
                h1.buffers_reused - h0.buffers_reused,
            );
        }
        backend.set_pass_per_dispatch(a.pass_per_dispatch);
        if a.profile && backend.enable_profiling() {
            backend.reset_profile();
            let v = model.n_vocab();
            let mut s = Session::new(
                &model,
                SessionConfig {
                    n_ctx: a.pp + a.tg + 8,
                    n_batch: a.pp.max(1),
                },
            )
            .expect("session");
            s.forward(&tokens(a.pp, v, 7), Logits::Last)
                .expect("prompt");
            print_profile(&backend, &format!("pp{}", a.pp));
            for i in 0..a.tg {
                s.forward(&[(i as u32 * 31 + 5) % v as u32], Logits::Last)
                    .expect("token");
            }
            print_profile(&backend, &format!("tg{}", a.tg));
            backend.disable_profiling();
        }
    }
}
