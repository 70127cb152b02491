//! Typed model configurations read from GGUF metadata, one constructor per
//! architecture. Model code reads these fields, never raw metadata keys.

use crate::error::{Result, RuntimeError};
use wasm_chord_core::backend::{GluKind, RopeKind};
use wasm_chord_core::gguf::{Metadata, Value};

/// Architectures this runtime implements (`general.architecture`).
pub const SUPPORTED: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
];

/// A supported architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3 (and Mistral files written as `llama`).
    Llama,
    /// Mistral.
    Mistral,
    /// Qwen 2 / 2.5 (QKV bias).
    Qwen2,
    /// Qwen 3 (QK-norm).
    Qwen3,
    /// Gemma.
    Gemma,
    /// Gemma 2 (soft-capping, alternating sliding window, post-norms).
    Gemma2,
    /// Gemma 3 (QK-norm, post-norms, local/global RoPE, sliding window).
    Gemma3,
    /// Phi-3 (fused QKV and gate-up).
    Phi3,
}

impl Arch {
    /// The architecture named by `general.architecture`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma" => Arch::Gemma,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            other => return Err(RuntimeError::UnsupportedArchitecture(other.to_owned())),
        })
    }

    /// The metadata prefix / name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma => "gemma",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }
}

/// Rotary embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Pairing of rotated dimensions.
    pub kind: RopeKind,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// θ for global-attention layers.
    pub freq_base: f32,
    /// θ for sliding-window layers (Gemma 3 uses a smaller one).
    pub freq_base_swa: f32,
    /// Linear position scale (1 / scaling factor).
    pub freq_scale: f32,
}

/// Everything the transformer needs to know about a model's shape and
/// numerics.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The architecture.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding table).
    pub n_vocab: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimension of each key/query head.
    pub head_dim: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rotary embedding.
    pub rope: RopeConfig,
    /// Multiplier of the token embeddings (Gemma: `sqrt(n_embd)`).
    pub embd_scale: f32,
    /// Multiplier of `q·k`.
    pub attn_scale: f32,
    /// Apply `attn_scale` to q before the `q·k` product (llama.cpp's Gemma
    /// and Phi-3 graphs) rather than to the scores.
    pub scale_q: bool,
    /// Attention score soft-cap (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Final-logit soft-cap (Gemma 2, optional in Gemma 3).
    pub final_softcap: Option<f32>,
    /// Sliding-window size for the layers marked in `swa_layers`.
    pub sliding_window: Option<u32>,
    /// Which layers use the sliding window.
    pub swa_layers: Vec<bool>,
    /// Per-head RMSNorm of Q and K (Qwen 3, Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm after attention and after the FFN (Gemma 2/3).
    pub post_norms: bool,
    /// Biases on Q, K and V (Qwen 2).
    pub qkv_bias: bool,
    /// One fused QKV weight (Phi-3).
    pub fused_qkv: bool,
    /// One fused gate+up weight (Phi-3).
    pub fused_gate_up: bool,
    /// FFN activation.
    pub glu: GluKind,
}

fn bad(key: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::BadConfig {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Reads arch-prefixed keys with checked conversions.
struct Keys<'a> {
    md: &'a Metadata,
    prefix: &'static str,
}

impl Keys<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.prefix)
    }

    fn count(&self, k: &str) -> Result<Option<usize>> {
        let key = self.key(k);
        match self.md.get(&key) {
            None => Ok(None),
            Some(Value::Array(_)) => Err(RuntimeError::UnsupportedFeature(format!(
                "per-layer values for `{key}`"
            ))),
            Some(_) => {
                let v = self.md.get_count(&key)?;
                usize::try_from(v)
                    .map(Some)
                    .map_err(|_| bad(&key, "too large"))
            }
        }
    }

    fn req_count(&self, k: &str) -> Result<usize> {
        let v = self.count(k)?.ok_or_else(|| {
            RuntimeError::Gguf(wasm_chord_core::gguf::GgufError::MissingKey(self.key(k)))
        })?;
        if v == 0 || v > 1 << 24 {
            return Err(bad(&self.key(k), format!("{v} is out of range")));
        }
        Ok(v)
    }

    fn float(&self, k: &str) -> Result<Option<f32>> {
        let key = self.key(k);
        match self.md.get(&key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|f| Some(f as f32))
                .ok_or_else(|| bad(&key, "not a float")),
        }
    }

    fn string(&self, k: &str) -> Result<Option<&str>> {
        let key = self.key(k);
        match self.md.get(&key) {
            None => Ok(None),
            Some(_) => Ok(Some(self.md.get_str(&key)?)),
        }
    }
}

impl ModelConfig {
    /// Reads the configuration of the architecture `general.architecture`
    /// names. `n_vocab` comes from the embedding table.
    pub fn from_metadata(md: &Metadata, n_vocab: usize) -> Result<Self> {
        let arch = Arch::from_name(md.get_str("general.architecture")?)?;
        let k = Keys {
            md,
            prefix: arch.name(),
        };
        let n_embd = k.req_count("embedding_length")?;
        let n_layer = k.req_count("block_count")?;
        let n_head = k.req_count("attention.head_count")?;
        let n_head_kv = k.count("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(bad(
                &k.key("attention.head_count_kv"),
                format!("{n_head_kv} does not divide {n_head} heads"),
            ));
        }
        let head_dim = match k.count("attention.key_length")? {
            Some(d) => d,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(bad(
                    &k.key("attention.head_count"),
                    "does not divide the hidden size",
                ))
            }
        };
        if let Some(vd) = k.count("attention.value_length")? {
            if vd != head_dim {
                return Err(RuntimeError::UnsupportedFeature(format!(
                    "value heads of {vd} with key heads of {head_dim}"
                )));
            }
        }
        let n_ff = k.req_count("feed_forward_length")?;
        let n_ctx_train = k.count("context_length")?.unwrap_or(2048);
        let rms_eps = k
            .float("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| {
                RuntimeError::Gguf(wasm_chord_core::gguf::GgufError::MissingKey(
                    k.key("attention.layer_norm_rms_epsilon"),
                ))
            })?;
        let n_rot = k.count("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(
                &k.key("rope.dimension_count"),
                format!("{n_rot} for heads of {head_dim}"),
            ));
        }
        let freq_base = k.float("rope.freq_base")?.unwrap_or(10000.0);
        let mut freq_scale = 1.0;
        match k.string("rope.scaling.type")? {
            None | Some("none") => {}
            Some("linear") => {
                let f = k
                    .float("rope.scaling.factor")?
                    .or(k.float("rope.scale_linear")?)
                    .unwrap_or(0.0);
                if f != 0.0 {
                    freq_scale = 1.0 / f;
                }
            }
            Some(other) => {
                return Err(RuntimeError::UnsupportedFeature(format!(
                    "rope scaling `{other}`"
                )))
            }
        }
        let is_gemma = matches!(arch, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3);
        let rope_kind = match arch {
            Arch::Llama | Arch::Mistral => RopeKind::Normal,
            _ => RopeKind::Neox,
        };
        // Sliding window: which layers, and how wide.
        let (sliding_window, swa_layers, freq_base_swa) = match arch {
            Arch::Gemma2 => {
                let w = k.count("attention.sliding_window")?.unwrap_or(4096);
                let pattern = k.count("attention.sliding_window_pattern")?.unwrap_or(2);
                (
                    Some(w),
                    swa_pattern(n_layer, pattern),
                    k.float("rope.freq_base_swa")?.unwrap_or(freq_base),
                )
            }
            Arch::Gemma3 => match k.count("attention.sliding_window")? {
                Some(w) if w > 0 => {
                    let pattern = k.count("attention.sliding_window_pattern")?.unwrap_or(6);
                    (
                        Some(w),
                        swa_pattern(n_layer, pattern),
                        k.float("rope.freq_base_swa")?.unwrap_or(10000.0),
                    )
                }
                _ => (None, vec![false; n_layer], freq_base),
            },
            Arch::Mistral => match k.count("attention.sliding_window")? {
                Some(w) if w > 0 => (Some(w), vec![true; n_layer], freq_base),
                _ => (None, vec![false; n_layer], freq_base),
            },
            // Phi-3: llama.cpp disables its sliding window; so do we.
            _ => (None, vec![false; n_layer], freq_base),
        };
        let sliding_window = sliding_window
            .map(|w| {
                u32::try_from(w).map_err(|_| bad(&k.key("attention.sliding_window"), "too large"))
            })
            .transpose()?;
        let attn_softcap = match arch {
            Arch::Gemma2 => Some(k.float("attn_logit_softcapping")?.unwrap_or(50.0)),
            _ => None,
        };
        let final_softcap = match arch {
            Arch::Gemma2 => Some(k.float("final_logit_softcapping")?.unwrap_or(30.0)),
            Arch::Gemma3 => k.float("final_logit_softcapping")?.filter(|&c| c != 0.0),
            _ => None,
        };
        Ok(ModelConfig {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope: RopeConfig {
                kind: rope_kind,
                n_rot,
                freq_base,
                freq_base_swa,
                freq_scale,
            },
            embd_scale: if is_gemma {
                (n_embd as f32).sqrt()
            } else {
                1.0
            },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            scale_q: is_gemma || arch == Arch::Phi3,
            attn_softcap,
            final_softcap,
            sliding_window,
            swa_layers,
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
            post_norms: matches!(arch, Arch::Gemma2 | Arch::Gemma3),
            qkv_bias: arch == Arch::Qwen2,
            fused_qkv: arch == Arch::Phi3,
            fused_gate_up: arch == Arch::Phi3,
            glu: if is_gemma {
                GluKind::GeluTanh
            } else {
                GluKind::Silu
            },
        })
    }

    /// Whether layer `il` uses the sliding window.
    pub fn is_swa(&self, il: usize) -> bool {
        self.sliding_window.is_some() && self.swa_layers.get(il).copied().unwrap_or(false)
    }

    /// Width of Q (all heads).
    pub fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of K or V (all KV heads).
    pub fn kv_width(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// llama.cpp's `set_swa_pattern(n)`: in every group of `n` layers, the last
/// one is global; `n == 0` or `1`... see the test for the exact mapping.
fn swa_pattern(n_layer: usize, n: usize) -> Vec<bool> {
    (0..n_layer).map(|il| n == 0 || il % n < n - 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swa_pattern_matches_llama_cpp() {
        // Gemma 3 (pattern 6): layers 5, 11, 17 are global.
        let p = swa_pattern(18, 6);
        let global: Vec<usize> = (0..18).filter(|&i| !p[i]).collect();
        assert_eq!(global, [5, 11, 17]);
        // Gemma 2 (pattern 2): even layers slide.
        assert_eq!(swa_pattern(4, 2), [true, false, true, false]);
        // Pattern 1: no sliding layer; pattern 0: all.
        assert_eq!(swa_pattern(3, 1), [false, false, false]);
        assert_eq!(swa_pattern(3, 0), [true, true, true]);
    }

    #[test]
    fn unknown_architecture_is_named_in_the_error() {
        let mut md = Metadata::new();
        md.insert("general.architecture", Value::String("mamba".into()));
        let e = ModelConfig::from_metadata(&md, 10).unwrap_err();
        assert!(
            matches!(e, RuntimeError::UnsupportedArchitecture(ref a) if a == "mamba"),
            "{e}"
        );
        assert!(e.to_string().contains("gemma3"));
    }
}
