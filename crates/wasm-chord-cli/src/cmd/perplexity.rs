//! `wasmchord perplexity`: perplexity of a text, comparable with llama.cpp.

use super::{model_arg, CmdResult};
use std::io::Write;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_runtime::perplexity;

/// Perplexity of a text file, computed exactly as llama.cpp's
/// `llama-perplexity` does so the numbers compare: the text is tokenized
/// (BOS first), cut into chunks of --ctx tokens, each chunk evaluated from an
/// empty cache with BOS as its first token, and the second half of each chunk
/// scored. Prints the running estimate per chunk (`[k]value`) and the final
/// estimate with its standard error.
///
/// Example:
///   wasmchord perplexity -f wiki.test.raw --ctx 512
#[derive(Debug, clap::Args)]
pub struct PerplexityArgs {
    /// GGUF file, or a known model name (default: the default model).
    #[arg(short = 'm', long)]
    model: Option<String>,
    #[command(flatten)]
    backend: model_arg::BackendArgs,
    /// The text file to score.
    #[arg(short = 'f', long)]
    file: std::path::PathBuf,
    /// Tokens per chunk (llama-perplexity's -c).
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Score at most this many chunks (llama-perplexity's --chunks).
    #[arg(long)]
    chunks: Option<usize>,
}

/// Runs the subcommand.
pub fn run(args: PerplexityArgs) -> CmdResult {
    let path = model_arg::resolve(args.model.as_deref())?;
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let file = Arc::new(GgufFile::open(&path)?);
    let tok = Tokenizer::from_metadata(file.metadata())?;
    let tokens = tok.encode(&text, true, false);
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let model = model_arg::load_model(file, &path.to_string_lossy(), &args.backend)?;
    eprintln!(
        "{} tokens, {} chunks of {}",
        tokens.len(),
        tokens.len() / args.ctx.max(1),
        args.ctx
    );
    let started = std::time::Instant::now();
    let r = perplexity(
        &model,
        &tokens,
        args.ctx,
        bos,
        args.chunks,
        &mut |k, est| {
            print!("[{k}]{est:.4},");
            let _ = std::io::stdout().flush();
            true
        },
    )?;
    println!();
    println!(
        "Final estimate: PPL = {:.4} +/- {:.5} ({} tokens scored, {:.1} s)",
        r.ppl,
        r.ppl_stderr,
        r.count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
