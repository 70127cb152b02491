//! Model shapes: real models' (same tensor shapes, so same bytes and speed)
//! and a `tiny` one per architecture for fast tests.

use crate::config::Arch;

/// Llama 3 RoPE frequency scaling, written as the `rope_freqs.weight` tensor
/// the way llama.cpp's converter computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Rope {
    /// Scaling factor of the low frequencies.
    pub factor: f64,
    /// `low_freq_factor`.
    pub low_freq_factor: f64,
    /// `high_freq_factor`.
    pub high_freq_factor: f64,
    /// `original_max_position_embeddings`.
    pub original_context: f64,
}

/// Everything that decides a model's tensors and hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Architecture (`general.architecture`).
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// Vocabulary size (replaced by the vocabulary file's, when one is given).
    pub n_vocab: usize,
    /// Training context length.
    pub n_ctx_train: u32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE θ.
    pub rope_base: f32,
    /// RoPE θ of sliding-window layers (Gemma 3).
    pub rope_base_swa: Option<f32>,
    /// Sliding-window width.
    pub sliding_window: Option<u32>,
    /// Every `n`-th layer is global (Gemma 2/3).
    pub swa_pattern: Option<u32>,
    /// Attention logit soft-cap (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Final logit soft-cap (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Output projection tied to the embeddings (no `output.weight`).
    pub tied: bool,
    /// Llama 3 RoPE scaling (`rope_freqs.weight`).
    pub llama3_rope: Option<Llama3Rope>,
}

/// Names of the presets, for help texts and errors.
pub const PRESETS: &[&str] = &["tiny", "gemma3-270m", "llama-1b", "qwen2-0.5b", "llama-8b"];

fn base(arch: Arch) -> Shape {
    Shape {
        arch,
        n_layer: 2,
        n_embd: 256,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_ff: 512,
        n_vocab: 512,
        n_ctx_train: 4096,
        rms_eps: 1e-5,
        rope_base: 10000.0,
        rope_base_swa: None,
        sliding_window: None,
        swa_pattern: None,
        attn_softcap: None,
        final_softcap: None,
        tied: true,
        llama3_rope: None,
    }
}

/// The `tiny` shape of `arch`: 2 layers, 256 wide (so that every K-quant
/// fits a row), 4 query heads over fewer KV heads, a 512-token vocabulary;
/// sliding windows of 4 so that a 16-token test crosses them.
pub fn tiny(arch: Arch) -> Shape {
    let b = base(arch);
    match arch {
        Arch::Llama => Shape {
            tied: false,
            rope_base: 500000.0,
            llama3_rope: Some(Llama3Rope {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context: 8192.0,
            }),
            ..b
        },
        Arch::Mistral => Shape { tied: false, ..b },
        Arch::Qwen2 => Shape {
            rms_eps: 1e-6,
            rope_base: 1_000_000.0,
            ..b
        },
        Arch::Qwen3 => Shape {
            head_dim: 128,
            rms_eps: 1e-6,
            rope_base: 1_000_000.0,
            ..b
        },
        Arch::Gemma => Shape {
            n_head_kv: 1,
            rms_eps: 1e-6,
            ..b
        },
        Arch::Gemma2 => Shape {
            head_dim: 128,
            rms_eps: 1e-6,
            sliding_window: Some(4),
            swa_pattern: Some(2),
            attn_softcap: Some(50.0),
            final_softcap: Some(30.0),
            ..b
        },
        Arch::Gemma3 => Shape {
            n_head_kv: 1,
            head_dim: 128,
            rms_eps: 1e-6,
            rope_base: 1_000_000.0,
            rope_base_swa: Some(10000.0),
            sliding_window: Some(4),
            swa_pattern: Some(2),
            ..b
        },
        Arch::Phi3 => Shape { tied: false, ..b },
    }
}

/// A preset by name; `arch` is required for `tiny` and must agree with the
/// architecture of a real model's preset when given.
pub fn preset(name: &str, arch: Option<Arch>) -> Option<Shape> {
    let real = match name {
        "tiny" => return arch.map(tiny),
        "gemma3-270m" => Shape {
            n_layer: 18,
            n_embd: 640,
            n_head: 4,
            n_head_kv: 1,
            head_dim: 256,
            n_ff: 2048,
            n_vocab: 262144,
            n_ctx_train: 32768,
            rms_eps: 1e-6,
            rope_base: 1_000_000.0,
            rope_base_swa: Some(10000.0),
            sliding_window: Some(512),
            swa_pattern: Some(6),
            ..base(Arch::Gemma3)
        },
        "llama-1b" => Shape {
            n_layer: 16,
            n_embd: 2048,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 64,
            n_ff: 8192,
            n_vocab: 128256,
            n_ctx_train: 131072,
            rope_base: 500000.0,
            llama3_rope: Some(Llama3Rope {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context: 8192.0,
            }),
            ..base(Arch::Llama)
        },
        "qwen2-0.5b" => Shape {
            n_layer: 24,
            n_embd: 896,
            n_head: 14,
            n_head_kv: 2,
            head_dim: 64,
            n_ff: 4864,
            n_vocab: 151936,
            n_ctx_train: 32768,
            rms_eps: 1e-6,
            rope_base: 1_000_000.0,
            ..base(Arch::Qwen2)
        },
        "llama-8b" => Shape {
            n_layer: 32,
            n_embd: 4096,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 128,
            n_ff: 14336,
            n_vocab: 128256,
            n_ctx_train: 131072,
            rope_base: 500000.0,
            tied: false,
            llama3_rope: Some(Llama3Rope {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context: 8192.0,
            }),
            ..base(Arch::Llama)
        },
        _ => return None,
    };
    match arch {
        Some(a) if a != real.arch => None,
        _ => Some(real),
    }
}

/// llama.cpp's converter's `rope_freqs` for Llama 3 scaling.
pub fn llama3_rope_freqs(r: &Llama3Rope, base: f32, head_dim: usize) -> Vec<f32> {
    let low_wavelen = r.original_context / r.low_freq_factor;
    let high_wavelen = r.original_context / r.high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            // torch computes the frequencies in f32.
            let exponent = (2 * i) as f32 / head_dim as f32;
            let freq = 1.0 / base.powf(exponent);
            let wavelen = std::f64::consts::TAU / f64::from(freq);
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                r.factor
            } else {
                let smooth = (r.original_context / wavelen - r.low_freq_factor)
                    / (r.high_freq_factor - r.low_freq_factor);
                1.0 / ((1.0 - smooth) / r.factor + smooth)
            };
            f as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_and_check_the_architecture() {
        assert!(preset("tiny", None).is_none());
        assert_eq!(preset("tiny", Some(Arch::Qwen3)).unwrap().head_dim, 128);
        assert_eq!(preset("llama-1b", None).unwrap().n_vocab, 128256);
        assert!(preset("llama-1b", Some(Arch::Gemma3)).is_none());
        assert!(preset("nope", Some(Arch::Llama)).is_none());
        for p in PRESETS.iter().filter(|p| **p != "tiny") {
            assert!(preset(p, None).is_some(), "{p}");
        }
    }

    #[test]
    fn llama3_factors_span_one_to_factor() {
        let r = Llama3Rope {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192.0,
        };
        let f = llama3_rope_freqs(&r, 500000.0, 64);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[31], 32.0);
        assert!(f.iter().any(|&x| x > 1.0 && x < 32.0));
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
    }
}
