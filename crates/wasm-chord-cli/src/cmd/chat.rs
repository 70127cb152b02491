//! `wasmchord chat`: an interactive multi-turn chat using the model's template.

use super::{model_arg, CmdResult};
use std::io::{BufRead, IsTerminal, Write};
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
use wasm_chord_runtime::sampler::SamplerConfig;
use wasm_chord_runtime::{generate, GenerateParams, Session, SessionConfig, StopReason};

/// Chat with the model, one line per turn, using its chat template (or the
/// built-in template for its architecture when the file has none).
///
/// Each reply streams as it is generated. The conversation stays in the KV
/// cache: a new turn only evaluates the new tokens. Type /reset to start
/// over, /quit (or end of input) to leave. Reads plain lines from stdin, so
/// it also works in scripts:
///
///   printf 'Hi!\nWhat did I just say?\n' | wasmchord chat --greedy
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// GGUF file, or a known model name (default: the default model).
    #[arg(short = 'm', long)]
    model: Option<String>,
    /// A system message for the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Use this built-in template instead of the model's (chatml, gemma,
    /// llama2, llama3, mistral, phi3).
    #[arg(long)]
    template: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long, default_value_t = 512)]
    n_predict: usize,
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Always pick the most likely token.
    #[arg(long)]
    greedy: bool,
    /// Random seed.
    #[arg(long, default_value_t = 0xFFFF_FFFF)]
    seed: u64,
    /// Context size in tokens.
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    #[command(flatten)]
    backend: model_arg::BackendArgs,
}

/// Runs the subcommand.
pub fn run(args: ChatArgs) -> CmdResult {
    let model_arg::Loaded {
        tokenizer: tok,
        model,
    } = model_arg::load(args.model.as_deref(), &args.backend)?;
    let file = model.file().clone();
    let text_of = |id: Option<u32>| {
        id.and_then(|i| tok.token_text(i))
            .unwrap_or_default()
            .to_owned()
    };
    let template = match &args.template {
        Some(name) => ChatTemplate::builtin(name)?,
        None => {
            let (t, fallback) =
                ChatTemplate::for_model(file.metadata(), text_of(tok.bos()), text_of(tok.eos()))?;
            if fallback {
                eprintln!(
                    "(the model has no chat template; using the built-in one for its architecture)"
                );
            }
            t
        }
    };
    let mut session = Session::new(
        &model,
        SessionConfig {
            n_ctx: args.ctx,
            n_batch: 512,
        },
    )?;
    let params = GenerateParams {
        max_tokens: args.n_predict,
        stop: Vec::new(),
        sampler: SamplerConfig {
            temperature: if args.greedy { 0.0 } else { args.temp },
            seed: args.seed,
            ..SamplerConfig::default()
        },
    };
    let mut messages: Vec<Message> = args.system.iter().map(Message::system).collect();
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next().transpose()? else {
            break;
        };
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                messages.retain(|m| m.role == "system");
                session.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(line));
        let prompt_text = template.render(&messages, true, None)?;
        // The template writes the BOS text itself; add BOS only if it did not.
        let mut prompt = tok.encode(&prompt_text, false, true);
        if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
            if prompt.first() != Some(&bos) {
                prompt.insert(0, bos);
            }
        }
        let mut out = std::io::stdout().lock();
        let g = generate(&mut session, &tok, &prompt, &params, None, &mut |t| {
            out.write_all(t.as_bytes()).is_ok() && out.flush().is_ok()
        });
        drop(out);
        let g = match g {
            Ok(g) => g,
            Err(wasm_chord_runtime::RuntimeError::ContextFull { .. }) => {
                eprintln!("\n(context is full: /reset to start over)");
                messages.pop();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        println!();
        if g.stop == StopReason::ContextFull {
            eprintln!("(context is full: /reset to start over)");
        }
        if interactive {
            eprintln!(
                "[{} tokens, {:.1} tok/s; prompt {} tokens, {:.1} tok/s]",
                g.tokens.len(),
                g.gen_tps(),
                g.prompt_eval_tokens,
                g.prompt_tps()
            );
        }
        messages.push(Message::assistant(g.text.trim().to_owned()));
    }
    Ok(())
}
