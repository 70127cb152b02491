//! Property tests of the sampling stages on many seeded random logit
//! vectors, and distribution tests of the draw against exact probabilities.

use wasm_chord_runtime::sampler::{
    Candidates, MinP, Penalties, Rng, Sampler, SamplerConfig, SamplerError, Stage, TopK, TopP,
    Typical,
};

const CASES: u64 = 300;

/// Random logits: a vocabulary of 2..=400 tokens, Gaussian-ish values
/// (sum of uniforms) with a per-case scale, so some cases are flat and some
/// are peaked.
fn random_logits(rng: &mut Rng) -> Vec<f32> {
    let n = 2 + (rng.next_u64() % 399) as usize;
    let scale = 0.1 + 6.0 * rng.next_f64();
    (0..n)
        .map(|_| {
            let g: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
            (g * scale) as f32
        })
        .collect()
}

/// Exact softmax in f64.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn ids(c: &Candidates) -> Vec<u32> {
    c.as_slice().iter().map(|c| c.id).collect()
}

fn plain(temperature: f32, seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        typical_p: 1.0,
        seed,
        ..SamplerConfig::default()
    }
}

#[test]
fn top_p_keeps_argmax_and_a_minimal_nucleus() {
    let mut rng = Rng::new(1);
    for _ in 0..CASES {
        let logits = random_logits(&mut rng);
        let p = (0.01 + 0.99 * rng.next_f64()) as f32;
        let mut c = Candidates::from_logits(&logits).unwrap();
        TopP::new(p).unwrap().apply(&mut c).unwrap();
        let kept = ids(&c);
        assert!(kept.contains(&argmax(&logits)), "p={p}");
        let probs = softmax(&logits);
        let mass: f64 = kept.iter().map(|&i| probs[i as usize]).sum();
        assert!(mass >= f64::from(p) - 1e-5 || kept.len() == logits.len());
        // Minimal: without the least likely kept token, the mass is below p.
        let min_kept = kept.iter().map(|&i| probs[i as usize]).fold(1.0, f64::min);
        assert!(mass - min_kept < f64::from(p) + 1e-5);
        // It is a top set: every kept token beats every dropped one.
        let lowest = kept
            .iter()
            .map(|&i| logits[i as usize])
            .fold(f32::INFINITY, f32::min);
        for (i, &l) in logits.iter().enumerate() {
            if !kept.contains(&(i as u32)) {
                assert!(l <= lowest);
            }
        }
    }
}

#[test]
fn min_p_keeps_exactly_tokens_above_the_relative_threshold() {
    let mut rng = Rng::new(2);
    for _ in 0..CASES {
        let logits = random_logits(&mut rng);
        let min_p = rng.next_f64() as f32;
        let mut c = Candidates::from_logits(&logits).unwrap();
        MinP::new(min_p).unwrap().apply(&mut c).unwrap();
        let kept = ids(&c);
        assert!(!kept.is_empty());
        assert!(kept.contains(&argmax(&logits)));
        let probs = softmax(&logits);
        let p_max = probs.iter().copied().fold(0.0, f64::max);
        for (i, &p) in probs.iter().enumerate() {
            let ratio = p / p_max;
            if (ratio - f64::from(min_p)).abs() < 1e-5 {
                continue; // on the boundary, rounding decides
            }
            let want = ratio >= f64::from(min_p);
            assert_eq!(
                kept.contains(&(i as u32)),
                want,
                "token {i} ratio {ratio} min_p {min_p}"
            );
        }
    }
}

#[test]
fn top_k_keeps_the_k_largest() {
    let mut rng = Rng::new(3);
    for _ in 0..CASES {
        let logits = random_logits(&mut rng);
        let k = 1 + (rng.next_u64() % (logits.len() as u64 + 5)) as usize;
        let mut c = Candidates::from_logits(&logits).unwrap();
        TopK::new(k).apply(&mut c).unwrap();
        let kept = ids(&c);
        assert_eq!(kept.len(), k.min(logits.len()));
        let lowest = kept
            .iter()
            .map(|&i| logits[i as usize])
            .fold(f32::INFINITY, f32::min);
        for (i, &l) in logits.iter().enumerate() {
            if !kept.contains(&(i as u32)) {
                assert!(l <= lowest);
            }
        }
    }
}

#[test]
fn typical_keeps_at_least_one_and_enough_mass() {
    let mut rng = Rng::new(4);
    for _ in 0..CASES {
        let logits = random_logits(&mut rng);
        let p = (0.01 + 0.98 * rng.next_f64()) as f32;
        let mut c = Candidates::from_logits(&logits).unwrap();
        Typical::new(p).unwrap().apply(&mut c).unwrap();
        let kept = ids(&c);
        assert!(!kept.is_empty());
        let probs = softmax(&logits);
        let mass: f64 = kept.iter().map(|&i| probs[i as usize]).sum();
        assert!(mass > f64::from(p) - 1e-5 || kept.len() == logits.len());
        // Every kept token is at least as typical as every dropped one.
        let h: f64 = probs
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| -p * p.ln())
            .sum();
        let score = |i: usize| (-probs[i].ln() - h).abs();
        let worst = kept.iter().map(|&i| score(i as usize)).fold(0.0, f64::max);
        for i in 0..logits.len() {
            if !kept.contains(&(i as u32)) {
                assert!(
                    score(i) >= worst - 1e-4,
                    "dropped {i} more typical than a kept one"
                );
            }
        }
    }
}

#[test]
fn zero_and_tiny_temperature_are_greedy() {
    let mut rng = Rng::new(5);
    let mut tiny_checked = 0;
    for case in 0..CASES {
        let logits = random_logits(&mut rng);
        let best = argmax(&logits);
        let mut greedy = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(greedy.sample(&logits).unwrap(), best);
        let mut zero = Sampler::new(plain(0.0, case)).unwrap();
        assert_eq!(zero.sample(&logits).unwrap(), best);
        // With a clear gap, T = 1e-3 leaves the runner-up e^-50 of the mass.
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > 0.05 {
            let mut tiny = Sampler::new(plain(1e-3, case)).unwrap();
            for _ in 0..5 {
                assert_eq!(tiny.sample(&logits).unwrap(), best);
            }
            tiny_checked += 1;
        }
    }
    assert!(tiny_checked > CASES / 4);
}

#[test]
fn penalties_change_only_tokens_in_the_window() {
    let mut rng = Rng::new(6);
    for _ in 0..CASES {
        let logits = random_logits(&mut rng);
        let n = logits.len() as u64;
        let last_n = 1 + (rng.next_u64() % 16) as usize;
        let repeat = (1.1 + rng.next_f64()) as f32;
        let freq = rng.next_f64() as f32;
        let pres = rng.next_f64() as f32;
        let mut pen = Penalties::new(last_n, repeat, freq, pres);
        let history: Vec<u32> = (0..(rng.next_u64() % 40))
            .map(|_| (rng.next_u64() % n.min(30)) as u32)
            .collect();
        for &t in &history {
            pen.accept(t);
        }
        let start = history.len().saturating_sub(last_n);
        let window = history.get(start..).unwrap_or(&[]);
        let mut c = Candidates::from_logits(&logits).unwrap();
        pen.apply(&mut c).unwrap();
        for cand in c.as_slice() {
            let orig = logits[cand.id as usize];
            let count = window.iter().filter(|&&t| t == cand.id).count() as f32;
            if count == 0.0 {
                assert_eq!(cand.logit, orig);
            } else {
                let scaled = if orig <= 0.0 {
                    orig * repeat
                } else {
                    orig / repeat
                };
                let want = scaled - (count * freq + pres);
                assert!((cand.logit - want).abs() < 1e-5);
                assert!(cand.logit < orig);
            }
        }
    }
}

#[test]
fn same_seed_same_tokens_different_seed_different_tokens() {
    let mut rng = Rng::new(7);
    let mut differed = 0;
    for case in 0..50 {
        let logits = random_logits(&mut rng);
        let cfg = |seed| SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            min_p: 0.0,
            top_p: 1.0,
            repeat_penalty: 1.3,
            seed,
            ..SamplerConfig::default()
        };
        let run = |seed: u64| {
            let mut s = Sampler::new(cfg(seed)).unwrap();
            (0..40)
                .map(|_| {
                    let t = s.sample(&logits).unwrap();
                    s.accept(t);
                    t
                })
                .collect::<Vec<u32>>()
        };
        assert_eq!(run(case), run(case));
        if run(case) != run(case + 1000) {
            differed += 1;
        }
    }
    // Peaked cases may legitimately repeat one token; most must differ.
    assert!(differed > 25, "{differed}");
}

/// Draws `n` tokens and checks the frequencies against `want` with a
/// chi-square statistic (critical value for p = 1e-4 with `df` degrees of
/// freedom, passed in), and that tokens with zero probability never appear.
fn check_distribution(sampler: &mut Sampler, logits: &[f32], want: &[f64], n: usize, crit: f64) {
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n {
        counts[sampler.sample(logits).unwrap() as usize] += 1;
    }
    let mut chi2 = 0.0;
    for (i, (&c, &p)) in counts.iter().zip(want).enumerate() {
        if p == 0.0 {
            assert_eq!(c, 0, "token {i} has p=0 but was drawn");
            continue;
        }
        let e = p * n as f64;
        chi2 += (c as f64 - e).powi(2) / e;
        let freq = c as f64 / n as f64;
        assert!(
            (freq - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-4,
            "token {i}: {freq} vs {p}"
        );
    }
    assert!(
        chi2 < crit,
        "chi2 {chi2} >= {crit}; counts {counts:?}, want {want:?}"
    );
}

const LOGITS: [f32; 6] = [1.2, -0.3, 2.1, 0.4, 1.9, -1.5];
const DRAWS: usize = 200_000;

#[test]
fn draws_follow_softmax_over_temperature() {
    for (t, seed) in [(1.0f32, 11u64), (0.7, 12), (1.8, 13)] {
        let scaled: Vec<f32> = LOGITS.iter().map(|l| l / t).collect();
        let want = softmax(&scaled);
        let mut s = Sampler::new(plain(t, seed)).unwrap();
        // df = 5: chi-square critical value at p = 1e-4 is 25.7.
        check_distribution(&mut s, &LOGITS, &want, DRAWS, 25.7);
    }
}

#[test]
fn draws_follow_renormalized_top_k_and_top_p() {
    let t = 0.9f32;
    let scaled: Vec<f32> = LOGITS.iter().map(|l| l / t).collect();
    let renorm = |keep: &[usize]| {
        let p = softmax(&scaled);
        let z: f64 = keep.iter().map(|&i| p[i]).sum();
        (0..LOGITS.len())
            .map(|i| if keep.contains(&i) { p[i] / z } else { 0.0 })
            .collect::<Vec<f64>>()
    };
    // top-k 3: tokens 2, 4, 0.
    let mut s = Sampler::new(SamplerConfig {
        top_k: 3,
        ..plain(t, 21)
    })
    .unwrap();
    check_distribution(&mut s, &LOGITS, &renorm(&[2, 4, 0]), DRAWS, 18.5);
    // top-p 0.8 on the raw logits (before temperature, as in llama.cpp):
    // raw probabilities sorted: 2, 4, 0, 3, ...; find the nucleus exactly.
    let raw = softmax(&LOGITS);
    let mut order: Vec<usize> = (0..LOGITS.len()).collect();
    order.sort_by(|&a, &b| raw[b].total_cmp(&raw[a]));
    let mut keep = Vec::new();
    let mut cum = 0.0;
    for &i in &order {
        keep.push(i);
        cum += raw[i];
        if cum >= 0.8 {
            break;
        }
    }
    assert!(keep.len() >= 2 && keep.len() < LOGITS.len());
    let mut s = Sampler::new(SamplerConfig {
        top_p: 0.8,
        ..plain(t, 22)
    })
    .unwrap();
    let crit = [0.0, 15.1, 18.5, 21.1, 23.5, 25.7][keep.len() - 1];
    check_distribution(&mut s, &LOGITS, &renorm(&keep), DRAWS, crit);
}

#[test]
fn min_p_uses_raw_logits_before_temperature() {
    // Raw: p(2)/p(4) = e^-0.2 ~ 0.82, p(0)/p(2) = e^-0.9 ~ 0.41. min_p 0.5 keeps
    // {2, 4} whatever the temperature applied afterwards.
    let mut s = Sampler::new(SamplerConfig {
        min_p: 0.5,
        ..plain(5.0, 31)
    })
    .unwrap();
    let c = s.candidates(&LOGITS).unwrap();
    let mut kept = ids(&c);
    kept.sort_unstable();
    assert_eq!(kept, [2, 4]);
}

#[test]
fn constraint_and_bias_errors_never_panic() {
    let mut s = Sampler::new(SamplerConfig {
        logit_bias: vec![(0, f32::NEG_INFINITY), (1, f32::NEG_INFINITY)],
        ..SamplerConfig::default()
    })
    .unwrap();
    assert_eq!(s.sample(&[0.5, 0.7]), Err(SamplerError::NoCandidates));
    assert!(matches!(
        s.sample(&[0.5, f32::NAN]),
        Err(SamplerError::BadLogit { token: 1, .. })
    ));
    // The remaining token is always chosen.
    assert_eq!(s.sample(&[0.5, 0.7, -3.0]), Ok(2));
}

#[test]
fn chain_order_is_bias_penalties_then_truncation() {
    // Token 2 is the best; a repeat penalty on it (applied before top-k)
    // hands top-k 1 to token 4; a bias (applied first) can hand it back.
    let cfg = SamplerConfig {
        top_k: 1,
        repeat_penalty: 2.0,
        ..plain(1.0, 41)
    };
    let mut s = Sampler::new(cfg.clone()).unwrap();
    assert_eq!(s.sample(&LOGITS).unwrap(), 2);
    s.accept(2);
    assert_eq!(s.sample(&LOGITS).unwrap(), 4);
    s.reset();
    assert_eq!(s.sample(&LOGITS).unwrap(), 2);
    let mut s = Sampler::new(SamplerConfig {
        logit_bias: vec![(5, 10.0)],
        ..cfg
    })
    .unwrap();
    s.accept(2);
    assert_eq!(s.sample(&LOGITS).unwrap(), 5);
}
