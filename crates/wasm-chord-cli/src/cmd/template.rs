//! `wasmchord template`: render a conversation with a model's chat template.

use super::{model_arg, CmdResult};
use std::path::PathBuf;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message, TemplateError};

/// Render a conversation into the exact prompt text a model expects.
///
/// The template is the model's own (`tokenizer.chat_template` in the GGUF),
/// a built-in one (`--template NAME`), or a Jinja file; it is rendered like
/// Hugging Face `apply_chat_template`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct TemplateArgs {
    /// GGUF file, or a known model name (default: the default model,
    /// fetched into the cache on first use). Its template is used unless
    /// --template or --template-file is given; its BOS/EOS token texts fill
    /// `bos_token` / `eos_token`.
    #[arg(short = 'm', long)]
    pub model: Option<String>,
    /// A Jinja chat-template file to use instead of the model's.
    #[arg(long, conflicts_with = "template")]
    pub template_file: Option<PathBuf>,
    /// A built-in template by name, for models without one:
    /// chatml, gemma, llama2, llama3, mistral, phi3.
    #[arg(long)]
    pub template: Option<String>,
    /// The conversation: a JSON array of messages, `@FILE`, or `-` (stdin).
    #[arg(long)]
    pub messages: String,
    /// End the prompt with the opening of an assistant turn, ready for the
    /// model to answer.
    #[arg(long)]
    pub add_generation_prompt: bool,
    /// Tool (function) schemas as a JSON array, `@FILE`, or `-` (stdin),
    /// passed to the template as `tools`.
    #[arg(long)]
    pub tools: Option<String>,
    /// `bos_token` text with --template-file and no -m (default: empty).
    #[arg(long, requires = "template_file")]
    pub bos: Option<String>,
    /// `eos_token` text with --template-file and no -m (default: empty).
    #[arg(long, requires = "template_file")]
    pub eos: Option<String>,
}

const AFTER_HELP: &str = "\
Messages are a JSON array of objects with a `role` (system, user, assistant,
tool) and a `content`: a string, or a list of parts such as
{\"type\": \"text\", \"text\": \"...\"}. Other fields (tool_calls, name, ...) reach
the template as they are. Give JSON inline, as @FILE, or - for stdin.

Examples:
  # The model's template; prompt ready for the assistant to answer:
  wasmchord template -m model.gguf --add-generation-prompt \\
      --messages '[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi!\"}]'
  # A built-in format, for files without a template:
  wasmchord template --template chatml --add-generation-prompt \\
      --messages '[{\"role\":\"user\",\"content\":\"Hi!\"}]'
    <|im_start|>user
    Hi!<|im_end|>
    <|im_start|>assistant
  # Tools, and a template file of your own:
  wasmchord template --template-file my.jinja --bos '<s>' --messages @chat.json --tools @tools.json

Templates run sandboxed: no file access, bounded steps and output size.
A template's raise_exception(...) is reported as an error (exit code 1).";

/// Inline JSON, `@FILE`, or `-` for stdin.
fn read_json(arg: &str) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?
    } else {
        arg.to_owned()
    };
    Ok(serde_json::from_str(&text)?)
}

/// The model's template source (if any) and its BOS/EOS token texts.
fn from_model(
    model: Option<&str>,
) -> Result<(Option<String>, String, String), Box<dyn std::error::Error + Send + Sync>> {
    let path = model_arg::resolve(model)?;
    let file = GgufFile::open(&path)?;
    let md = file.metadata();
    let tok = Tokenizer::from_metadata(md)?;
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_owned();
    let source = md
        .get_str(wasm_chord_runtime::chat_template::METADATA_KEY)
        .ok()
        .map(str::to_owned);
    Ok((source, text(tok.bos()), text(tok.eos())))
}

/// Runs `wasmchord template`.
pub fn run(args: TemplateArgs) -> CmdResult {
    let messages = Message::list_from_json(&read_json(&args.messages)?)?;
    let tools = args.tools.as_deref().map(read_json).transpose()?;
    let template = if let Some(name) = &args.template {
        ChatTemplate::builtin(name)?
    } else if let Some(file) = &args.template_file {
        let source = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let (bos, eos) = if args.model.is_some() {
            let (_, bos, eos) = from_model(args.model.as_deref())?;
            (bos, eos)
        } else {
            (
                args.bos.clone().unwrap_or_default(),
                args.eos.clone().unwrap_or_default(),
            )
        };
        ChatTemplate::new(source, bos, eos)?
    } else {
        let (source, bos, eos) = from_model(args.model.as_deref())?;
        let source = source.ok_or(TemplateError::NoTemplate(
            wasm_chord_runtime::chat_template::BUILTIN_NAMES,
        ))?;
        ChatTemplate::new(source, bos, eos)?
    };
    let prompt = template.render(&messages, args.add_generation_prompt, tools.as_ref())?;
    print!("{prompt}");
    Ok(())
}
