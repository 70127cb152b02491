//! Repetition, frequency and presence penalties over a window of the last
//! `last_n` accepted tokens, with llama.cpp's semantics
//! (`llama_sampler_penalties_apply`): for each token seen `count > 0` times
//! in the window, a logit `<= 0` is multiplied by `repeat` and a positive one
//! divided by it, then `count * frequency + presence` is subtracted.

use super::{Candidates, SamplerError, Stage};
use std::collections::{HashMap, VecDeque};

/// The penalties stage, with its own token history.
#[derive(Debug, Clone)]
pub struct Penalties {
    last_n: usize,
    repeat: f32,
    frequency: f32,
    presence: f32,
    window: VecDeque<u32>,
    counts: HashMap<u32, u32>,
}

impl Penalties {
    /// Penalties over the last `last_n` tokens (0 disables them).
    pub fn new(last_n: usize, repeat: f32, frequency: f32, presence: f32) -> Self {
        Self {
            last_n,
            repeat,
            frequency,
            presence,
            window: VecDeque::with_capacity(last_n.min(4096)),
            counts: HashMap::new(),
        }
    }

    fn disabled(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0)
    }

    /// The tokens currently in the window, oldest first.
    pub fn window(&self) -> impl Iterator<Item = u32> + '_ {
        self.window.iter().copied()
    }
}

impl Stage for Penalties {
    fn name(&self) -> &'static str {
        "penalties"
    }

    fn apply(&mut self, candidates: &mut Candidates) -> Result<(), SamplerError> {
        if self.disabled() || self.counts.is_empty() {
            return Ok(());
        }
        for c in candidates.as_mut_slice() {
            let Some(&count) = self.counts.get(&c.id) else {
                continue;
            };
            if c.logit <= 0.0 {
                c.logit *= self.repeat;
            } else {
                c.logit /= self.repeat;
            }
            c.logit -= count as f32 * self.frequency + self.presence;
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) {
        if self.last_n == 0 {
            return;
        }
        if self.window.len() == self.last_n {
            if let Some(old) = self.window.pop_front() {
                if let Some(n) = self.counts.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.window.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }

    fn reset(&mut self) {
        self.window.clear();
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_formula() {
        let mut p = Penalties::new(3, 2.0, 0.5, 0.25);
        for t in [1, 2, 1] {
            p.accept(t);
        }
        let mut c = Candidates::from_logits(&[1.0, 3.0, -1.5, 0.75]).unwrap();
        p.apply(&mut c).unwrap();
        let l: Vec<f32> = c.as_slice().iter().map(|c| c.logit).collect();
        // token 1 seen twice: 3/2 - 2*0.5 - 0.25; token 2 once: -1.5*2 - 0.5 - 0.25
        assert_eq!(l, [1.0, 3.0 / 2.0 - 1.0 - 0.25, -3.0 - 0.75, 0.75]);
    }

    #[test]
    fn window_slides_and_reset_clears() {
        let mut p = Penalties::new(2, 1.5, 0.0, 0.0);
        for t in [0, 1, 2] {
            p.accept(t);
        }
        assert_eq!(p.window().collect::<Vec<_>>(), [1, 2]);
        assert!(!p.counts.contains_key(&0));
        p.reset();
        assert_eq!(p.window().count(), 0);
        let mut c = Candidates::from_logits(&[1.0, 2.0, 3.0]).unwrap();
        p.apply(&mut c).unwrap();
        assert_eq!(c.as_slice()[2].logit, 3.0);
    }
}
