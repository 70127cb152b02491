//! `wasmchord bench`: prompt-processing and generation speed, measured the way
//! `llama-bench` measures them.
//!
//! - `ppP`: one forward pass of `P` tokens from an empty cache (only the last
//!   token's logits are computed, as llama-bench's batch asks for);
//! - `tgN`: `N` single-token forward passes from an empty cache.
//!
//! Each test runs once untimed (warm-up), then `-r` times; the table reports
//! tokens per second as mean ± standard deviation over the repetitions.
//! Token ids are arbitrary valid ids from a fixed pseudo-random sequence.

use super::{model_arg, CmdResult};
use clap::Args;
use std::time::Instant;
use wasm_chord_core::backend::Backend;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::AnyBackend;
use wasm_chord_runtime::{Logits, Model, Session, SessionConfig};

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Arguments of `wasmchord bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: a GGUF path or a known model name (default: the default model).
    #[arg(short = 'm', long)]
    model: Option<String>,
    /// Prompt tokens of the prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens of the generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Timed repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    reps: usize,
    /// Print one JSON array instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: model_arg::BackendArgs,
}

/// One test's result.
struct TestResult {
    name: String,
    n_tokens: usize,
    /// Tokens per second of each repetition.
    rates: Vec<f64>,
}

impl TestResult {
    fn mean(&self) -> f64 {
        self.rates.iter().sum::<f64>() / self.rates.len().max(1) as f64
    }

    fn sd(&self) -> f64 {
        let n = self.rates.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        let var = self.rates.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / (n - 1) as f64;
        var.sqrt()
    }
}

/// Runs the subcommand.
pub fn run(args: BenchArgs) -> CmdResult {
    let reps = args.reps.max(1);
    let path = model_arg::resolve(args.model.as_deref())?;
    let loaded = model_arg::load(Some(&path.to_string_lossy()), &args.backend)?;
    let model = &loaded.model;
    let n_vocab = model.config.n_vocab;
    let mut results = Vec::new();
    if args.n_prompt > 0 {
        let tokens = arbitrary_tokens(args.n_prompt, n_vocab);
        let mut rates = Vec::with_capacity(reps);
        for rep in 0..=reps {
            let secs = time_prompt(model, &tokens)?;
            if rep > 0 {
                rates.push(args.n_prompt as f64 / secs);
            }
        }
        results.push(TestResult {
            name: format!("pp{}", args.n_prompt),
            n_tokens: args.n_prompt,
            rates,
        });
    }
    if args.n_gen > 0 {
        let tokens = arbitrary_tokens(args.n_gen, n_vocab);
        let mut rates = Vec::with_capacity(reps);
        for rep in 0..=reps {
            let secs = time_generation(model, &tokens)?;
            if rep > 0 {
                rates.push(args.n_gen as f64 / secs);
            }
        }
        results.push(TestResult {
            name: format!("tg{}", args.n_gen),
            n_tokens: args.n_gen,
            rates,
        });
    }
    let model_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let threads = CpuBackend::threads();
    // llama-bench's names: "CPU", "CUDA", "Vulkan"...
    let backend_name = match model.backend().name() {
        "cpu" => "CPU".to_string(),
        "cuda" => "CUDA".to_string(),
        "webgpu" => "WebGPU".to_string(),
        other => other.to_string(),
    };
    if args.json {
        let arr: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "model_filename": path.to_string_lossy(),
                    "model_size": size,
                    "backends": backend_name,
                    "device": model.backend().summary(),
                    "n_threads": threads,
                    "n_prompt": if r.name.starts_with("pp") { r.n_tokens } else { 0 },
                    "n_gen": if r.name.starts_with("tg") { r.n_tokens } else { 0 },
                    "test": r.name,
                    "avg_ts": r.mean(),
                    "stddev_ts": r.sd(),
                    "samples_ts": r.rates,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
    } else {
        println!("| model | size | backend | threads | test | t/s |");
        println!("| --- | ---: | --- | ---: | ---: | ---: |");
        for r in &results {
            println!(
                "| {model_name} | {:.2} MiB | {backend_name} | {threads} | {} | {:.2} ± {:.2} |",
                size as f64 / (1024.0 * 1024.0),
                r.name,
                r.mean(),
                r.sd()
            );
        }
    }
    Ok(())
}

/// `n` valid token ids from a fixed xorshift sequence.
fn arbitrary_tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n_vocab.max(1) as u64) as u32
        })
        .collect()
}

fn session(
    model: &Model<AnyBackend>,
    n_ctx: usize,
    n_batch: usize,
) -> Fallible<Session<'_, AnyBackend>> {
    Ok(Session::new(
        model,
        SessionConfig {
            n_ctx: n_ctx.max(1),
            n_batch: n_batch.max(1),
        },
    )?)
}

/// Seconds for one forward pass of `tokens` from an empty cache.
fn time_prompt(model: &Model<AnyBackend>, tokens: &[u32]) -> Fallible<f64> {
    let mut s = session(model, tokens.len(), tokens.len())?;
    let t0 = Instant::now();
    s.forward(tokens, Logits::Last)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Seconds for `tokens.len()` single-token forward passes from an empty cache.
fn time_generation(model: &Model<AnyBackend>, tokens: &[u32]) -> Fallible<f64> {
    let mut s = session(model, tokens.len(), 1)?;
    let t0 = Instant::now();
    for &t in tokens {
        s.forward(&[t], Logits::Last)?;
    }
    Ok(t0.elapsed().as_secs_f64())
}
