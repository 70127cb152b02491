//! Logit bias: fixed amounts added to chosen tokens' logits (`-inf` bans a
//! token), like llama.cpp's `logit_bias` sampler.

use super::{Candidates, SamplerError, Stage};

/// Adds a fixed bias to listed tokens.
#[derive(Debug, Clone)]
pub struct LogitBias {
    bias: Vec<(u32, f32)>,
}

impl LogitBias {
    /// Biases as `(token, amount)`; a token listed twice gets both amounts.
    /// Amounts must be finite or `-inf`.
    pub fn new(bias: Vec<(u32, f32)>) -> Result<Self, SamplerError> {
        for &(_, b) in &bias {
            if b.is_nan() || b == f32::INFINITY {
                return Err(SamplerError::NotFinite {
                    name: "logit_bias",
                    value: b,
                });
            }
        }
        Ok(Self { bias })
    }

    /// Checks every biased id against the vocabulary size.
    pub(crate) fn check_vocab(&self, n_vocab: usize) -> Result<(), SamplerError> {
        for &(token, _) in &self.bias {
            if usize::try_from(token).map_or(true, |t| t >= n_vocab) {
                return Err(SamplerError::BiasOutOfRange { token, n_vocab });
            }
        }
        Ok(())
    }
}

impl Stage for LogitBias {
    fn name(&self) -> &'static str {
        "logit-bias"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.bias.is_empty() {
            return Ok(());
        }
        for c in candidates.as_mut_slice() {
            for &(token, b) in &self.bias {
                if token == c.id {
                    c.logit += b;
                }
            }
        }
        if !candidates.retain(|c| c.logit > f32::NEG_INFINITY) {
            return Err(SamplerError::NoCandidates);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_bias_and_bans() {
        let mut c = Candidates::from_logits(&[0.5, 1.25, -2.0]).unwrap();
        let mut b = LogitBias::new(vec![(0, 2.0), (1, f32::NEG_INFINITY), (0, -0.5)]).unwrap();
        b.apply(&mut c).unwrap();
        let got: Vec<(u32, f32)> = c.as_slice().iter().map(|c| (c.id, c.logit)).collect();
        assert_eq!(got, [(0, 2.0), (2, -2.0)]);
    }

    #[test]
    fn rejects_nan_and_out_of_range() {
        assert!(LogitBias::new(vec![(0, f32::NAN)]).is_err());
        let b = LogitBias::new(vec![(3, 1.0)]).unwrap();
        assert_eq!(
            b.check_vocab(3),
            Err(SamplerError::BiasOutOfRange {
                token: 3,
                n_vocab: 3
            })
        );
        assert!(b.check_vocab(4).is_ok());
    }

    #[test]
    fn banning_everything_is_an_error() {
        let mut c = Candidates::from_logits(&[0.5]).unwrap();
        let mut b = LogitBias::new(vec![(0, f32::NEG_INFINITY)]).unwrap();
        assert_eq!(b.apply(&mut c), Err(SamplerError::NoCandidates));
    }
}
