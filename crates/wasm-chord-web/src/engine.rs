//! The model and its one session, independent of JavaScript: loading from
//! bytes, tokenizing, chat prompts, and generation one step at a time (so
//! that the JavaScript side can yield to the event loop, stream text and
//! honour an `AbortSignal` between tokens).

use crate::error::{WebError, WebResult};
use crate::options::GenerateOptions;
use crate::text::{StopFilter, Utf8Stream};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
use wasm_chord_runtime::sampler::Sampler;
use wasm_chord_runtime::{Logits, Model, Session, SessionConfig, StopReason};

/// Largest context a page may ask for (the KV cache lives in wasm memory).
pub const MAX_CONTEXT: usize = 1 << 17;

/// A loaded model with its tokenizer, chat template and session.
pub struct Engine {
    model: Arc<Model<CpuBackend>>,
    tok: Arc<Tokenizer>,
    template: Result<(ChatTemplate, bool), String>,
    session: RefCell<Session<'static, CpuBackend>>,
    /// Bumped by every new generation; an older one sees it and ends.
    epoch: Cell<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.model.config)
            .finish()
    }
}

impl Engine {
    /// Loads `bytes` (a whole GGUF file) onto the CPU backend with a session
    /// of `n_ctx` positions; `progress` gets fractions in `[0, 1]` and
    /// returns `false` to cancel.
    pub fn load(
        bytes: Vec<u8>,
        n_ctx: usize,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> WebResult<Self> {
        if n_ctx == 0 || n_ctx > MAX_CONTEXT {
            return Err(WebError::invalid(
                "contextSize",
                format!("must be in 1..={MAX_CONTEXT}"),
            ));
        }
        let file = Arc::new(GgufFile::from_bytes(bytes)?);
        let tok = Arc::new(Tokenizer::from_metadata(file.metadata())?);
        let model = Arc::new(Model::load_with_progress(
            file,
            Arc::new(CpuBackend::new()),
            progress,
        )?);
        let text_of = |id: Option<u32>| {
            id.and_then(|i| tok.token_text(i))
                .unwrap_or_default()
                .to_owned()
        };
        let template = ChatTemplate::for_model(
            model.file().metadata(),
            text_of(tok.bos()),
            text_of(tok.eos()),
        )
        .map_err(|e| e.to_string());
        reserve_kv_cache(&model.config, n_ctx)?;
        let session = Session::new_shared(
            Arc::clone(&model),
            SessionConfig {
                n_ctx,
                n_batch: 512,
            },
        )?;
        Ok(Self {
            model,
            tok,
            template,
            session: RefCell::new(session),
            epoch: Cell::new(0),
        })
    }

    /// The runtime model.
    pub fn model(&self) -> &Model<CpuBackend> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    /// The chat template and whether it is the architecture's built-in
    /// fallback, or why there is none.
    pub fn template(&self) -> Result<&(ChatTemplate, bool), &str> {
        self.template.as_ref().map_err(String::as_str)
    }

    /// The session's context size.
    pub fn context_size(&self) -> usize {
        self.session.borrow().config().n_ctx
    }

    /// Forgets the cached conversation and ends any running generation.
    pub fn reset(&self) {
        self.epoch.set(self.epoch.get() + 1);
        if let Ok(mut s) = self.session.try_borrow_mut() {
            s.clear();
        }
    }

    /// Tokens of `text`, as the CLI's `generate` encodes a prompt (the BOS
    /// the model asks for is added with `add_special`).
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.tok.encode(text, add_special, parse_special)
    }

    /// Text of `tokens`.
    pub fn detokenize(&self, tokens: &[u32]) -> WebResult<String> {
        Ok(self.tok.decode(tokens, false, false)?)
    }

    /// `messages` (a JSON array of `{role, content}`) rendered with the
    /// model's template.
    pub fn render_chat(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
    ) -> WebResult<String> {
        let v: serde_json::Value = serde_json::from_str(messages_json)
            .map_err(|e| WebError::invalid("messages", format!("not JSON: {e}")))?;
        let messages = Message::list_from_json(&v)?;
        let (template, _) = self.template().map_err(|reason| {
            WebError::Template(wasm_chord_runtime::chat_template::TemplateError::Raised(
                reason.to_owned(),
            ))
        })?;
        Ok(template.render(&messages, add_generation_prompt, None)?)
    }

    /// The prompt tokens of a chat turn, as the CLI's `chat` builds them: the
    /// rendered template parsed with special tokens, BOS added only when the
    /// template did not write it.
    pub fn chat_tokens(&self, messages_json: &str) -> WebResult<Vec<u32>> {
        let text = self.render_chat(messages_json, true)?;
        let mut prompt = self.tok.encode(&text, false, true);
        if let Some(bos) = self.tok.bos().filter(|_| self.tok.add_bos()) {
            if prompt.first() != Some(&bos) {
                prompt.insert(0, bos);
            }
        }
        Ok(prompt)
    }
}

/// Checks that a KV cache of `n_ctx` positions can be allocated, so that a
/// context too large for wasm memory is an error and not an out-of-memory
/// abort later. The estimate is an upper bound (f16 keys and values for every
/// layer, as if no layer had a sliding window); the probe's memory goes back
/// to the allocator for the cache to reuse.
fn reserve_kv_cache(c: &wasm_chord_runtime::ModelConfig, n_ctx: usize) -> WebResult<()> {
    let bytes = n_ctx
        .checked_mul(c.kv_width())
        .and_then(|v| v.checked_mul(c.n_layer))
        .and_then(|v| v.checked_mul(2 * 2));
    let too_large = || {
        WebError::ModelTooLarge(format!(
            "a KV cache of {n_ctx} positions does not fit into wasm memory next to the \
             model; ask for a smaller contextSize"
        ))
    };
    let bytes = bytes.ok_or_else(too_large)?;
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).map_err(|_| too_large())?;
    Ok(())
}

/// What one [`Generation::step`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Text that is now final (may be empty while a character or a
    /// possible stop text is incomplete).
    Text(String),
    /// Generation is over; see [`Generation::stop_reason`].
    Done,
}

/// Timing and counts of a generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Prompt tokens evaluated (a cached prefix is not re-run).
    pub prompt_tokens: usize,
    /// Milliseconds spent on the prompt.
    pub prompt_ms: f64,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Milliseconds spent generating.
    pub gen_ms: f64,
}

enum State {
    /// The prompt is not evaluated yet.
    Prompt(Vec<u32>),
    /// Logits are ready for the next draw.
    Sample(Vec<f32>),
    /// The last token must go through the model before the next draw.
    Forward(u32),
    /// Over.
    Done(StopReason),
}

/// One generation over an [`Engine`], advanced token by token. It follows
/// `wasm_chord_runtime::generate` step for step (same sampler, same stop
/// handling, same streamed text), but returns control after every token.
pub struct Generation {
    engine: Rc<Engine>,
    epoch: u64,
    opts: GenerateOptions,
    sampler: Sampler,
    state: State,
    utf8: Utf8Stream,
    filter: StopFilter,
    tokens: Vec<u32>,
    text: String,
    stats: Stats,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("tokens", &self.tokens.len())
            .field("stop", &self.stop_reason())
            .finish()
    }
}

impl Generation {
    /// Starts generating after `prompt`; any older generation on the same
    /// engine ends (its next step reports [`WebError::Superseded`]).
    pub fn new(engine: Rc<Engine>, prompt: Vec<u32>, opts: GenerateOptions) -> WebResult<Self> {
        if prompt.is_empty() {
            return Err(WebError::invalid("prompt", "no tokens"));
        }
        let n_vocab = engine.model.n_vocab();
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(WebError::invalid(
                "prompt",
                format!("token id {bad} is outside the vocabulary of {n_vocab}"),
            ));
        }
        let mut sampler = Sampler::new(opts.sampler.clone())?;
        for &t in &prompt {
            sampler.accept(t);
        }
        let epoch = engine.epoch.get() + 1;
        engine.epoch.set(epoch);
        let filter = StopFilter::new(opts.stop.clone());
        Ok(Self {
            engine,
            epoch,
            opts,
            sampler,
            state: State::Prompt(prompt),
            utf8: Utf8Stream::default(),
            filter,
            tokens: Vec::new(),
            text: String::new(),
            stats: Stats::default(),
        })
    }

    /// Why generation ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.state {
            State::Done(r) => Some(r),
            _ => None,
        }
    }

    /// Counts and timings so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The generated token ids.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// All text returned so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Ends the generation as cancelled; returns the text held back (an
    /// incomplete character or a possible stop text that never completed).
    pub fn cancel(&mut self) -> String {
        if matches!(self.state, State::Done(_)) {
            return String::new();
        }
        self.finish(StopReason::Cancelled)
    }

    /// Does the next unit of work (the prompt, or one token) and returns
    /// the text it completed. `now_ms` reads a monotonic clock.
    pub fn step(&mut self, now_ms: &dyn Fn() -> f64) -> WebResult<Step> {
        if matches!(self.state, State::Done(_)) {
            return Ok(Step::Done);
        }
        if self.engine.epoch.get() != self.epoch {
            self.state = State::Done(StopReason::Cancelled);
            return Err(WebError::Superseded);
        }
        let engine = Rc::clone(&self.engine);
        let mut session = engine.session.try_borrow_mut().map_err(|_| {
            WebError::invalid("generation", "the session is in use by another call")
        })?;
        let t0 = now_ms();
        let logits = match std::mem::replace(&mut self.state, State::Done(StopReason::Cancelled)) {
            State::Prompt(prompt) => {
                let p = session.prefill(&prompt)?;
                self.stats.prompt_tokens = p.evaluated;
                self.stats.prompt_ms = now_ms() - t0;
                if self.opts.max_tokens == 0 {
                    return Ok(Step::Text(self.finish(StopReason::MaxTokens)));
                }
                // The first token is drawn in the next step, so that the
                // prompt's time is reported before any token.
                self.state = State::Sample(p.logits);
                return Ok(Step::Text(String::new()));
            }
            State::Sample(l) => l,
            State::Forward(t) => {
                if session.n_past() + 1 > session.config().n_ctx {
                    drop(session);
                    return Ok(Step::Text(self.finish(StopReason::ContextFull)));
                }
                session.forward(&[t], Logits::Last)?
            }
            State::Done(r) => {
                self.state = State::Done(r);
                return Ok(Step::Done);
            }
        };
        drop(session);
        let token = self.sampler.sample(&logits)?;
        let tok = &self.engine.tok;
        if tok.is_eog(token) {
            self.stats.gen_ms += now_ms() - t0;
            return Ok(Step::Text(self.finish(StopReason::EndOfGeneration)));
        }
        self.sampler.accept(token);
        self.tokens.push(token);
        self.stats.generated_tokens = self.tokens.len();
        let piece = self.utf8.push(tok.token_to_piece(token, false)?);
        let (text, stopped) = self.filter.push(&piece);
        self.text.push_str(&text);
        self.stats.gen_ms += now_ms() - t0;
        if stopped {
            self.state = State::Done(StopReason::StopText);
            return Ok(Step::Text(text));
        }
        if self.tokens.len() >= self.opts.max_tokens {
            return Ok(Step::Text(text + &self.finish(StopReason::MaxTokens)));
        }
        self.state = State::Forward(token);
        Ok(Step::Text(text))
    }

    /// Ends with `reason`, flushing held-back text (not after a stop text).
    fn finish(&mut self, reason: StopReason) -> String {
        self.state = State::Done(reason);
        let rest = self.utf8.finish();
        let (mut out, _) = self.filter.push(&rest);
        out.push_str(&self.filter.finish());
        self.text.push_str(&out);
        out
    }
}
