//! Perplexity, computed the way llama.cpp's `llama-perplexity` does so the
//! numbers are comparable: the text's tokens (BOS first when the model adds
//! one) are cut into chunks of `n_ctx`; each chunk is evaluated from an empty
//! cache with its first token replaced by BOS; the second half of each chunk
//! is scored (`first = n_ctx / 2`, tokens `first+1 ..= n_ctx-1` predicted
//! from the logits before them), with log-softmax in f64.

use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::session::{Logits, Session, SessionConfig};
use wasm_chord_core::backend::Backend;

/// The outcome of a perplexity run.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// `exp(mean negative log-likelihood)`.
    pub ppl: f64,
    /// Standard error of the estimate, as llama.cpp prints it (`+/-`).
    pub ppl_stderr: f64,
    /// Running estimate after each chunk (llama.cpp's `[k]value` line).
    pub running: Vec<f64>,
    /// Tokens scored.
    pub count: usize,
}

/// `log_softmax(logits)[target]`, as llama.cpp's `log_softmax` (f64 sum).
fn log_softmax(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    f64::from(logits[target] - max) - sum.ln()
}

/// Runs the perplexity of `tokens` (already tokenized, BOS first if the
/// model adds one) with chunks of `n_ctx`. `bos` replaces each chunk's first
/// token when given. `max_chunks` limits the work; `on_chunk` sees the
/// running estimate after each chunk and may return `false` to stop early.
pub fn perplexity<B: Backend>(
    model: &Model<B>,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    max_chunks: Option<usize>,
    on_chunk: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<Perplexity> {
    if n_ctx < 4 {
        return Err(RuntimeError::BadConfig {
            key: "ctx".into(),
            reason: format!("{n_ctx} is too small"),
        });
    }
    let n_chunk_max = tokens.len() / n_ctx;
    if n_chunk_max < 1 || tokens.len() < 2 * n_ctx {
        return Err(RuntimeError::BadConfig {
            key: "ctx".into(),
            reason: format!(
                "need at least {} tokens for a context of {n_ctx}, have {}",
                2 * n_ctx,
                tokens.len()
            ),
        });
    }
    let n_chunk = max_chunks.map_or(n_chunk_max, |m| m.min(n_chunk_max));
    let first = n_ctx / 2;
    let n_vocab = model.n_vocab();
    let mut session = Session::new(
        model,
        SessionConfig {
            n_ctx,
            n_batch: n_ctx,
        },
    )?;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunk);
    for c in 0..n_chunk {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.clear();
        // Logits after positions first .. n_ctx-1.
        let logits = session.forward(&chunk, Logits::Tail(n_ctx - first))?;
        let orig = &tokens[c * n_ctx..(c + 1) * n_ctx];
        for i in 0..(n_ctx - 1 - first) {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            let target = orig[first + i + 1] as usize;
            let v = -log_softmax(row, target);
            nll += v;
            nll2 += v * v;
        }
        count += n_ctx - 1 - first;
        let est = (nll / count as f64).exp();
        running.push(est);
        if !on_chunk(c + 1, est) {
            break;
        }
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let ppl_stderr = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        ppl_stderr,
        running,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_definition() {
        let l = [1.0f32, 2.0, 3.0, -1.0];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        for t in 0..4 {
            let want = (l[t] as f64).exp().ln() - z.ln();
            assert!((log_softmax(&l, t) - want).abs() < 1e-12);
        }
    }
}
