//! Loading a model: configuration, then every weight uploaded once to the
//! backend, with shapes checked against the configuration.

use crate::config::ModelConfig;
use crate::error::{Result, RuntimeError};
use std::sync::Arc;
use wasm_chord_core::backend::{Backend, TensorBytes};
use wasm_chord_core::gguf::{GgufFile, TensorInfo};
use wasm_chord_core::GgmlType;

/// The weights of one transformer block.
pub(crate) struct Layer<B: Backend> {
    pub attn_norm: B::Weight,
    pub wq: B::Weight,
    pub wk: B::Weight,
    pub wv: B::Weight,
    pub bq: Option<B::Weight>,
    pub bk: Option<B::Weight>,
    pub bv: Option<B::Weight>,
    pub q_norm: Option<B::Weight>,
    pub k_norm: Option<B::Weight>,
    pub wo: B::Weight,
    pub attn_post_norm: Option<B::Weight>,
    pub ffn_norm: B::Weight,
    pub w_gate: B::Weight,
    pub w_up: B::Weight,
    pub w_down: B::Weight,
    pub ffn_post_norm: Option<B::Weight>,
}

/// A loaded model: read-only, shareable between sessions and threads.
pub struct Model<B: Backend> {
    /// The configuration read from the file.
    pub config: ModelConfig,
    pub(crate) backend: Arc<B>,
    pub(crate) file: Arc<GgufFile>,
    pub(crate) tok_embd: B::Weight,
    /// `None` when the output projection is tied to the embeddings.
    pub(crate) output: Option<B::Weight>,
    pub(crate) output_norm: B::Weight,
    pub(crate) layers: Vec<Layer<B>>,
    pub(crate) rope_freqs: Option<Vec<f32>>,
}

impl<B: Backend> std::fmt::Debug for Model<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

struct Loader<'a, B: Backend> {
    file: &'a Arc<GgufFile>,
    backend: &'a B,
}

impl<B: Backend> Loader<'_, B> {
    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.file
            .tensor(name)
            .ok_or_else(|| RuntimeError::MissingTensor(name.to_owned()))
    }

    fn check(&self, info: &TensorInfo, dims: &[usize]) -> Result<()> {
        let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        if info.dims != expected {
            return Err(RuntimeError::TensorShape {
                name: info.name.clone(),
                expected,
                found: info.dims.clone(),
            });
        }
        Ok(())
    }

    fn bytes(&self, info: &TensorInfo) -> Result<TensorBytes> {
        TensorBytes::new(self.file, info)
            .ok_or_else(|| RuntimeError::MissingTensor(info.name.clone()))
    }

    fn load(&self, name: &str, dims: &[usize]) -> Result<B::Weight> {
        let info = self.info(name)?;
        self.check(info, dims)?;
        Ok(self.backend.upload_weight(info, self.bytes(info)?)?)
    }

    fn load_opt(&self, name: &str, dims: &[usize]) -> Result<Option<B::Weight>> {
        if self.file.tensor(name).is_none() {
            return Ok(None);
        }
        self.load(name, dims).map(Some)
    }

    /// Splits a fused weight `[cols, sum(parts)]` into row ranges, without
    /// copying (rows are contiguous in GGUF).
    fn load_split(&self, name: &str, cols: usize, parts: &[usize]) -> Result<Vec<B::Weight>> {
        let info = self.info(name)?;
        let total: usize = parts.iter().sum();
        self.check(info, &[cols, total])?;
        let row_bytes = info
            .ggml_type
            .row_bytes(cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| RuntimeError::TensorShape {
                name: name.to_owned(),
                expected: vec![cols as u64, total as u64],
                found: info.dims.clone(),
            })?;
        let all = self.bytes(info)?;
        let mut out = Vec::with_capacity(parts.len());
        let mut row = 0;
        for (i, &n) in parts.iter().enumerate() {
            let sub = TensorInfo {
                name: format!("{name}[part {i}]"),
                dims: vec![cols as u64, n as u64],
                ggml_type: info.ggml_type,
                offset: info.offset + (row * row_bytes) as u64,
            };
            let data = all
                .slice(row * row_bytes, n * row_bytes)
                .ok_or_else(|| RuntimeError::MissingTensor(sub.name.clone()))?;
            out.push(self.backend.upload_weight(&sub, data)?);
            row += n;
        }
        Ok(out)
    }
}

impl<B: Backend> Model<B> {
    /// Loads the model in `file` onto `backend`.
    pub fn load(file: Arc<GgufFile>, backend: Arc<B>) -> Result<Self> {
        Self::load_with_progress(file, backend, &mut |_| true)
    }

    /// Like [`Model::load`], reporting progress as a fraction in `[0, 1]`
    /// after the embeddings and after each transformer block are uploaded.
    /// The callback returns `false` to cancel: loading stops with
    /// [`RuntimeError::Cancelled`] and everything uploaded so far is freed.
    pub fn load_with_progress(
        file: Arc<GgufFile>,
        backend: Arc<B>,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Self> {
        let embd_info = file
            .tensor("token_embd.weight")
            .ok_or_else(|| RuntimeError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = embd_info
            .dims
            .get(1)
            .and_then(|&d| usize::try_from(d).ok())
            .ok_or_else(|| RuntimeError::TensorShape {
                name: "token_embd.weight".into(),
                expected: vec![0, 0],
                found: embd_info.dims.clone(),
            })?;
        let c = ModelConfig::from_metadata(file.metadata(), n_vocab)?;
        let ld = Loader {
            file: &file,
            backend: &*backend,
        };
        let (e, qw, kvw, hd, ff) = (c.n_embd, c.q_width(), c.kv_width(), c.head_dim, c.n_ff);
        let tok_embd = ld.load("token_embd.weight", &[e, n_vocab])?;
        let output = ld.load_opt("output.weight", &[e, n_vocab])?;
        let output_norm = ld.load("output_norm.weight", &[e])?;
        let rope_freqs = match file.tensor("rope_freqs.weight") {
            None => None,
            Some(info) => {
                ld.check(info, &[c.rope.n_rot / 2])?;
                if info.ggml_type != GgmlType::F32 {
                    return Err(RuntimeError::UnsupportedFeature(format!(
                        "rope_freqs.weight of type {}",
                        info.ggml_type
                    )));
                }
                let mut v = vec![0.0; c.rope.n_rot / 2];
                wasm_chord_core::quant::dequantize(
                    GgmlType::F32,
                    ld.bytes(info)?.as_slice(),
                    &mut v,
                )
                .map_err(wasm_chord_core::backend::BackendError::from)?;
                Some(v)
            }
        };
        let steps = (c.n_layer + 1) as f32;
        if !progress(1.0 / steps) {
            return Err(RuntimeError::Cancelled);
        }
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let n = |t: &str| format!("blk.{il}.{t}.weight");
            let b = |t: &str| format!("blk.{il}.{t}.bias");
            let (wq, wk, wv) = if c.fused_qkv {
                let mut p = ld
                    .load_split(&n("attn_qkv"), e, &[qw, kvw, kvw])?
                    .into_iter();
                match (p.next(), p.next(), p.next()) {
                    (Some(q), Some(k), Some(v)) => (q, k, v),
                    _ => return Err(RuntimeError::MissingTensor(n("attn_qkv"))),
                }
            } else {
                (
                    ld.load(&n("attn_q"), &[e, qw])?,
                    ld.load(&n("attn_k"), &[e, kvw])?,
                    ld.load(&n("attn_v"), &[e, kvw])?,
                )
            };
            let (w_gate, w_up) = if c.fused_gate_up {
                let mut p = ld.load_split(&n("ffn_up"), e, &[ff, ff])?.into_iter();
                match (p.next(), p.next()) {
                    (Some(g), Some(u)) => (g, u),
                    _ => return Err(RuntimeError::MissingTensor(n("ffn_up"))),
                }
            } else {
                (
                    ld.load(&n("ffn_gate"), &[e, ff])?,
                    ld.load(&n("ffn_up"), &[e, ff])?,
                )
            };
            let (bq, bk, bv) = if c.qkv_bias {
                (
                    Some(ld.load(&b("attn_q"), &[qw])?),
                    Some(ld.load(&b("attn_k"), &[kvw])?),
                    Some(ld.load(&b("attn_v"), &[kvw])?),
                )
            } else {
                (None, None, None)
            };
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(ld.load(&n("attn_q_norm"), &[hd])?),
                    Some(ld.load(&n("attn_k_norm"), &[hd])?),
                )
            } else {
                (None, None)
            };
            let (attn_post_norm, ffn_post_norm) = if c.post_norms {
                (
                    Some(ld.load(&n("post_attention_norm"), &[e])?),
                    Some(ld.load(&n("post_ffw_norm"), &[e])?),
                )
            } else {
                (None, None)
            };
            layers.push(Layer {
                attn_norm: ld.load(&n("attn_norm"), &[e])?,
                wq,
                wk,
                wv,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                wo: ld.load(&n("attn_output"), &[qw, e])?,
                attn_post_norm,
                ffn_norm: ld.load(&n("ffn_norm"), &[e])?,
                w_gate,
                w_up,
                w_down: ld.load(&n("ffn_down"), &[ff, e])?,
                ffn_post_norm,
            });
            if !progress((il + 2) as f32 / steps) {
                return Err(RuntimeError::Cancelled);
            }
        }
        Ok(Model {
            config: c,
            backend,
            file,
            tok_embd,
            output,
            output_norm,
            layers,
            rope_freqs,
        })
    }

    /// The GGUF file the model was loaded from.
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.config.n_vocab
    }
}
