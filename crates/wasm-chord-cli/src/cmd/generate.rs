//! `wasmchord generate`: stream text from a prompt.

use super::{model_arg, CmdResult};
use std::io::Write;
use wasm_chord_runtime::sampler::SamplerConfig;
use wasm_chord_runtime::{generate, GenerateParams, Session, SessionConfig};

/// Continue a prompt with the model, streaming text to stdout; timings go to
/// stderr at the end (prompt and generation tokens/s).
///
/// Sampling follows llama.cpp's default chain (penalties → top-k → typical →
/// top-p → min-p → temperature) and is reproducible: the same --seed and
/// settings give the same text on the same backend. --temp 0 (or --greedy)
/// always takes the most likely token.
///
/// Examples:
///   wasmchord generate -p "The three laws of robotics are" -n 64
///   wasmchord generate -p "Once upon a time" --temp 0.7 --top-p 0.9 --seed 42
///   wasmchord generate -m model.gguf -p "Q: 2+2?\nA:" --greedy --stop "\n"
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// GGUF file, or a known model name (default: the default model,
    /// fetched into the cache on first use).
    #[arg(short = 'm', long)]
    model: Option<String>,
    /// The prompt (the model's BOS token is added as it asks).
    #[arg(short = 'p', long)]
    prompt: String,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    n_predict: usize,
    /// Text that ends generation (not printed). Repeatable.
    #[arg(long)]
    stop: Vec<String>,
    /// Always pick the most likely token (same as --temp 0).
    #[arg(long)]
    greedy: bool,
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Keep the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than P × the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Locally typical sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    typical: f32,
    /// Penalize tokens seen in the last --repeat-last-n (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Window of recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Subtract this from the logit of any token already in the window.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Subtract this × count from the logit of tokens in the window.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Random seed (same seed + settings → same text).
    #[arg(long, default_value_t = 0xFFFF_FFFF)]
    seed: u64,
    /// Context size in tokens.
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    #[command(flatten)]
    backend: model_arg::BackendArgs,
}

/// Runs the subcommand.
pub fn run(args: GenerateArgs) -> CmdResult {
    let model_arg::Loaded {
        tokenizer: tok,
        model,
    } = model_arg::load(args.model.as_deref(), &args.backend)?;
    let prompt = tok.encode(&args.prompt, true, false);
    let mut session = Session::new(
        &model,
        SessionConfig {
            n_ctx: args.ctx,
            n_batch: 512,
        },
    )?;
    let sampler = SamplerConfig {
        temperature: if args.greedy { 0.0 } else { args.temp },
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        typical_p: args.typical,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: args.repeat_last_n,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
        logit_bias: Vec::new(),
        seed: args.seed,
    };
    let params = GenerateParams {
        max_tokens: args.n_predict,
        stop: args.stop.clone(),
        sampler,
    };
    let mut stdout = std::io::stdout().lock();
    let g = generate(&mut session, &tok, &prompt, &params, None, &mut |text| {
        stdout.write_all(text.as_bytes()).is_ok() && stdout.flush().is_ok()
    })?;
    drop(stdout);
    println!();
    eprintln!(
        "\nprompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s | stop: {:?} | backend: {}",
        g.prompt_eval_tokens,
        g.prompt_tps(),
        g.tokens.len(),
        g.gen_tps(),
        g.stop,
        model_arg::describe(model.backend())
    );
    Ok(())
}
