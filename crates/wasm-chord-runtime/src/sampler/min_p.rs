//! Min-p: keep tokens whose probability is at least `p` times the best
//! token's (`logit >= max_logit + ln p`, as llama.cpp's `min_p`); the best
//! token always stays.

use super::{Candidates, SamplerError, Stage};

/// The min-p stage.
#[derive(Debug, Clone, Copy)]
pub struct MinP {
    p: f32,
}

impl MinP {
    /// Relative threshold `p` in `[0, 1]`; `0` disables the stage.
    pub fn new(p: f32) -> Result<Self, SamplerError> {
        if !p.is_finite() {
            return Err(SamplerError::NotFinite {
                name: "min_p",
                value: p,
            });
        }
        if !(0.0..=1.0).contains(&p) {
            return Err(SamplerError::OutOfRange {
                name: "min_p",
                value: p,
                range: "[0, 1]",
            });
        }
        Ok(Self { p })
    }
}

impl Stage for MinP {
    fn name(&self) -> &'static str {
        "min-p"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.p <= 0.0 {
            return Ok(());
        }
        let Some(best) = candidates.argmax() else {
            return Ok(());
        };
        let min_logit = best.logit + self.p.ln();
        // The best token always passes, so the set never empties.
        candidates.retain(|c| c.logit >= min_logit || c.id == best.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_relative_mass() {
        // probabilities 0.5, 0.3, 0.2: min_p 0.5 keeps p >= 0.25
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut c = Candidates::from_logits(&logits).unwrap();
        MinP::new(0.5).unwrap().apply(&mut c).unwrap();
        let ids: Vec<u32> = c.as_slice().iter().map(|c| c.id).collect();
        assert_eq!(ids, [0, 1]);
        let mut c = Candidates::from_logits(&logits).unwrap();
        MinP::new(1.0).unwrap().apply(&mut c).unwrap();
        assert_eq!(c.len(), 1);
        assert!(MinP::new(-0.1).is_err());
    }
}
