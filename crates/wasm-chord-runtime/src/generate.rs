//! Generation: sampling tokens one after another from a session, streaming
//! text, with stop conditions and cancellation.

use crate::error::Result;
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::{Logits, Session};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
use std::time::{Duration, Instant};
use wasm_chord_core::backend::Backend;
use wasm_chord_core::tokenizer::Tokenizer;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use web_time::{Duration, Instant};

/// What to generate and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most new tokens.
    pub max_tokens: usize,
    /// Texts that end generation; the stop text itself is not emitted, and
    /// no part of it is emitted before it is known not to match.
    pub stop: Vec<String>,
    /// The sampling chain.
    pub sampler: SamplerConfig,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            stop: Vec::new(),
            sampler: SamplerConfig::default(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS, EOT, ...).
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop text appeared.
    StopText,
    /// The context is full.
    ContextFull,
    /// The caller cancelled (token or callback).
    Cancelled,
}

/// A shareable flag that stops a running generation from another thread.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A new, unset token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the generation to stop after the current token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated token ids (the end-of-generation token excluded).
    pub tokens: Vec<u32>,
    /// The generated text as streamed (stop text excluded).
    pub text: String,
    /// Why it ended.
    pub stop: StopReason,
    /// Prompt tokens actually evaluated (a cached prefix is not re-run).
    pub prompt_eval_tokens: usize,
    /// Time spent on the prompt.
    pub prompt_time: Duration,
    /// Time spent generating.
    pub gen_time: Duration,
}

impl Generation {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_eval_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    /// Generated tokens per second.
    pub fn gen_tps(&self) -> f64 {
        self.tokens.len() as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }
}

/// Holds back streamed text that could still turn into a stop text, so that
/// a stop text is never emitted, not even in part. Owns its state: callers
/// that generate a token per call (the browser package) keep it between
/// calls.
#[derive(Debug, Clone, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    /// A filter for `stops` (empty texts are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds text; returns what can be emitted now and whether a stop text
    /// was found (in which case the returned text is everything before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_owned();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a prefix of some stop text.
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(self.held.len() + 1))
                    .rev()
                    .find(|&k| {
                        self.held.is_char_boundary(self.held.len() - k)
                            && s.starts_with(&self.held[self.held.len() - k..])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_owned();
        self.held.drain(..cut);
        (out, false)
    }

    /// The text still held (when generation ends for another reason).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Feeds `prompt` (reusing any cached common prefix) and generates, calling
/// `on_text` with each piece of text as soon as it is complete UTF-8 and
/// cannot be part of a stop text. `on_text` returns `false` to stop.
pub fn generate<B: Backend>(
    session: &mut Session<'_, B>,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    params: &GenerateParams,
    cancel: Option<&CancelToken>,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    let mut sampler = Sampler::new(params.sampler.clone())?;
    for &t in prompt {
        sampler.accept(t);
    }
    let t0 = Instant::now();
    let prefilled = session.prefill(prompt)?;
    let mut logits = prefilled.logits;
    let prompt_eval_tokens = prefilled.evaluated;
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();

    let mut decoder = tokenizer.stream_decoder(false);
    let mut filter = StopFilter::new(params.stop.clone());
    let mut out = Generation {
        tokens: Vec::new(),
        text: String::new(),
        stop: StopReason::MaxTokens,
        prompt_eval_tokens,
        prompt_time,
        gen_time: Duration::ZERO,
    };
    let mut emit = |text: &str, out: &mut Generation| -> bool {
        if text.is_empty() {
            return true;
        }
        out.text.push_str(text);
        on_text(text)
    };
    let capacity = session.config().n_ctx;
    while out.tokens.len() < params.max_tokens {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            out.stop = StopReason::Cancelled;
            break;
        }
        let token = sampler.sample(&logits)?;
        if tokenizer.is_eog(token) {
            out.stop = StopReason::EndOfGeneration;
            break;
        }
        sampler.accept(token);
        out.tokens.push(token);
        let piece = decoder.push(token)?;
        let (text, stopped) = filter.push(&piece);
        let keep_going = emit(&text, &mut out);
        if stopped {
            out.stop = StopReason::StopText;
            break;
        }
        if !keep_going {
            out.stop = StopReason::Cancelled;
            break;
        }
        if out.tokens.len() == params.max_tokens {
            break;
        }
        if session.n_past() + 1 > capacity {
            out.stop = StopReason::ContextFull;
            break;
        }
        logits = session.forward(&[token], Logits::Last)?;
    }
    if out.stop != StopReason::StopText {
        let rest = decoder.finish();
        let (text, _) = filter.push(&rest);
        let tail = filter.finish();
        emit(&text, &mut out);
        emit(&tail, &mut out);
    }
    out.gen_time = t1.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut f = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            let (t, stop) = f.push(p);
            out.push(t);
            if stop {
                return (out, true);
            }
        }
        out.push(f.finish());
        (out, false)
    }

    #[test]
    fn stop_text_split_over_pieces_is_never_emitted() {
        let (out, stopped) = run(&["</s>"], &["Hello", " wor", "ld<", "/", "s>tail"]);
        assert!(stopped);
        assert_eq!(out.concat(), "Hello world");
        // "<" was held back until it was known to start the stop text.
        assert_eq!(out[2], "ld");
    }

    #[test]
    fn held_text_is_released_when_it_cannot_match() {
        let (out, stopped) = run(&["STOP"], &["a S", "T", "x", "y"]);
        assert!(!stopped);
        assert_eq!(out.concat(), "a STxy");
        assert_eq!(out[0], "a ");
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        let (out, stopped) = run(&["é!", "b"], &["aé", "!b"]);
        assert!(stopped);
        assert_eq!(out.concat(), "a");
        let (out, _) = run(&["\n\n"], &["日本", "\n", "語"]);
        assert_eq!(out.concat(), "日本\n語");
    }
}
