//! Loading a model: configuration, then every weight uploaded once to the
//! backend, with shapes checked against the configuration.

use crate::config::ModelConfig;
use crate::error::{Result, RuntimeError};
use std::cell::RefCell;
use std::collections::HashMap;
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

/// Where the loader finds a tensor's data.
enum Source<'a, B: Backend> {
    /// In the GGUF file, uploaded as the loader reaches it.
    File(&'a Arc<GgufFile>),
    /// Already uploaded while the file streamed in ([`StreamedWeights`]);
    /// each entry is taken once.
    Streamed(RefCell<HashMap<String, Streamed<B>>>),
}

/// One tensor received by [`StreamedWeights`].
enum Streamed<B: Backend> {
    /// Uploaded, in the parts the model uses (one unless split).
    Device(Vec<B::Weight>),
    /// Kept on the host (read by the runtime itself, not the backend).
    Host(TensorBytes),
}

struct Loader<'a, B: Backend> {
    tensors: &'a [TensorInfo],
    source: Source<'a, B>,
    backend: &'a B,
}

impl<B: Backend> Loader<'_, B> {
    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.find(name)
            .ok_or_else(|| RuntimeError::MissingTensor(name.to_owned()))
    }

    fn find(&self, name: &str) -> Option<&TensorInfo> {
        match &self.source {
            Source::File(f) => f.tensor(name),
            Source::Streamed(_) => self.tensors.iter().find(|t| t.name == name),
        }
    }

    fn check(&self, info: &TensorInfo, dims: &[usize]) -> Result<()> {
        check_dims(info, dims)
    }

    /// The tensor as received, for the streamed source.
    fn take(&self, name: &str) -> Result<Streamed<B>> {
        match &self.source {
            Source::Streamed(map) => map.borrow_mut().remove(name),
            Source::File(_) => None,
        }
        .ok_or_else(|| RuntimeError::MissingTensor(name.to_owned()))
    }

    fn bytes(&self, info: &TensorInfo) -> Result<TensorBytes> {
        match &self.source {
            Source::File(f) => TensorBytes::new(f, info)
                .ok_or_else(|| RuntimeError::MissingTensor(info.name.clone())),
            Source::Streamed(_) => match self.take(&info.name)? {
                Streamed::Host(b) => Ok(b),
                Streamed::Device(_) => Err(RuntimeError::MissingTensor(info.name.clone())),
            },
        }
    }

    fn load(&self, name: &str, dims: &[usize]) -> Result<B::Weight> {
        let info = self.info(name)?;
        self.check(info, dims)?;
        match &self.source {
            Source::File(_) => Ok(self.backend.upload_weight(info, self.bytes(info)?)?),
            Source::Streamed(_) => match self.take(name)? {
                Streamed::Device(parts) if parts.len() == 1 => {
                    parts.into_iter().next().ok_or_else(|| missing(name))
                }
                _ => Err(missing(name)),
            },
        }
    }

    fn load_opt(&self, name: &str, dims: &[usize]) -> Result<Option<B::Weight>> {
        if self.find(name).is_none() {
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
        match &self.source {
            Source::File(_) => upload_split(self.backend, info, self.bytes(info)?, cols, parts),
            Source::Streamed(_) => match self.take(name)? {
                Streamed::Device(w) if w.len() == parts.len() => Ok(w),
                _ => Err(missing(name)),
            },
        }
    }
}

fn missing(name: &str) -> RuntimeError {
    RuntimeError::MissingTensor(name.to_owned())
}

fn check_dims(info: &TensorInfo, dims: &[usize]) -> Result<()> {
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

/// Uploads the row ranges `parts` of a fused weight `[cols, sum(parts)]`.
fn upload_split<B: Backend>(
    backend: &B,
    info: &TensorInfo,
    all: TensorBytes,
    cols: usize,
    parts: &[usize],
) -> Result<Vec<B::Weight>> {
    let name = &info.name;
    let total: usize = parts.iter().sum();
    let row_bytes = info
        .ggml_type
        .row_bytes(cols as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| RuntimeError::TensorShape {
            name: name.to_owned(),
            expected: vec![cols as u64, total as u64],
            found: info.dims.clone(),
        })?;
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
        out.push(backend.upload_weight(&sub, data)?);
        row += n;
    }
    Ok(out)
}

/// The configuration of the model described by `metadata` and `tensors`
/// (the vocabulary size is the embedding table's second dimension).
fn config_of(
    metadata: &wasm_chord_core::gguf::Metadata,
    tensors: &[TensorInfo],
) -> Result<ModelConfig> {
    let embd_info = tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
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
    ModelConfig::from_metadata(metadata, n_vocab)
}

/// Tensors the runtime reads on the host instead of uploading.
const HOST_TENSORS: &[&str] = &["rope_freqs.weight"];

/// A model whose weights arrive one tensor at a time, in any order, and go
/// to the backend as they arrive, so that the file never has to be in
/// memory as a whole (a download streamed into GPU buffers).
///
/// Make one from the file's header ([`StreamedWeights::new`]), hand it each
/// tensor's bytes ([`StreamedWeights::accept`]), then
/// [`StreamedWeights::finish`] checks shapes and builds the [`Model`] as
/// [`Model::load`] would from the whole file. Fused weights are split when
/// they arrive, as `Model::load` splits them.
pub struct StreamedWeights<B: Backend> {
    meta: Arc<GgufFile>,
    tensors: Vec<TensorInfo>,
    config: ModelConfig,
    backend: Arc<B>,
    received: HashMap<String, Streamed<B>>,
}

impl<B: Backend> std::fmt::Debug for StreamedWeights<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedWeights")
            .field("tensors", &self.tensors.len())
            .field("received", &self.received.len())
            .finish()
    }
}

impl<B: Backend> StreamedWeights<B> {
    /// Starts a model described by `tensors` (the header's tensor infos)
    /// and the metadata of `meta` (a GGUF file that may hold the metadata
    /// only: it becomes [`Model::file`]).
    pub fn new(meta: Arc<GgufFile>, tensors: Vec<TensorInfo>, backend: Arc<B>) -> Result<Self> {
        let config = config_of(meta.metadata(), &tensors)?;
        Ok(Self {
            meta,
            tensors,
            config,
            backend,
            received: HashMap::new(),
        })
    }

    /// The configuration read from the header.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Uploads the tensor `info` (an info of the header given to
    /// [`StreamedWeights::new`]) from `data`, its bytes; a fused weight the
    /// model splits is uploaded as its parts. `data` can be dropped
    /// afterwards (the host tensors the runtime reads itself are kept).
    pub fn accept(&mut self, info: &TensorInfo, data: TensorBytes) -> Result<()> {
        if !self.tensors.iter().any(|t| t == info) {
            return Err(missing(&info.name));
        }
        if self.received.contains_key(&info.name) {
            return Err(RuntimeError::BadConfig {
                key: info.name.clone(),
                reason: "received twice".into(),
            });
        }
        let c = &self.config;
        let split = split_of(c, &info.name);
        let item = if HOST_TENSORS.contains(&info.name.as_str()) {
            Streamed::Host(data)
        } else if let Some(parts) = split {
            let total: usize = parts.iter().sum();
            check_dims(info, &[c.n_embd, total])?;
            Streamed::Device(upload_split(&*self.backend, info, data, c.n_embd, &parts)?)
        } else {
            Streamed::Device(vec![self.backend.upload_weight(info, data)?])
        };
        self.received.insert(info.name.clone(), item);
        Ok(())
    }

    /// Builds the model from what arrived: the same checks as
    /// [`Model::load`] (every tensor the architecture needs, with its
    /// shape); tensors the model does not use are freed.
    pub fn finish(self) -> Result<Model<B>> {
        let ld = Loader {
            tensors: &self.tensors,
            source: Source::Streamed(RefCell::new(self.received)),
            backend: &*self.backend,
        };
        build(
            &ld,
            self.config,
            Arc::clone(&self.backend),
            self.meta,
            &mut |_| true,
        )
    }
}

/// How `Model::load` splits a fused weight (row counts), or `None`.
fn split_of(c: &ModelConfig, name: &str) -> Option<Vec<usize>> {
    let rest = name.strip_prefix("blk.")?;
    let (_, t) = rest.split_once('.')?;
    match t {
        "attn_qkv.weight" if c.fused_qkv => Some(vec![c.q_width(), c.kv_width(), c.kv_width()]),
        "ffn_up.weight" if c.fused_gate_up => Some(vec![c.n_ff, c.n_ff]),
        _ => None,
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
        let c = config_of(file.metadata(), file.tensors())?;
        let ld = Loader {
            tensors: file.tensors(),
            source: Source::File(&file),
            backend: &*backend,
        };
        build(&ld, c, Arc::clone(&backend), Arc::clone(&file), progress)
    }

    /// The GGUF file the model was loaded from; for a model built by
    /// [`StreamedWeights`], the file given there (which may hold the
    /// metadata only, no tensor data).
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

/// Loads every weight through `ld` and assembles the model.
fn build<B: Backend>(
    ld: &Loader<'_, B>,
    c: ModelConfig,
    backend: Arc<B>,
    file: Arc<GgufFile>,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Model<B>> {
    let n_vocab = c.n_vocab;
    let (e, qw, kvw, hd, ff) = (c.n_embd, c.q_width(), c.kv_width(), c.head_dim, c.n_ff);
    let tok_embd = ld.load("token_embd.weight", &[e, n_vocab])?;
    let output = ld.load_opt("output.weight", &[e, n_vocab])?;
    let output_norm = ld.load("output_norm.weight", &[e])?;
    let rope_freqs = match ld.find("rope_freqs.weight") {
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
            wasm_chord_core::quant::dequantize(GgmlType::F32, ld.bytes(info)?.as_slice(), &mut v)
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
