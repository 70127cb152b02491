//! Top-k: keep the `k` highest logits (0 keeps all).

use super::{Candidates, SamplerError, Stage};

/// The top-k stage.
#[derive(Debug, Clone, Copy)]
pub struct TopK {
    k: usize,
}

impl TopK {
    /// Keeps the `k` best tokens; `0` disables the stage.
    pub fn new(k: usize) -> Self {
        Self { k }
    }
}

impl Stage for TopK {
    fn name(&self) -> &'static str {
        "top-k"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.k == 0 || self.k >= candidates.len() {
            return Ok(());
        }
        candidates.sort();
        candidates.truncate(self.k);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_best() {
        let mut c = Candidates::from_logits(&[0.2, 3.1, -1.0, 2.5, 0.9]).unwrap();
        TopK::new(2).apply(&mut c).unwrap();
        let ids: Vec<u32> = c.as_slice().iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 3]);
        let mut all = Candidates::from_logits(&[0.2, 3.1]).unwrap();
        TopK::new(0).apply(&mut all).unwrap();
        assert_eq!(all.len(), 2);
    }
}
