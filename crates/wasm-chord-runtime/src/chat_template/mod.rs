//! Chat templates: turning a conversation into the prompt text a model was
//! trained on, by rendering the GGUF's `tokenizer.chat_template` (a Jinja
//! template from the model's Hugging Face repository) the way Hugging Face
//! `apply_chat_template` does.
//!
//! Rendering uses [`minijinja`] configured like transformers'
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`,
//! with Python string/dict methods (`.strip()`, `.split()`, `.items()`, ...
//! from `minijinja-contrib`'s pycompat), and the helpers real templates call:
//! `raise_exception(msg)` (→ [`TemplateError::Raised`]), `strftime_now(fmt)`,
//! and a `tojson` filter that writes JSON exactly like Python's
//! `json.dumps(ensure_ascii=False)`. Variables: `messages`, `tools`,
//! `add_generation_prompt`, `bos_token`, `eos_token`.
//!
//! Templates are untrusted: there is no loader (no `include`/`import` of
//! other files, no file or host access), every render has a step budget
//! (fuel) and an output-size cap, and failures are typed [`TemplateError`]s.
//! Not bounded: memory a template builds up between outputs. minijinja caps
//! `text * n` at 100 MB, but a string doubled in a loop grows as `2^steps`
//! within the fuel budget, so renderers of hostile templates should also run
//! under a process memory limit.
//!
//! ```
//! use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
//! let t = ChatTemplate::builtin("chatml")?;
//! let prompt = t.render(&[Message::user("Hi!")], true, None)?;
//! assert_eq!(prompt, "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
//! # Ok::<(), wasm_chord_runtime::chat_template::TemplateError>(())
//! ```

mod builtin;
mod error;
mod json;
mod markup;
mod message;
mod python_str;
mod select;
mod strftime;

pub use builtin::BUILTIN_NAMES;
pub use error::TemplateError;
pub use message::Message;
pub use select::builtin_for;

use minijinja::{Environment, ErrorKind, Value};
use std::sync::{Arc, Mutex};
use strftime::DateTime;
use wasm_chord_core::gguf::Metadata;

/// The GGUF metadata key holding the default chat template.
pub const METADATA_KEY: &str = "tokenizer.chat_template";

/// Resource limits of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted template source, in bytes.
    pub max_source_bytes: usize,
    /// Largest rendered prompt, in bytes.
    pub max_output_bytes: usize,
    /// Step budget (minijinja fuel: about one unit per instruction).
    pub fuel: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_source_bytes: 1 << 20,
            max_output_bytes: 4 << 20,
            fuel: 20_000_000,
        }
    }
}

/// A chat template ready to render conversations.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
    limits: Limits,
    /// Fixed `strftime_now` time (Unix seconds, UTC); `None` = the clock.
    now: Option<i64>,
}

/// Hugging Face's `{% generation %}` block (transformers' AssistantTracker
/// extension) only marks assistant text for training masks; when rendering
/// it is a plain block, so it becomes an always-true `if` with the same
/// whitespace control.
fn rewrite_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_owned();
    }
    let mut s = source.to_owned();
    for (from, to) in [("endgeneration", "endif"), ("generation", "if true")] {
        for (open, close) in [
            ("{%-", "-%}"),
            ("{%-", "%}"),
            ("{%", "-%}"),
            ("{%", "%}"),
            ("{%+", "%}"),
            ("{%+", "-%}"),
        ] {
            for (a, b) in [(" ", " "), ("", ""), (" ", ""), ("", " ")] {
                s = s.replace(
                    &format!("{open}{a}{from}{b}{close}"),
                    &format!("{open}{a}{to}{b}{close}"),
                );
            }
        }
    }
    s
}

/// A writer that refuses to grow past `max` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.max {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// A template from its Jinja source, with the text of the model's BOS
    /// and EOS tokens (the `bos_token` / `eos_token` variables). The source
    /// is parsed now so syntax errors surface here.
    pub fn new(
        source: impl Into<String>,
        bos: impl Into<String>,
        eos: impl Into<String>,
    ) -> Result<Self, TemplateError> {
        Self::with_limits(source, bos, eos, Limits::default())
    }

    /// Like [`ChatTemplate::new`] with explicit resource limits.
    pub fn with_limits(
        source: impl Into<String>,
        bos: impl Into<String>,
        eos: impl Into<String>,
        limits: Limits,
    ) -> Result<Self, TemplateError> {
        let source = source.into();
        if source.len() > limits.max_source_bytes {
            return Err(TemplateError::SourceTooLarge {
                len: source.len(),
                max: limits.max_source_bytes,
            });
        }
        let t = Self {
            source: markup::rewrite(&rewrite_generation_tags(&source)),
            bos: bos.into(),
            eos: eos.into(),
            limits,
            now: None,
        };
        let env = t.environment(Arc::new(Mutex::new(None)));
        env.template_from_str(&t.source)
            .map_err(TemplateError::Syntax)?;
        Ok(t)
    }

    /// The template stored in a GGUF file's metadata
    /// (`tokenizer.chat_template`).
    pub fn from_metadata(
        md: &Metadata,
        bos: impl Into<String>,
        eos: impl Into<String>,
    ) -> Result<Self, TemplateError> {
        let source = md
            .get_str(METADATA_KEY)
            .map_err(|_| TemplateError::NoTemplate(BUILTIN_NAMES))?;
        Self::new(source, bos, eos)
    }

    /// A built-in template by name (see [`BUILTIN_NAMES`]), for files
    /// without one. Built-ins write their own special tokens.
    pub fn builtin(name: &str) -> Result<Self, TemplateError> {
        let (source, bos, eos) =
            builtin::find(name).ok_or_else(|| TemplateError::UnknownBuiltin {
                name: name.to_owned(),
                known: BUILTIN_NAMES,
            })?;
        Self::new(source, bos, eos)
    }

    /// Pins `strftime_now` to a fixed time (seconds since the Unix epoch,
    /// UTC) for reproducible prompts; by default it reads the clock.
    pub fn with_fixed_time(mut self, unix_seconds: i64) -> Self {
        self.now = Some(unix_seconds);
        self
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn environment(&self, raised: Arc<Mutex<Option<String>>>) -> Environment<'_> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(self.limits.fuel));
        env.set_recursion_limit(200);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", json::tojson);
        // Print values as Python's str() does (None, True, ['a']), like jinja2.
        env.set_formatter(|out, _state, value| {
            out.write_str(&python_str::py_str(value))
                .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed"))
        });
        env.add_filter("string", |v: Value| python_str::py_str(&v));
        env.add_filter("trim", |v: Value, chars: Option<String>| {
            let s = python_str::py_str(&v);
            match chars {
                Some(c) => s.trim_matches(|x| c.contains(x)).to_owned(),
                None => s.trim().to_owned(),
            }
        });
        // jinja2: None is not iterable (minijinja iterates it as empty);
        // undefined is (jinja2's Undefined iterates as empty).
        env.add_test("iterable", |v: Value| {
            v.is_undefined() || (!v.is_none() && v.try_iter().is_ok())
        });
        env.add_function(
            "raise_exception",
            move |msg: String| -> Result<Value, minijinja::Error> {
                if let Ok(mut slot) = raised.lock() {
                    *slot = Some(msg.clone());
                }
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function(markup::MARKUP_JOIN, markup::markup_join);
        let now = self.now;
        env.add_function("strftime_now", move |fmt: String| -> String {
            now.map_or_else(DateTime::now, DateTime::from_unix)
                .strftime(&fmt)
        });
        env
    }

    /// Renders `messages` into a prompt. With `add_generation_prompt` the
    /// prompt ends with the opening of an assistant turn; `tools` (a JSON
    /// array of tool/function schemas) is passed as the `tools` variable.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let raised = Arc::new(Mutex::new(None));
        let env = self.environment(Arc::clone(&raised));
        let tmpl = env
            .template_from_str(&self.source)
            .map_err(TemplateError::Syntax)?;
        let msgs: Vec<serde_json::Value> = messages.iter().map(Message::to_json).collect();
        let ctx = minijinja::context! {
            messages => Value::from_serialize(&msgs),
            tools => tools.map_or(Value::from(()), Value::from_serialize),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos,
            eos_token => &self.eos,
        };
        let mut out = CappedWriter {
            buf: Vec::new(),
            max: self.limits.max_output_bytes,
            overflowed: false,
        };
        let result = tmpl.render_captured_to(ctx, &mut out).map(|_| ());
        if let Err(e) = result {
            if out.overflowed {
                return Err(TemplateError::OutputTooLarge(self.limits.max_output_bytes));
            }
            if let Some(msg) = raised.lock().ok().and_then(|mut s| s.take()) {
                return Err(TemplateError::Raised(msg));
            }
            if e.kind() == ErrorKind::OutOfFuel {
                return Err(TemplateError::OutOfFuel(self.limits.fuel));
            }
            return Err(TemplateError::Render(e));
        }
        // minijinja writes valid UTF-8 (it only emits strings).
        String::from_utf8(out.buf).map_err(|_| {
            TemplateError::Render(minijinja::Error::new(
                ErrorKind::BadSerialization,
                "rendered output is not UTF-8",
            ))
        })
    }
}

#[cfg(test)]
mod tests;
