//! `wasmchord synth`: write a random-weight GGUF model.

use super::CmdResult;
use std::io::{BufWriter, Write};
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_runtime::synth::{self, SynthSpec};

/// Write a GGUF model with seeded random weights and the metadata, tensor
/// names, shapes and quantization mix llama.cpp expects for the architecture
/// (same seed, same bytes). Useful for speed tests at real sizes and for
/// checking numerics against llama.cpp on the same file.
///
/// Presets: tiny (per architecture; needs --arch), gemma3-270m, llama-1b,
/// qwen2-0.5b, llama-8b.
/// Types: q4_k_m (llama-quantize's mix), or one type for every matrix:
/// f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k.
///
/// Examples:
///   wasmchord synth --arch qwen3 --preset tiny --type q8_0 -o qwen3-tiny.gguf
///   wasmchord synth --preset llama-1b --type q4_k_m --vocab llama3-vocab.gguf -o l1b.gguf
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Architecture: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3
    /// (optional for the presets of real models).
    #[arg(long)]
    arch: Option<String>,
    /// Shape preset.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Quantization mix.
    #[arg(long = "type", default_value = "q8_0")]
    mix: String,
    /// Copy the tokenizer (every `tokenizer.*` key) from this GGUF; the
    /// vocabulary size then comes from it.
    #[arg(long)]
    vocab: Option<std::path::PathBuf>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file.
    #[arg(short = 'o', long)]
    output: std::path::PathBuf,
}

/// Runs the subcommand.
pub fn run(args: SynthArgs) -> CmdResult {
    let mut spec = SynthSpec::new(args.arch.as_deref(), &args.preset, &args.mix, args.seed)?;
    if let Some(v) = &args.vocab {
        let file = GgufFile::open(v)?;
        spec = spec.with_vocab(file.metadata())?;
    }
    let f = std::fs::File::create(&args.output)?;
    let mut out = BufWriter::new(f);
    synth::write(&spec, &mut out)?;
    out.flush()?;
    eprintln!(
        "wrote {} ({} {} {}, vocab {}, seed {})",
        args.output.display(),
        spec.shape.arch.name(),
        args.preset,
        spec.mix.name(),
        spec.shape.n_vocab,
        spec.seed
    );
    Ok(())
}
