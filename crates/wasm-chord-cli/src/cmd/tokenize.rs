//! `wasmchord tokenize` and `wasmchord detokenize`: the model's tokenizer,
//! as llama.cpp's `llama-tokenize` runs it.

use super::{model_arg, CmdResult};
use std::io::{BufRead, BufWriter, Write};
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;

/// Turn text into token ids with the model's own tokenizer (read from the
/// GGUF metadata, exactly as llama.cpp tokenizes).
///
/// Examples:
///   wasmchord tokenize -p "Hello world"            → 2 9259 1902
///   wasmchord tokenize --no-bos -p "Hello world"   → 9259 1902
///   printf '"a"\n"b c"\n' | wasmchord tokenize --jsonl
#[derive(Debug, clap::Args)]
pub struct TokenizeArgs {
    /// GGUF file, or a known model name (default: the default model,
    /// fetched into the cache on first use).
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// The text to tokenize (required unless --jsonl).
    #[arg(short = 'p', long, required_unless_present = "jsonl")]
    pub prompt: Option<String>,
    /// Do not add the BOS/EOS tokens the model asks for
    /// (`tokenizer.ggml.add_bos_token` / `add_eos_token`).
    #[arg(long)]
    pub no_bos: bool,
    /// Turn control-token texts in the input (e.g. `<start_of_turn>`) into
    /// those tokens; without it they are tokenized as plain text.
    #[arg(long)]
    pub parse_special: bool,
    /// Batch mode for scripts: read one JSON string per line from stdin,
    /// write one JSON array of ids per line. The model loads once.
    #[arg(long, conflicts_with = "prompt")]
    pub jsonl: bool,
}

/// Turn token ids back into text.
///
/// Example: wasmchord detokenize --ids 9259,1902   → Hello world
#[derive(Debug, clap::Args)]
pub struct DetokenizeArgs {
    /// GGUF file, or a known model name (default: the default model).
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// Token ids, separated by commas (or spaces, quoted).
    #[arg(long, required = true, value_delimiter = ',', num_args = 1..)]
    pub ids: Vec<String>,
    /// Render control tokens (`<bos>`, `<end_of_turn>`) as their text
    /// instead of dropping them.
    #[arg(long)]
    pub special: bool,
}

fn load(model: Option<&str>) -> Result<Tokenizer, Box<dyn std::error::Error + Send + Sync>> {
    let path = model_arg::resolve(model)?;
    let file = GgufFile::open(&path)?;
    Ok(Tokenizer::from_metadata(file.metadata())?)
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// Runs `tokenize`.
pub fn run_tokenize(args: TokenizeArgs) -> CmdResult {
    let tok = load(args.model.as_deref())?;
    let add_special = !args.no_bos;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.jsonl {
        let stdin = std::io::stdin();
        for (n, line) in stdin.lock().lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let text: String = serde_json::from_str(&line)
                .map_err(|e| format!("stdin line {}: expected a JSON string: {e}", n + 1))?;
            let ids = tok.encode(&text, add_special, args.parse_special);
            writeln!(out, "{}", serde_json::to_string(&ids)?)?;
        }
    } else {
        let text = args.prompt.unwrap_or_default();
        let ids = tok.encode(&text, add_special, args.parse_special);
        writeln!(out, "{}", join(&ids))?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `detokenize`.
pub fn run_detokenize(args: DetokenizeArgs) -> CmdResult {
    let tok = load(args.model.as_deref())?;
    let mut ids = Vec::new();
    for part in args.ids.iter().flat_map(|s| s.split([',', ' '])) {
        if part.is_empty() {
            continue;
        }
        ids.push(
            part.parse::<u32>()
                .map_err(|e| format!("token id `{part}`: {e}"))?,
        );
    }
    let text = tok.decode(&ids, false, args.special)?;
    println!("{text}");
    Ok(())
}
