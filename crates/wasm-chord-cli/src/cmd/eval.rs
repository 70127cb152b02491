//! `wasmchord eval`: teacher-forced logits at every position, as JSON.

use super::{model_arg, CmdResult};
use serde_json::json;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_runtime::{Logits, Session, SessionConfig};

/// Run the model over a text or a list of token ids (teacher-forced, one
/// batched pass) and print, for every position, the top-N next-token
/// candidates with their raw logits, as JSON:
///
///   {"tokens": [2, 9259, ...],
///    "top": [[[id, logit], ...], ...]}   one list per position
///
/// Examples:
///   wasmchord eval -p "The capital of France is" --top 5
///   wasmchord eval --tokens 2,9259,1902 --top 20
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// GGUF file, or a known model name (default: the default model).
    #[arg(short = 'm', long)]
    model: Option<String>,
    #[command(flatten)]
    backend: model_arg::BackendArgs,
    /// Text to evaluate (tokenized with the model's tokenizer).
    #[arg(
        short = 'p',
        long,
        required_unless_present = "tokens",
        conflicts_with = "tokens"
    )]
    prompt: Option<String>,
    /// Comma-separated token ids to evaluate instead of a text.
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// How many candidates to print per position.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// With -p: do not add the BOS token the model asks for.
    #[arg(long)]
    no_bos: bool,
    /// Tokens per forward pass (longer inputs are split).
    #[arg(long, default_value_t = 512)]
    batch: usize,
}

/// Runs the subcommand.
pub fn run(args: EvalArgs) -> CmdResult {
    let path = model_arg::resolve(args.model.as_deref())?;
    let file = Arc::new(GgufFile::open(&path)?);
    let tokens = match (&args.tokens, &args.prompt) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => {
            let tok = Tokenizer::from_metadata(file.metadata())?;
            tok.encode(p, !args.no_bos, false)
        }
        (None, None) => return Err("give -p TEXT or --tokens IDS".into()),
    };
    let model = model_arg::load_model(file, &path.to_string_lossy(), &args.backend)?;
    let mut session = Session::new(
        &model,
        SessionConfig {
            n_ctx: tokens.len().max(1),
            n_batch: args.batch.max(1),
        },
    )?;
    let logits = session.forward(&tokens, Logits::All)?;
    let n_vocab = model.n_vocab();
    let top: Vec<Vec<(u32, f32)>> = logits
        .chunks_exact(n_vocab)
        .map(|row| top_n(row, args.top))
        .collect();
    println!("{}", json!({ "tokens": tokens, "top": top }));
    Ok(())
}

fn top_n(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let key = |i: &u32| row.get(*i as usize).copied().unwrap_or(f32::NEG_INFINITY);
    idx.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
    idx.truncate(n);
    idx.into_iter().map(|i| (i, key(&i))).collect()
}
