//! Locally typical sampling (Meister et al. 2022), as llama.cpp's `typical`:
//! rank tokens by `|-ln p - H|` (distance of their surprisal from the
//! distribution's entropy) and keep the closest ones until their mass exceeds
//! `p` (at least one token).

use super::{Candidate, Candidates, SamplerError, Stage};

/// The locally typical stage.
#[derive(Debug, Clone, Copy)]
pub struct Typical {
    p: f32,
}

impl Typical {
    /// Typical mass `p` in `(0, 1]`; `1` disables the stage.
    pub fn new(p: f32) -> Result<Self, SamplerError> {
        if !p.is_finite() {
            return Err(SamplerError::NotFinite {
                name: "typical_p",
                value: p,
            });
        }
        if p <= 0.0 || p > 1.0 {
            return Err(SamplerError::OutOfRange {
                name: "typical_p",
                value: p,
                range: "(0, 1]",
            });
        }
        Ok(Self { p })
    }
}

impl Stage for Typical {
    fn name(&self) -> &'static str {
        "typical"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.p >= 1.0 {
            return Ok(());
        }
        candidates.sort();
        candidates.softmax();
        let items = candidates.as_slice();
        let surprisal = |c: &Candidate| -f64::from(c.p).ln();
        let entropy: f64 = items
            .iter()
            .filter(|c| c.p > 0.0)
            .map(|c| f64::from(c.p) * surprisal(c))
            .sum();
        let mut ranked: Vec<(f64, Candidate)> = items
            .iter()
            .map(|c| ((surprisal(c) - entropy).abs(), *c))
            .collect();
        // Stable sort: equal scores keep the logit order.
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut cum = 0.0f64;
        let mut keep = ranked.len();
        for (i, (_, c)) in ranked.iter().enumerate() {
            cum += f64::from(c.p);
            if cum > f64::from(self.p) {
                keep = i + 1;
                break;
            }
        }
        let kept = ranked
            .into_iter()
            .take(keep.max(1))
            .map(|(_, c)| c)
            .collect();
        candidates.replace(kept, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_tokens_near_entropy() {
        // A peaked token, two mid tokens and a rare one: the mid tokens are the
        // most "typical" and come first.
        let probs = [0.6f32, 0.18, 0.17, 0.05];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let h: f64 = probs
            .iter()
            .map(|&p| -f64::from(p) * f64::from(p).ln())
            .sum();
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| {
            let da = (-f64::from(probs[a]).ln() - h).abs();
            let db = (-f64::from(probs[b]).ln() - h).abs();
            da.total_cmp(&db)
        });
        let mut c = Candidates::from_logits(&logits).unwrap();
        Typical::new(0.3).unwrap().apply(&mut c).unwrap();
        let ids: Vec<usize> = c.as_slice().iter().map(|c| c.id as usize).collect();
        // Keep the closest tokens until the mass exceeds 0.3.
        let mut want = Vec::new();
        let mut cum = 0.0;
        for &i in &order {
            want.push(i);
            cum += probs[i];
            if cum > 0.3 {
                break;
            }
        }
        assert_eq!(ids, want);
        assert!(!ids.contains(&3));
    }
}
