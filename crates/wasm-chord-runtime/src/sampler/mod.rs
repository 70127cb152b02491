//! Token sampling: a composable, seeded chain of stages.
//!
//! [`Sampler::new`] builds llama.cpp's default chain from a [`SamplerConfig`]:
//!
//! ```text
//! logit bias → constraint (if any) → penalties → top-k → typical → top-p → min-p → temperature → draw
//! ```
//!
//! Each stage narrows or reshapes a [`Candidates`] set; the draw picks one
//! token from the softmax of what is left, using the sampler's own
//! [`Rng`] (xoshiro256**), so the same seed, settings and logits always give
//! the same tokens. [`Sampler::from_stages`] composes any other chain from
//! [`Stage`]s, including your own.
//!
//! ```
//! use wasm_chord_runtime::sampler::{Sampler, SamplerConfig};
//! let mut s = Sampler::new(SamplerConfig { seed: 7, ..SamplerConfig::default() })?;
//! let logits = [0.1f32, 2.5, -1.0, 1.7];
//! let token = s.sample(&logits)?;
//! s.accept(token); // history for the repetition penalties
//! # Ok::<(), wasm_chord_runtime::sampler::SamplerError>(())
//! ```

mod candidates;
mod constraint;
mod error;
mod logit_bias;
mod min_p;
mod penalties;
mod rng;
mod temperature;
mod top_k;
mod top_p;
mod typical;

pub use candidates::{Candidate, Candidates};
pub use constraint::{Constraint, LogitFilter};
pub use error::SamplerError;
pub use logit_bias::LogitBias;
pub use min_p::MinP;
pub use penalties::Penalties;
pub use rng::Rng;
pub use temperature::Temperature;
pub use top_k::TopK;
pub use top_p::TopP;
pub use typical::Typical;

/// One step of a sampling chain.
pub trait Stage: Send {
    /// A short name for logs (`"top-p"`).
    fn name(&self) -> &'static str;
    /// Narrows or reshapes the candidates. Must leave at least one candidate
    /// or return an error.
    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError>;
    /// Sees each token accepted into the sequence (history-dependent stages).
    fn accept(&mut self, _token: u32) {}
    /// Forgets all history.
    fn reset(&mut self) {}
}

/// Settings of the default chain, with llama.cpp's defaults
/// (`common_params_sampling`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` picks the most likely token (greedy).
    /// Default 0.8.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 disables. Default 40.
    pub top_k: usize,
    /// Nucleus mass in `(0, 1]`; 1 disables. Default 0.95.
    pub top_p: f32,
    /// Keep tokens with `p >= min_p * p_max`, in `[0, 1]`; 0 disables.
    /// Default 0.05.
    pub min_p: f32,
    /// Locally typical mass in `(0, 1]`; 1 disables. Default 1.
    pub typical_p: f32,
    /// Repetition penalty (`> 0`; 1 disables): positive logits of recent
    /// tokens are divided by it, negative ones multiplied. Default 1.
    pub repeat_penalty: f32,
    /// How many recent accepted tokens the penalties look at; 0 disables.
    /// Default 64.
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of each token in the window. Default 0.
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the window. Default 0.
    pub frequency_penalty: f32,
    /// `(token, bias)` added to logits before anything else; `-inf` bans.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the draw. Default `0xFFFF_FFFF` (llama.cpp's
    /// `LLAMA_DEFAULT_SEED` value, used here as a plain fixed seed).
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0xFFFF_FFFF,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

fn finite(name: &'static str, value: f32) -> Result<f32, SamplerError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(SamplerError::NotFinite { name, value })
    }
}

/// A sampling chain with its random state and token history.
pub struct Sampler {
    stages: Vec<Box<dyn Stage>>,
    bias: Option<LogitBias>,
    rng: Rng,
    seed: u64,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        f.debug_struct("Sampler")
            .field("stages", &names)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Sampler {
    /// The default chain for `cfg`; invalid settings are errors.
    pub fn new(cfg: SamplerConfig) -> Result<Self, SamplerError> {
        Self::with_constraint(cfg, None)
    }

    /// The default chain with a constraint (e.g. a grammar) applied right
    /// after the logit bias.
    pub fn with_constraint(
        cfg: SamplerConfig,
        filter: Option<Box<dyn LogitFilter>>,
    ) -> Result<Self, SamplerError> {
        let repeat = finite("repeat_penalty", cfg.repeat_penalty)?;
        if repeat <= 0.0 {
            return Err(SamplerError::OutOfRange {
                name: "repeat_penalty",
                value: repeat,
                range: "(0, inf)",
            });
        }
        let penalties = Penalties::new(
            cfg.repeat_last_n,
            repeat,
            finite("frequency_penalty", cfg.frequency_penalty)?,
            finite("presence_penalty", cfg.presence_penalty)?,
        );
        let bias = LogitBias::new(cfg.logit_bias)?;
        let mut stages: Vec<Box<dyn Stage>> = vec![Box::new(bias.clone())];
        if let Some(f) = filter {
            stages.push(Box::new(Constraint::new(f)));
        }
        stages.push(Box::new(penalties));
        stages.push(Box::new(TopK::new(cfg.top_k)));
        stages.push(Box::new(Typical::new(cfg.typical_p)?));
        stages.push(Box::new(TopP::new(cfg.top_p)?));
        stages.push(Box::new(MinP::new(cfg.min_p)?));
        stages.push(Box::new(Temperature::new(cfg.temperature)?));
        let mut s = Self::from_stages(stages, cfg.seed);
        s.bias = Some(bias);
        Ok(s)
    }

    /// Any chain of stages, applied in order, then a seeded draw.
    pub fn from_stages(stages: Vec<Box<dyn Stage>>, seed: u64) -> Self {
        Self {
            stages,
            bias: None,
            rng: Rng::new(seed),
            seed,
        }
    }

    /// Runs the chain without drawing: the candidates left, with their
    /// final logits and probabilities (softmax of those logits).
    pub fn candidates(&mut self, logits: &[f32]) -> Result<Candidates, SamplerError> {
        let mut c = Candidates::from_logits(logits)?;
        if let Some(b) = &self.bias {
            b.check_vocab(logits.len())?;
        }
        for stage in &mut self.stages {
            stage.apply(&mut c)?;
            if c.is_empty() {
                return Err(SamplerError::NoCandidates);
            }
        }
        c.softmax();
        Ok(c)
    }

    /// Picks the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplerError> {
        let c = self.candidates(logits)?;
        let items = c.as_slice();
        let u = self.rng.next_f64();
        let mut cum = 0.0f64;
        for cand in items {
            cum += f64::from(cand.p);
            if u < cum {
                return Ok(cand.id);
            }
        }
        // Rounding left `u` above the summed mass: the last token with p > 0.
        items
            .iter()
            .rev()
            .find(|c| c.p > 0.0)
            .or(items.first())
            .map(|c| c.id)
            .ok_or(SamplerError::NoCandidates)
    }

    /// Records `token` as part of the sequence (penalty history,
    /// constraint state).
    pub fn accept(&mut self, token: u32) {
        for stage in &mut self.stages {
            stage.accept(token);
        }
    }

    /// Forgets history and restarts the random stream from the seed.
    pub fn reset(&mut self) {
        for stage in &mut self.stages {
            stage.reset();
        }
        self.rng = Rng::new(self.seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_typed_errors() {
        let bad = |cfg: SamplerConfig| Sampler::new(cfg).unwrap_err();
        let d = SamplerConfig::default;
        assert!(matches!(
            bad(SamplerConfig {
                temperature: f32::NAN,
                ..d()
            }),
            SamplerError::NotFinite {
                name: "temperature",
                ..
            }
        ));
        assert!(matches!(
            bad(SamplerConfig { top_p: 0.0, ..d() }),
            SamplerError::OutOfRange { name: "top_p", .. }
        ));
        assert!(matches!(
            bad(SamplerConfig { top_p: 1.01, ..d() }),
            SamplerError::OutOfRange { name: "top_p", .. }
        ));
        assert!(matches!(
            bad(SamplerConfig {
                repeat_penalty: 0.0,
                ..d()
            }),
            SamplerError::OutOfRange {
                name: "repeat_penalty",
                ..
            }
        ));
        let mut s = Sampler::new(SamplerConfig {
            logit_bias: vec![(5, 1.0)],
            ..d()
        })
        .unwrap();
        assert_eq!(
            s.sample(&[0.1, 0.2]),
            Err(SamplerError::BiasOutOfRange {
                token: 5,
                n_vocab: 2
            })
        );
        assert_eq!(s.sample(&[]), Err(SamplerError::EmptyLogits));
    }

    #[test]
    fn reset_restarts_the_stream() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig {
            top_k: 0,
            min_p: 0.0,
            top_p: 1.0,
            temperature: 1.5,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).unwrap();
        let a: Vec<u32> = (0..20).map(|_| s.sample(&logits).unwrap()).collect();
        s.reset();
        let b: Vec<u32> = (0..20).map(|_| s.sample(&logits).unwrap()).collect();
        assert_eq!(a, b);
    }
}
