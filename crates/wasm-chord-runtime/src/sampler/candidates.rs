//! The working set a sampling chain narrows down: token ids with their
//! (adjusted) logits and, once computed, probabilities.

use super::SamplerError;
use std::cmp::Ordering;

/// One token still in the running.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Its logit after the stages applied so far.
    pub logit: f32,
    /// Its probability after the last [`Candidates::softmax`] (0 before).
    pub p: f32,
}

/// The candidates of one sampling step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    items: Vec<Candidate>,
    sorted: bool,
}

/// Descending by logit; ties broken by ascending id so the order is total
/// and deterministic.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit
        .partial_cmp(&a.logit)
        .unwrap_or(Ordering::Equal)
        .then(a.id.cmp(&b.id))
}

impl Candidates {
    /// Every token of `logits`, in id order. NaN and `+inf` logits are
    /// errors; `-inf` tokens are left out (they can never be drawn).
    pub fn from_logits(logits: &[f32]) -> Result<Self, SamplerError> {
        if logits.is_empty() {
            return Err(SamplerError::EmptyLogits);
        }
        if u32::try_from(logits.len()).is_err() {
            return Err(SamplerError::VocabTooLarge(logits.len()));
        }
        let mut items = Vec::with_capacity(logits.len());
        for (id, &logit) in (0u32..).zip(logits) {
            if logit.is_nan() || logit == f32::INFINITY {
                return Err(SamplerError::BadLogit {
                    token: id,
                    value: logit,
                });
            }
            if logit > f32::NEG_INFINITY {
                items.push(Candidate { id, logit, p: 0.0 });
            }
        }
        if items.is_empty() {
            return Err(SamplerError::NoCandidates);
        }
        Ok(Self {
            items,
            sorted: false,
        })
    }

    /// The candidates left, in their current order.
    pub fn as_slice(&self) -> &[Candidate] {
        &self.items
    }

    /// Mutable access for stages that adjust logits in place; clears the
    /// "sorted" mark since logits may change.
    pub fn as_mut_slice(&mut self) -> &mut [Candidate] {
        self.sorted = false;
        &mut self.items
    }

    /// How many candidates are left.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no candidate is left (the [`Sampler`](super::Sampler) never
    /// lets this happen before drawing).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the candidates are known to be sorted by descending logit.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Sorts by descending logit (ties by id).
    pub fn sort(&mut self) {
        if !self.sorted {
            self.items.sort_by(by_logit_desc);
            self.sorted = true;
        }
    }

    /// Keeps the first `n` candidates in the current order (at least one).
    pub fn truncate(&mut self, n: usize) {
        self.items.truncate(n.max(1));
    }

    /// Keeps candidates for which `keep` is true; never empties the set:
    /// if nothing passes, the set is left unchanged and `false` returned.
    pub fn retain(&mut self, mut keep: impl FnMut(&Candidate) -> bool) -> bool {
        if !self.items.iter().any(&mut keep) {
            return false;
        }
        self.items.retain(keep);
        true
    }

    /// Replaces the candidates (stages that reorder, like typical sampling).
    pub(crate) fn replace(&mut self, items: Vec<Candidate>, sorted: bool) {
        if !items.is_empty() {
            self.items = items;
            self.sorted = sorted;
        }
    }

    /// The candidate with the highest logit (the lowest id on ties).
    pub fn argmax(&self) -> Option<Candidate> {
        if self.sorted {
            return self.items.first().copied();
        }
        self.items.iter().copied().min_by(by_logit_desc)
    }

    /// Fills `p` with the softmax of the logits (max-subtracted, f64 sums).
    pub fn softmax(&mut self) {
        let Some(max) = self.argmax().map(|c| c.logit) else {
            return;
        };
        let mut sum = 0.0f64;
        for c in &mut self.items {
            let e = f64::from(c.logit - max).exp();
            c.p = e as f32;
            sum += e;
        }
        // sum >= 1 because the max term is exp(0).
        for c in &mut self.items {
            c.p = (f64::from(c.p) / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_logits_and_drops_neg_inf() {
        assert_eq!(
            Candidates::from_logits(&[]).unwrap_err(),
            SamplerError::EmptyLogits
        );
        assert!(matches!(
            Candidates::from_logits(&[0.5, f32::NAN]),
            Err(SamplerError::BadLogit { token: 1, .. })
        ));
        assert!(matches!(
            Candidates::from_logits(&[f32::INFINITY]),
            Err(SamplerError::BadLogit { token: 0, .. })
        ));
        assert_eq!(
            Candidates::from_logits(&[f32::NEG_INFINITY]).unwrap_err(),
            SamplerError::NoCandidates
        );
        let c = Candidates::from_logits(&[1.5, f32::NEG_INFINITY, -0.25]).unwrap();
        let ids: Vec<u32> = c.as_slice().iter().map(|c| c.id).collect();
        assert_eq!(ids, [0, 2]);
    }

    #[test]
    fn softmax_matches_formula() {
        let logits = [1.3f32, -0.7, 2.9, 0.11];
        let mut c = Candidates::from_logits(&logits).unwrap();
        c.softmax();
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for cand in c.as_slice() {
            let want = f64::from(logits[cand.id as usize]).exp() / z;
            assert!((f64::from(cand.p) - want).abs() < 1e-6);
        }
        assert_eq!(c.argmax().map(|c| c.id), Some(2));
    }

    #[test]
    fn retain_never_empties() {
        let mut c = Candidates::from_logits(&[0.3, 0.9]).unwrap();
        assert!(!c.retain(|_| false));
        assert_eq!(c.len(), 2);
        assert!(c.retain(|x| x.id == 1));
        assert_eq!(c.len(), 1);
    }
}
