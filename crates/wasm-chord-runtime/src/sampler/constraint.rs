//! The hook for constrained decoding (grammars, JSON schemas, tool-call
//! formats): a [`LogitFilter`] says which tokens may come next, and the
//! [`Constraint`] stage removes the others. No grammar is implemented yet.

use super::{Candidates, SamplerError, Stage};

/// Decides which tokens are allowed as the next token.
pub trait LogitFilter: Send {
    /// Whether `token` may be sampled next.
    fn allows(&self, token: u32) -> bool;
    /// Advances the filter's state past an accepted token.
    fn accept(&mut self, _token: u32) {}
    /// Returns to the initial state.
    fn reset(&mut self) {}
}

/// Removes the tokens a [`LogitFilter`] forbids.
pub struct Constraint {
    filter: Box<dyn LogitFilter>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

impl Constraint {
    /// A stage around `filter`.
    pub fn new(filter: Box<dyn LogitFilter>) -> Self {
        Self { filter }
    }
}

impl Stage for Constraint {
    fn name(&self) -> &'static str {
        "constraint"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        let filter = &self.filter;
        if candidates.retain(|c| filter.allows(c.id)) {
            Ok(())
        } else {
            Err(SamplerError::NoCandidates)
        }
    }

    fn accept(&mut self, token: u32) {
        self.filter.accept(token);
    }

    fn reset(&mut self) {
        self.filter.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct EvenOnly;
    impl LogitFilter for EvenOnly {
        fn allows(&self, token: u32) -> bool {
            token.is_multiple_of(2)
        }
    }

    #[test]
    fn masks_forbidden_tokens() {
        let mut c = Candidates::from_logits(&[0.1, 5.0, 0.3, 7.0, -1.0]).unwrap();
        let mut s = Constraint::new(Box::new(EvenOnly));
        s.apply(&mut c).unwrap();
        let ids: Vec<u32> = c.as_slice().iter().map(|c| c.id).collect();
        assert_eq!(ids, [0, 2, 4]);
        let mut one = Candidates::from_logits(&[0.1, 5.0]).unwrap();
        one.retain(|c| c.id == 1);
        assert_eq!(s.apply(&mut one), Err(SamplerError::NoCandidates));
    }
}
