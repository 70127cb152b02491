//! Random-weight models: GGUF files with the metadata keys, tensor names,
//! shapes and quantization mixes llama.cpp expects for an architecture, and
//! seeded random weights (same seed, same bytes).
//!
//! ```
//! use wasm_chord_runtime::synth::{self, SynthSpec};
//!
//! let spec = SynthSpec::new(Some("qwen3"), "tiny", "q8_0", 7).unwrap();
//! let bytes = synth::generate(&spec).unwrap();
//! let file = wasm_chord_core::gguf::GgufFile::from_bytes(bytes).unwrap();
//! assert_eq!(file.metadata().get_str("general.architecture").unwrap(), "qwen3");
//! ```
//!
//! Weights are normal with standard deviation `1/sqrt(fan_in)` (so that
//! activations and logits stay of order one), norms `1 ± 0.1`, biases
//! `± 0.1`. Each tensor has its own random stream derived from the seed and
//! its name. The whole file is built in memory before it is written (the
//! GGUF writer needs every tensor's size first): about the size of the output
//! file (e.g. ~5 GB for `llama-8b` in `q4_k_m`).

mod iq4;
mod mix;
mod presets;
mod rng;
mod vocab;

pub use mix::{Mix, Role, MIX_NAMES};
pub use presets::{llama3_rope_freqs, preset, tiny, Llama3Rope, Shape, PRESETS};
pub use rng::Rng;

use crate::config::{Arch, SUPPORTED};
use std::io::Write;
use wasm_chord_core::gguf::{GgufError, GgufWriter, Metadata, Value};
use wasm_chord_core::quant::QuantError;
use wasm_chord_core::GgmlType;

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// The architecture is not one the runtime implements.
    #[error("unknown architecture `{0}` (supported: {list})", list = SUPPORTED.join(", "))]
    UnknownArch(String),
    /// No preset of that name (for that architecture).
    #[error("unknown preset `{preset}`{for_arch} (presets: {list})", list = PRESETS.join(", "))]
    UnknownPreset {
        /// The preset asked for.
        preset: String,
        /// ` for ARCH` when an architecture was given.
        for_arch: String,
    },
    /// No quantization mix of that name.
    #[error("unknown type mix `{0}` (mixes: {list})", list = MIX_NAMES.join(", "))]
    UnknownMix(String),
    /// A self-made vocabulary must hold the specials and the 256 bytes.
    #[error("a vocabulary of {0} tokens is too small (at least 259)")]
    VocabTooSmall(usize),
    /// The vocabulary file has no `tokenizer.ggml.tokens`.
    #[error("the vocabulary file has no tokenizer.ggml.tokens")]
    NoVocabulary,
    /// The shape is inconsistent (e.g. heads that do not divide).
    #[error("bad shape: {0}")]
    BadShape(String),
    /// Writing the GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Quantizing a tensor failed.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// Shapes and hyper-parameters.
    pub shape: Shape,
    /// Quantization mix.
    pub mix: Mix,
    /// Random seed.
    pub seed: u64,
    /// `tokenizer.*` keys to copy (their vocabulary size wins over the
    /// shape's); `None`: a self-made vocabulary of `shape.n_vocab` tokens.
    pub vocab: Option<Metadata>,
    /// `general.name`.
    pub name: String,
}

impl SynthSpec {
    /// The spec for an architecture name (optional for real-model presets),
    /// a preset name and a mix name, with a self-made vocabulary.
    pub fn new(
        arch: Option<&str>,
        preset_name: &str,
        mix: &str,
        seed: u64,
    ) -> Result<Self, SynthError> {
        let arch = arch
            .map(|a| Arch::from_name(a).map_err(|_| SynthError::UnknownArch(a.to_owned())))
            .transpose()?;
        let shape = preset(preset_name, arch).ok_or_else(|| SynthError::UnknownPreset {
            preset: preset_name.to_owned(),
            for_arch: arch
                .map(|a| format!(" for {}", a.name()))
                .unwrap_or_default(),
        })?;
        let mix = Mix::parse(mix).ok_or_else(|| SynthError::UnknownMix(mix.to_owned()))?;
        // No architecture in the name: llama.cpp keys vocabulary fix-ups on
        // model names (a name with "phi3" asks for Phi-3's special tokens).
        let name = format!("wasm-chord synth {preset_name} {}", mix.name());
        Ok(Self {
            shape,
            mix,
            seed,
            vocab: None,
            name,
        })
    }

    /// Uses the `tokenizer.*` keys of `source` (a vocabulary GGUF's metadata).
    pub fn with_vocab(mut self, source: &Metadata) -> Result<Self, SynthError> {
        let (md, n) = vocab::copied(source)?;
        self.shape.n_vocab = n;
        self.vocab = Some(md);
        Ok(self)
    }
}

/// One tensor to generate.
struct Planned {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    init: Init,
}

#[derive(Clone, Copy)]
enum Init {
    /// Normal, std `1/sqrt(fan_in)`.
    Matrix,
    /// `1 + 0.1 N(0,1)`.
    Norm,
    /// `0.1 N(0,1)`.
    Bias,
    /// Llama 3 RoPE factors.
    RopeFreqs,
}

fn check(shape: &Shape) -> Result<(), SynthError> {
    let s = shape;
    let bad = |m: &str| Err(SynthError::BadShape(m.to_owned()));
    if [
        s.n_layer,
        s.n_embd,
        s.n_head,
        s.n_head_kv,
        s.head_dim,
        s.n_ff,
        s.n_vocab,
    ]
    .contains(&0)
    {
        return bad("zero dimension");
    }
    if !s.n_head.is_multiple_of(s.n_head_kv) {
        return bad("KV heads do not divide the query heads");
    }
    if !s.head_dim.is_multiple_of(2) {
        return bad("odd head dimension");
    }
    if matches!(s.arch, Arch::Qwen2 | Arch::Phi3) && s.n_head * s.head_dim != s.n_embd {
        return bad("qwen2 and phi3 need n_head * head_dim == n_embd");
    }
    if matches!(s.arch, Arch::Gemma | Arch::Gemma2) && !s.tied {
        return bad("gemma and gemma2 always tie the output to the embeddings");
    }
    Ok(())
}

fn plan(s: &Shape, mix: Mix) -> Vec<Planned> {
    let (e, qw, kvw, ff, nv) = (
        s.n_embd as u64,
        (s.n_head * s.head_dim) as u64,
        (s.n_head_kv * s.head_dim) as u64,
        s.n_ff as u64,
        s.n_vocab as u64,
    );
    let nl = s.n_layer;
    let mut out = Vec::new();
    let mat = |out: &mut Vec<Planned>, name: String, dims: [u64; 2], role: Role, il: usize| {
        let ty = mix.type_for(role, il, nl, dims[0], s.tied);
        out.push(Planned {
            name,
            dims: dims.to_vec(),
            ty,
            init: Init::Matrix,
        });
    };
    let vec1 = |out: &mut Vec<Planned>, name: String, n: u64, init: Init| {
        out.push(Planned {
            name,
            dims: vec![n],
            ty: GgmlType::F32,
            init,
        });
    };
    mat(
        &mut out,
        "token_embd.weight".into(),
        [e, nv],
        Role::TokenEmbd,
        0,
    );
    if s.llama3_rope.is_some() {
        vec1(
            &mut out,
            "rope_freqs.weight".into(),
            (s.head_dim / 2) as u64,
            Init::RopeFreqs,
        );
    }
    for il in 0..nl {
        let n = |t: &str| format!("blk.{il}.{t}.weight");
        vec1(&mut out, n("attn_norm"), e, Init::Norm);
        if s.arch == Arch::Phi3 {
            mat(
                &mut out,
                n("attn_qkv"),
                [e, qw + 2 * kvw],
                Role::AttnQkv,
                il,
            );
        } else {
            mat(&mut out, n("attn_q"), [e, qw], Role::AttnQ, il);
            mat(&mut out, n("attn_k"), [e, kvw], Role::AttnK, il);
            mat(&mut out, n("attn_v"), [e, kvw], Role::AttnV, il);
        }
        if s.arch == Arch::Qwen2 {
            for (t, w) in [("attn_q", qw), ("attn_k", kvw), ("attn_v", kvw)] {
                vec1(&mut out, format!("blk.{il}.{t}.bias"), w, Init::Bias);
            }
        }
        if matches!(s.arch, Arch::Qwen3 | Arch::Gemma3) {
            vec1(&mut out, n("attn_q_norm"), s.head_dim as u64, Init::Norm);
            vec1(&mut out, n("attn_k_norm"), s.head_dim as u64, Init::Norm);
        }
        mat(&mut out, n("attn_output"), [qw, e], Role::AttnOut, il);
        let post = matches!(s.arch, Arch::Gemma2 | Arch::Gemma3);
        if post {
            vec1(&mut out, n("post_attention_norm"), e, Init::Norm);
        }
        vec1(&mut out, n("ffn_norm"), e, Init::Norm);
        if s.arch == Arch::Phi3 {
            mat(&mut out, n("ffn_up"), [e, 2 * ff], Role::FfnUp, il);
        } else {
            mat(&mut out, n("ffn_gate"), [e, ff], Role::FfnGate, il);
            mat(&mut out, n("ffn_up"), [e, ff], Role::FfnUp, il);
        }
        mat(&mut out, n("ffn_down"), [ff, e], Role::FfnDown, il);
        if post {
            vec1(&mut out, n("post_ffw_norm"), e, Init::Norm);
        }
    }
    vec1(&mut out, "output_norm.weight".into(), e, Init::Norm);
    if !s.tied {
        mat(&mut out, "output.weight".into(), [e, nv], Role::Output, nl);
    }
    out
}

fn hparams(spec: &SynthSpec, md: &mut Metadata) {
    let s = &spec.shape;
    let a = s.arch.name();
    let k = |key: &str| format!("{a}.{key}");
    let u = |v: usize| Value::U32(v as u32);
    md.insert("general.architecture", Value::String(a.into()));
    md.insert("general.name", Value::String(spec.name.clone()));
    md.insert("general.file_type", Value::U32(spec.mix.file_type()));
    if spec.mix.is_quantized() {
        md.insert("general.quantization_version", Value::U32(2));
    }
    md.insert(k("context_length"), Value::U32(s.n_ctx_train));
    md.insert(k("embedding_length"), u(s.n_embd));
    md.insert(k("block_count"), u(s.n_layer));
    md.insert(k("feed_forward_length"), u(s.n_ff));
    md.insert(k("attention.head_count"), u(s.n_head));
    md.insert(k("attention.head_count_kv"), u(s.n_head_kv));
    md.insert(k("attention.key_length"), u(s.head_dim));
    md.insert(k("attention.value_length"), u(s.head_dim));
    md.insert(k("rope.dimension_count"), u(s.head_dim));
    md.insert(k("rope.freq_base"), Value::F32(s.rope_base));
    md.insert(k("attention.layer_norm_rms_epsilon"), Value::F32(s.rms_eps));
    if let Some(b) = s.rope_base_swa {
        md.insert(k("rope.freq_base_swa"), Value::F32(b));
    }
    if let Some(w) = s.sliding_window {
        md.insert(k("attention.sliding_window"), Value::U32(w));
    }
    if let Some(p) = s.swa_pattern {
        md.insert(k("attention.sliding_window_pattern"), Value::U32(p));
    }
    if let Some(c) = s.attn_softcap {
        md.insert(k("attn_logit_softcapping"), Value::F32(c));
    }
    if let Some(c) = s.final_softcap {
        md.insert(k("final_logit_softcapping"), Value::F32(c));
    }
}

/// Rows generated (and quantized) at a time, to bound the f32 scratch.
const CHUNK_VALUES: usize = 1 << 20;

fn fill(spec: &SynthSpec, t: &Planned) -> Result<Vec<u8>, SynthError> {
    let s = &spec.shape;
    let ncols = t.dims.first().copied().unwrap_or(1) as usize;
    let nrows: usize = t.dims.iter().skip(1).map(|&d| d as usize).product();
    let row_bytes =
        t.ty.row_bytes(ncols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| SynthError::BadShape(format!("{}: rows of {ncols}", t.name)))?;
    let mut out = vec![0u8; row_bytes * nrows];
    if let Init::RopeFreqs = t.init {
        let r = s
            .llama3_rope
            .as_ref()
            .ok_or_else(|| SynthError::BadShape("no rope scaling".into()))?;
        let f = llama3_rope_freqs(r, s.rope_base, s.head_dim);
        wasm_chord_core::quant::quantize(GgmlType::F32, &f, &mut out)?;
        return Ok(out);
    }
    let (mean, std) = match t.init {
        Init::Matrix => (0.0, 1.0 / (ncols as f32).sqrt()),
        Init::Norm => (1.0, 0.1),
        Init::Bias | Init::RopeFreqs => (0.0, 0.1),
    };
    let chunk_rows = (CHUNK_VALUES / ncols).max(1);
    let chunks: Vec<(usize, &mut [u8])> =
        out.chunks_mut(chunk_rows * row_bytes).enumerate().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len())
        .max(1);
    let mut per_thread: Vec<Vec<(usize, &mut [u8])>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, c) in chunks {
        if let Some(v) = per_thread.get_mut(i % threads) {
            v.push((i, c));
        }
    }
    let (seed, ty, name) = (spec.seed, t.ty, &t.name);
    let work = move |chunks: Vec<(usize, &mut [u8])>| -> Result<(), SynthError> {
        let mut buf = Vec::new();
        for (i, dst) in chunks {
            let rows = dst.len() / row_bytes;
            buf.resize(rows * ncols, 0.0f32);
            Rng::new(seed, &format!("{name}#{i}")).fill_normal(&mut buf, mean, std);
            if iq4::encode(ty, &buf, dst).is_none() {
                wasm_chord_core::quant::quantize(ty, &buf, dst)?;
            }
        }
        Ok(())
    };
    if threads == 1 {
        // Also the path on targets without threads (wasm32), where
        // spawning panics.
        for chunks in per_thread {
            work(chunks)?;
        }
        return Ok(out);
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = per_thread
            .into_iter()
            .map(|chunks| sc.spawn(move || work(chunks)))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    Ok(out)
}

/// The GGUF writer holding the whole model.
pub fn build(spec: &SynthSpec) -> Result<GgufWriter, SynthError> {
    check(&spec.shape)?;
    let mut md = Metadata::new();
    hparams(spec, &mut md);
    let tokenizer = match &spec.vocab {
        Some(v) => v.clone(),
        None => vocab::self_made(spec.shape.n_vocab)?,
    };
    for (k, v) in tokenizer.iter() {
        md.insert(k, v.clone());
    }
    let mut w = GgufWriter::new();
    w.set_metadata(md);
    for t in plan(&spec.shape, spec.mix) {
        let data = fill(spec, &t)?;
        w.add_tensor(t.name, &t.dims, t.ty, data)?;
    }
    Ok(w)
}

/// Writes the model to `out`.
pub fn write(spec: &SynthSpec, out: impl Write) -> Result<(), SynthError> {
    build(spec)?.write_to(out)?;
    Ok(())
}

/// The model as bytes.
pub fn generate(spec: &SynthSpec) -> Result<Vec<u8>, SynthError> {
    Ok(build(spec)?.to_bytes()?)
}

#[cfg(test)]
mod tests;
