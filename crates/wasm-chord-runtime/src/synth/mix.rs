//! Which ggml type each tensor gets: llama-quantize's Q4_K_M choices
//! (`llama_tensor_get_type` in llama.cpp's `src/llama-quant.cpp`), or one
//! type for every matrix (like `llama-quantize --pure`), with llama.cpp's
//! fallback when a row is not a whole number of blocks. One-dimensional
//! tensors (norms, biases, `rope_freqs`) always stay F32.

use wasm_chord_core::GgmlType;

/// A quantization mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Every matrix in one type.
    Pure(GgmlType),
    /// llama-quantize's `Q4_K_M`.
    Q4KM,
}

/// What a matrix is, for the mix rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `token_embd.weight`.
    TokenEmbd,
    /// `output.weight`.
    Output,
    /// `attn_q`.
    AttnQ,
    /// `attn_k`.
    AttnK,
    /// `attn_v`.
    AttnV,
    /// Fused `attn_qkv` (Phi-3).
    AttnQkv,
    /// `attn_output`.
    AttnOut,
    /// `ffn_gate`.
    FfnGate,
    /// `ffn_up` (fused gate+up for Phi-3).
    FfnUp,
    /// `ffn_down`.
    FfnDown,
}

/// Names accepted by [`Mix::parse`].
pub const MIX_NAMES: &[&str] = &[
    "q4_k_m", "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k",
    "q5_k", "q6_k", "iq4_nl", "iq4_xs",
];

const PURE: &[(&str, GgmlType, u32)] = &[
    ("f32", GgmlType::F32, 0),
    ("f16", GgmlType::F16, 1),
    ("bf16", GgmlType::BF16, 32),
    ("q4_0", GgmlType::Q4_0, 2),
    ("q4_1", GgmlType::Q4_1, 3),
    ("q5_0", GgmlType::Q5_0, 8),
    ("q5_1", GgmlType::Q5_1, 9),
    ("q8_0", GgmlType::Q8_0, 7),
    ("q2_k", GgmlType::Q2_K, 10),
    ("q3_k", GgmlType::Q3_K, 11),
    ("q4_k", GgmlType::Q4_K, 14),
    ("q5_k", GgmlType::Q5_K, 16),
    ("q6_k", GgmlType::Q6_K, 18),
    ("iq4_nl", GgmlType::IQ4_NL, 25),
    ("iq4_xs", GgmlType::IQ4_XS, 30),
];

impl Mix {
    /// A mix by name (`q4_k_m`, or a ggml type name in lower case).
    pub fn parse(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        if n == "q4_k_m" {
            return Some(Mix::Q4KM);
        }
        PURE.iter().find(|p| p.0 == n).map(|p| Mix::Pure(p.1))
    }

    /// The name [`Mix::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q4KM => "q4_k_m",
            Mix::Pure(t) => PURE.iter().find(|p| p.1 == t).map_or("?", |p| p.0),
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            Mix::Q4KM => 15,
            Mix::Pure(t) => PURE.iter().find(|p| p.1 == t).map_or(0, |p| p.2),
        }
    }

    /// Whether any matrix is block-quantized.
    pub fn is_quantized(self) -> bool {
        !matches!(
            self,
            Mix::Pure(GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
        )
    }

    /// The type of a matrix with rows of `ncols` in layer `layer` of
    /// `n_layer` (`tied`: the embeddings double as the output projection).
    pub fn type_for(
        self,
        role: Role,
        layer: usize,
        n_layer: usize,
        ncols: u64,
        tied: bool,
    ) -> GgmlType {
        let t = match self {
            Mix::Pure(t) => t,
            Mix::Q4KM => q4_k_m(role, layer, n_layer, ncols, tied),
        };
        fallback(t, ncols)
    }
}

/// llama.cpp's `use_more_bits`.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

fn q4_k_m(role: Role, layer: usize, n_layer: usize, ncols: u64, tied: bool) -> GgmlType {
    match role {
        Role::Output => output_type(ncols),
        Role::TokenEmbd if tied => output_type(ncols),
        // Counted once per layer (one attn_v or attn_qkv each).
        Role::AttnV | Role::AttnQkv | Role::FfnDown if use_more_bits(layer, n_layer) => {
            GgmlType::Q6_K
        }
        _ => GgmlType::Q4_K,
    }
}

fn output_type(ncols: u64) -> GgmlType {
    if !ncols.is_multiple_of(GgmlType::Q4_K.block_size() as u64) {
        GgmlType::Q8_0
    } else {
        GgmlType::Q6_K
    }
}

/// llama.cpp's `tensor_type_fallback`.
fn fallback(t: GgmlType, ncols: u64) -> GgmlType {
    if ncols.is_multiple_of(t.block_size() as u64) {
        return t;
    }
    let r = match t {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        GgmlType::IQ4_XS => GgmlType::IQ4_NL,
        other => other,
    };
    if !ncols.is_multiple_of(r.block_size() as u64) {
        GgmlType::F16
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in MIX_NAMES {
            assert_eq!(Mix::parse(n).unwrap().name(), *n);
        }
        assert!(Mix::parse("iq2_xs").is_none());
    }

    #[test]
    fn q4_k_m_follows_llama_quantize() {
        let m = Mix::Q4KM;
        // 16 layers: more bits for 0, 1, 4, 7, 10, 13, 14, 15.
        let more: Vec<usize> = (0..16).filter(|&i| use_more_bits(i, 16)).collect();
        assert_eq!(more, [0, 1, 4, 7, 10, 13, 14, 15]);
        assert_eq!(m.type_for(Role::AttnV, 4, 16, 2048, true), GgmlType::Q6_K);
        assert_eq!(m.type_for(Role::AttnV, 5, 16, 2048, true), GgmlType::Q4_K);
        assert_eq!(m.type_for(Role::FfnDown, 0, 16, 8192, true), GgmlType::Q6_K);
        assert_eq!(m.type_for(Role::AttnQ, 0, 16, 2048, true), GgmlType::Q4_K);
        assert_eq!(
            m.type_for(Role::TokenEmbd, 0, 16, 2048, true),
            GgmlType::Q6_K
        );
        assert_eq!(
            m.type_for(Role::TokenEmbd, 0, 16, 4096, false),
            GgmlType::Q4_K
        );
        assert_eq!(m.type_for(Role::Output, 0, 16, 4096, false), GgmlType::Q6_K);
        // Gemma 3 270M (640 wide): what the real Q4_K_M file holds.
        assert_eq!(
            m.type_for(Role::TokenEmbd, 0, 18, 640, true),
            GgmlType::Q8_0
        );
        assert_eq!(m.type_for(Role::AttnQ, 2, 18, 640, true), GgmlType::Q5_0);
        assert_eq!(m.type_for(Role::AttnV, 0, 18, 640, true), GgmlType::Q8_0);
        assert_eq!(m.type_for(Role::AttnOut, 2, 18, 1024, true), GgmlType::Q4_K);
    }

    #[test]
    fn fallback_matches_llama_cpp() {
        assert_eq!(fallback(GgmlType::Q2_K, 96), GgmlType::Q4_0);
        assert_eq!(fallback(GgmlType::Q5_K, 96), GgmlType::Q5_1);
        assert_eq!(fallback(GgmlType::Q6_K, 96), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::Q4_0, 48), GgmlType::F16);
        assert_eq!(fallback(GgmlType::F32, 7), GgmlType::F32);
    }
}
