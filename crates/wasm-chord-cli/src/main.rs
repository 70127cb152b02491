//! `wasmchord`: run GGUF language models on CPU, GPU and in the browser.
//!
//! Each subcommand lives in its own module under `cmd/`.

mod cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// Run GGUF language models anywhere: CPU, GPU, WebGPU, browser.
///
/// Commands that take `-m MODEL` use the default model (Gemma 3 270M Q4_K_M)
/// when it is omitted, fetching it into the cache on first use
/// (see `wasmchord pull --help`).
#[derive(Debug, Parser)]
#[command(
    name = "wasmchord",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a GGUF file's metadata and tensor table (like gguf-dump).
    Inspect(cmd::inspect::InspectArgs),
    /// Fetch a known model into the local cache and print its path.
    Pull(cmd::pull::PullArgs),
    /// Teacher-forced top-N logits at every position, as JSON.
    Eval(cmd::eval::EvalArgs),
    /// Continue a prompt, streaming text (sampling, seeds, stop texts).
    Generate(cmd::generate::GenerateArgs),
    /// Interactive multi-turn chat with the model's chat template.
    Chat(cmd::chat::ChatArgs),
    /// Perplexity of a text file, computed as llama-perplexity does.
    Perplexity(cmd::perplexity::PerplexityArgs),
    /// Turn text into token ids with the model's tokenizer.
    Tokenize(cmd::tokenize::TokenizeArgs),
    /// Turn token ids back into text.
    Detokenize(cmd::tokenize::DetokenizeArgs),
    /// Write a random-weight GGUF model of a given architecture and shape.
    Synth(cmd::synth::SynthArgs),
    /// Render a conversation with the model's chat template.
    Template(cmd::template::TemplateArgs),
    /// Prompt and generation speed, as llama-bench measures them.
    Bench(cmd::bench::BenchArgs),
}

/// Pins glibc's mmap threshold at 1.5 MiB. By default glibc raises it
/// after every freed mmap'd block, up to 32 MiB, so the second forward pass
/// takes its multi-MiB activation buffers from the heap; the CPU backend
/// runs each pass on its thread pool's workers, whose per-thread arenas keep
/// those pages. Measured on the default model, pp512 peak RSS: 388 MB with
/// the dynamic threshold, 366 MB pinned (llama-bench: 340 MB); generation's
/// per-token buffers (the 1 MiB of logits included) stay below it, so no
/// token pays for a fresh mapping. A setting for the whole process, so the
/// application (this binary) makes it, not the library.
///
/// Setting the mmap threshold also freezes glibc's trim threshold at its
/// 128 KiB default (the dynamic rule keeps it at twice the mmap threshold):
/// freeing a token's logits at the top of the heap then gave the pages back
/// to the kernel, and the next token faulted them in again, ~0.7 ms per
/// token (measured on an H200 host: 0.98–1.10 ms between two decode steps
/// of the CUDA backend in this binary, 0.27–0.35 ms in a program without
/// the setting). The trim threshold is set by the same rule, to 3 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() {
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 3 << 19);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 3 << 20);
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pin_mmap_threshold();
    // `--version` also lists the devices compiled into this binary.
    let long_version: &'static str = Box::leak(
        format!(
            "{}\ndevices: {}",
            env!("CARGO_PKG_VERSION"),
            wasm_chord_runtime::Device::compiled().join(", ")
        )
        .into_boxed_str(),
    );
    let matches = Cli::command().long_version(long_version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Pull(a) => cmd::pull::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Tokenize(a) => cmd::tokenize::run_tokenize(a),
        Command::Detokenize(a) => cmd::tokenize::run_detokenize(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Template(a) => cmd::template::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
