//! Temperature: divide logits by `t`; `t <= 0` keeps only the best token
//! (greedy), as llama.cpp's `temp`.

use super::{Candidates, SamplerError, Stage};

/// The temperature stage.
#[derive(Debug, Clone, Copy)]
pub struct Temperature {
    t: f32,
}

impl Temperature {
    /// Temperature `t` (finite; `<= 0` means greedy).
    pub fn new(t: f32) -> Result<Self, SamplerError> {
        if !t.is_finite() {
            return Err(SamplerError::NotFinite {
                name: "temperature",
                value: t,
            });
        }
        Ok(Self { t })
    }
}

impl Stage for Temperature {
    fn name(&self) -> &'static str {
        "temperature"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.t <= 0.0 {
            candidates.sort();
            candidates.truncate(1);
            return Ok(());
        }
        if self.t != 1.0 {
            let sorted = candidates.is_sorted();
            for c in candidates.as_mut_slice() {
                c.logit /= self.t;
            }
            // Dividing by a positive number keeps the order.
            if sorted {
                candidates.sort();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_or_goes_greedy() {
        let mut c = Candidates::from_logits(&[1.0, -2.0, 3.0]).unwrap();
        Temperature::new(0.5).unwrap().apply(&mut c).unwrap();
        let l: Vec<f32> = c.as_slice().iter().map(|c| c.logit).collect();
        assert_eq!(l, [2.0, -4.0, 6.0]);
        Temperature::new(0.0).unwrap().apply(&mut c).unwrap();
        assert_eq!(c.as_slice().len(), 1);
        assert_eq!(c.as_slice()[0].id, 2);
        assert!(Temperature::new(f32::NAN).is_err());
    }
}
