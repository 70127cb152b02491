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
use wasm_chord_core::backend::Backend;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_gpu::GpuBackend;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
use wasm_chord_runtime::sampler::Sampler;
use wasm_chord_runtime::{Logits, Model, Session, SessionConfig, StopReason};

/// Largest context a page may ask for (the KV cache lives in wasm memory).
pub const MAX_CONTEXT: usize = 1 << 17;

/// A loaded model with its tokenizer, chat template and session, on the
/// CPU backend or on WebGPU.
pub struct Engine<B: Backend = CpuBackend> {
    model: Arc<Model<B>>,
    tok: Arc<Tokenizer>,
    template: Result<(ChatTemplate, bool), String>,
    session: RefCell<Session<'static, B>>,
    /// Bumped by every new generation; an older one sees it and ends.
    epoch: Cell<u64>,
    /// Size of the model file in bytes.
    file_bytes: u64,
}

impl<B: Backend> std::fmt::Debug for Engine<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.model.config)
            .finish()
    }
}

fn check_context(n_ctx: usize) -> WebResult<()> {
    if n_ctx == 0 || n_ctx > MAX_CONTEXT {
        return Err(WebError::invalid(
            "contextSize",
            format!("must be in 1..={MAX_CONTEXT}"),
        ));
    }
    Ok(())
}

impl Engine<CpuBackend> {
    /// Loads `bytes` (a whole GGUF file) onto the CPU backend with a session
    /// of `n_ctx` positions; `progress` gets fractions in `[0, 1]` and
    /// returns `false` to cancel.
    pub fn load(
        bytes: Vec<u8>,
        n_ctx: usize,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> WebResult<Self> {
        check_context(n_ctx)?;
        let file = Arc::new(GgufFile::from_bytes(bytes)?);
        let file_bytes = file.file_len();
        let model = Model::load_with_progress(file, Arc::new(CpuBackend::new()), progress)?;
        // The KV cache lives in wasm memory next to the file.
        reserve_kv_cache(&model.config, n_ctx)?;
        Self::new(model, n_ctx, file_bytes)
    }
}

impl<B: Backend> Engine<B> {
    /// An engine over a loaded model (of a file of `file_bytes` bytes)
    /// with a session of `n_ctx` positions.
    pub fn new(model: Model<B>, n_ctx: usize, file_bytes: u64) -> WebResult<Self> {
        check_context(n_ctx)?;
        let tok = Arc::new(Tokenizer::from_metadata(model.file().metadata())?);
        let model = Arc::new(model);
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
            file_bytes,
        })
    }

    /// The runtime model.
    pub fn model(&self) -> &Model<B> {
        &self.model
    }

    /// Size of the model file in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// The backend's name (`"cpu"`, `"webgpu"`).
    pub fn backend_name(&self) -> &'static str {
        self.model.backend().name()
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

/// What the model must run before the next draw.
enum Work {
    /// The prompt (the cached prefix is reused).
    Prompt(Vec<u32>),
    /// The last token drawn.
    Token(u32),
}

/// What [`Generation::begin`] found.
enum Begin {
    /// Nothing to run: this is the step's answer.
    Answer(Step),
    /// Logits are ready for the next draw.
    Ready(Vec<f32>),
    /// The model must run first.
    Run(Work),
}

/// One generation over an [`Engine`], advanced token by token. It follows
/// `wasm_chord_runtime::generate` step for step (same sampler, same stop
/// handling, same streamed text), but returns control after every token.
///
/// [`Generation::step`] runs a step synchronously (the CPU backend);
/// [`Generation::step_async`] on WebGPU records the forward pass, then
/// awaits the logits' read-back, which a browser cannot block on.
pub struct Generation<B: Backend = CpuBackend> {
    engine: Rc<Engine<B>>,
    epoch: u64,
    opts: GenerateOptions,
    sampler: Sampler,
    state: State,
    /// A step is waiting for its logits (asynchronous read-back).
    in_flight: bool,
    utf8: Utf8Stream,
    filter: StopFilter,
    tokens: Vec<u32>,
    text: String,
    stats: Stats,
}

impl<B: Backend> std::fmt::Debug for Generation<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("tokens", &self.tokens.len())
            .field("stop", &self.stop_reason())
            .finish()
    }
}

impl<B: Backend> Generation<B> {
    /// Starts generating after `prompt`; any older generation on the same
    /// engine ends (its next step reports [`WebError::Superseded`]).
    pub fn new(engine: Rc<Engine<B>>, prompt: Vec<u32>, opts: GenerateOptions) -> WebResult<Self> {
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
            in_flight: false,
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
            State::Done(r) if !self.in_flight => Some(r),
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
    /// A step waiting for its logits then ends with [`Step::Done`].
    pub fn cancel(&mut self) -> String {
        if matches!(self.state, State::Done(_)) && !self.in_flight {
            return String::new();
        }
        self.in_flight = false;
        self.finish(StopReason::Cancelled)
    }

    /// Does the next unit of work (the prompt, or one token) and returns
    /// the text it completed, reading the logits back synchronously (the
    /// CPU backend; natively any backend). `now_ms` reads a monotonic clock.
    pub fn step(&mut self, now_ms: &dyn Fn() -> f64) -> WebResult<Step> {
        let t0 = now_ms();
        let work = match self.begin()? {
            Begin::Answer(s) => return Ok(s),
            Begin::Ready(logits) => return self.sample(&logits, t0, now_ms),
            Begin::Run(w) => w,
        };
        let engine = Rc::clone(&self.engine);
        let mut session = engine.session.try_borrow_mut().map_err(|_| busy())?;
        let (logits, evaluated) = match &work {
            Work::Prompt(p) => {
                let p = session.prefill(p)?;
                (p.logits, p.evaluated)
            }
            Work::Token(t) => (session.forward(&[*t], Logits::Last)?, 1),
        };
        drop(session);
        self.ran(&work, logits, evaluated, t0, now_ms)
    }

    /// Checks whether the generation may go on and takes what is next.
    fn begin(&mut self) -> WebResult<Begin> {
        if self.in_flight {
            return Err(WebError::invalid(
                "generation",
                "a step is still waiting for its logits",
            ));
        }
        if matches!(self.state, State::Done(_)) {
            return Ok(Begin::Answer(Step::Done));
        }
        if self.engine.epoch.get() != self.epoch {
            self.state = State::Done(StopReason::Cancelled);
            return Err(WebError::Superseded);
        }
        Ok(
            match std::mem::replace(&mut self.state, State::Done(StopReason::Cancelled)) {
                State::Prompt(prompt) => Begin::Run(Work::Prompt(prompt)),
                State::Sample(l) => Begin::Ready(l),
                State::Forward(t) => {
                    let session = self.engine.session.try_borrow().map_err(|_| busy())?;
                    if session.n_past() + 1 > session.config().n_ctx {
                        drop(session);
                        return Ok(Begin::Answer(Step::Text(
                            self.finish(StopReason::ContextFull),
                        )));
                    }
                    Begin::Run(Work::Token(t))
                }
                State::Done(r) => {
                    self.state = State::Done(r);
                    Begin::Answer(Step::Done)
                }
            },
        )
    }

    /// After the model ran `work`: the prompt's statistics, or the draw.
    fn ran(
        &mut self,
        work: &Work,
        logits: Vec<f32>,
        evaluated: usize,
        t0: f64,
        now_ms: &dyn Fn() -> f64,
    ) -> WebResult<Step> {
        match work {
            Work::Prompt(_) => {
                self.stats.prompt_tokens = evaluated;
                self.stats.prompt_ms = now_ms() - t0;
                if self.opts.max_tokens == 0 {
                    return Ok(Step::Text(self.finish(StopReason::MaxTokens)));
                }
                // The first token is drawn in the next step, so that the
                // prompt's time is reported before any token.
                self.state = State::Sample(logits);
                Ok(Step::Text(String::new()))
            }
            Work::Token(_) => self.sample(&logits, t0, now_ms),
        }
    }

    /// Draws the next token from `logits` and streams its text.
    fn sample(&mut self, logits: &[f32], t0: f64, now_ms: &dyn Fn() -> f64) -> WebResult<Step> {
        let token = self.sampler.sample(logits)?;
        let tok = Arc::clone(&self.engine.tok);
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

/// The logits of one step, recorded on the device and not yet read back.
pub struct PendingStep {
    work: Work,
    logits: Option<<GpuBackend as Backend>::Buffer>,
    evaluated: usize,
    t0: f64,
    backend: Arc<GpuBackend>,
}

impl std::fmt::Debug for PendingStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingStep")
            .field("evaluated", &self.evaluated)
            .finish()
    }
}

impl PendingStep {
    /// Reads the logits back without blocking (WebGPU's buffer mapping,
    /// which completes on the browser's event loop).
    pub async fn read(&mut self, n_vocab: usize) -> WebResult<Vec<f32>> {
        let Some(buf) = self.logits.take() else {
            return Ok(Vec::new());
        };
        let mut host = vec![0.0; n_vocab];
        self.backend
            .download_async(&buf, &mut host)
            .await
            .map_err(wasm_chord_runtime::RuntimeError::from)?;
        Ok(host)
    }
}

/// What [`Generation::record`] did.
#[derive(Debug)]
pub enum Recorded {
    /// The step is over already (no model work was needed).
    Answer(Step),
    /// The forward pass is recorded; read its logits, then
    /// [`Generation::complete`].
    Pending(PendingStep),
}

impl Generation<GpuBackend> {
    /// The first half of a step on WebGPU: records the forward pass (no
    /// read-back). Between this and [`Generation::complete`] the
    /// generation may be cancelled or superseded.
    pub fn record(&mut self, now_ms: &dyn Fn() -> f64) -> WebResult<Recorded> {
        let t0 = now_ms();
        let work = match self.begin()? {
            Begin::Answer(s) => return Ok(Recorded::Answer(s)),
            Begin::Ready(logits) => return self.sample(&logits, t0, now_ms).map(Recorded::Answer),
            Begin::Run(w) => w,
        };
        let engine = Rc::clone(&self.engine);
        let mut session = engine.session.try_borrow_mut().map_err(|_| busy())?;
        let (logits, evaluated) = match &work {
            Work::Prompt(p) => session.prefill_device(p)?,
            Work::Token(t) => (session.forward_device(&[*t])?, 1),
        };
        self.in_flight = true;
        Ok(Recorded::Pending(PendingStep {
            work,
            logits: Some(logits),
            evaluated,
            t0,
            backend: Arc::clone(engine.model.backend()),
        }))
    }

    /// The second half of a step: the draw from the logits read back.
    /// [`Step::Done`] when the generation was cancelled in between.
    pub fn complete(
        &mut self,
        pending: PendingStep,
        logits: Vec<f32>,
        now_ms: &dyn Fn() -> f64,
    ) -> WebResult<Step> {
        if !self.in_flight {
            return Ok(Step::Done);
        }
        self.in_flight = false;
        self.ran(&pending.work, logits, pending.evaluated, pending.t0, now_ms)
    }

    /// A whole step on WebGPU, awaiting the read-back.
    pub async fn step_async(this: &RefCell<Self>, now_ms: &dyn Fn() -> f64) -> WebResult<Step> {
        let mut pending = match this.borrow_mut().record(now_ms)? {
            Recorded::Answer(s) => return Ok(s),
            Recorded::Pending(p) => p,
        };
        let n_vocab = this.borrow().engine.model.n_vocab();
        let logits = pending.read(n_vocab).await;
        let mut g = this.borrow_mut();
        match logits {
            Ok(l) => g.complete(pending, l, now_ms),
            Err(e) => {
                g.in_flight = false;
                g.state = State::Done(StopReason::Cancelled);
                Err(e)
            }
        }
    }
}

fn busy() -> WebError {
    WebError::invalid("generation", "the session is in use by another call")
}
