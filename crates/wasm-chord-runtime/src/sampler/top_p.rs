//! Top-p (nucleus): keep the smallest set of best tokens whose probabilities
//! sum to at least `p` (at least one token), as llama.cpp's `top_p`.

use super::{Candidates, SamplerError, Stage};

/// The top-p stage.
#[derive(Debug, Clone, Copy)]
pub struct TopP {
    p: f32,
}

impl TopP {
    /// Nucleus of mass `p` in `(0, 1]`; `1` disables the stage.
    pub fn new(p: f32) -> Result<Self, SamplerError> {
        if !p.is_finite() {
            return Err(SamplerError::NotFinite {
                name: "top_p",
                value: p,
            });
        }
        if p <= 0.0 || p > 1.0 {
            return Err(SamplerError::OutOfRange {
                name: "top_p",
                value: p,
                range: "(0, 1]",
            });
        }
        Ok(Self { p })
    }
}

impl Stage for TopP {
    fn name(&self) -> &'static str {
        "top-p"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.p >= 1.0 {
            return Ok(());
        }
        candidates.sort();
        candidates.softmax();
        let mut cum = 0.0f64;
        let mut keep = candidates.len();
        for (i, c) in candidates.as_slice().iter().enumerate() {
            cum += f64::from(c.p);
            if cum >= f64::from(self.p) {
                keep = i + 1;
                break;
            }
        }
        candidates.truncate(keep);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_smallest_nucleus() {
        // probabilities 0.5, 0.3, 0.2 (logits are their logs)
        let logits = [0.3f32.ln(), 0.5f32.ln(), 0.2f32.ln()];
        let ids = |p: f32| {
            let mut c = Candidates::from_logits(&logits).unwrap();
            TopP::new(p).unwrap().apply(&mut c).unwrap();
            c.as_slice().iter().map(|c| c.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(0.1), [1]);
        assert_eq!(ids(0.7), [1, 0]);
        assert_eq!(ids(0.9), [1, 0, 2]);
        assert_eq!(ids(1.0).len(), 3);
    }

    #[test]
    fn rejects_out_of_range() {
        assert!(TopP::new(0.0).is_err());
        assert!(TopP::new(1.5).is_err());
        assert!(TopP::new(f32::NAN).is_err());
    }
}
