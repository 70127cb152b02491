//! Receiving a model file in chunks straight into a backend, tensor by
//! tensor: the header is parsed from the first bytes, then each tensor's
//! bytes are collected as they arrive, uploaded
//! ([`StreamedWeights::accept`]) and dropped. Only the header and one
//! tensor are ever in wasm memory, so a file larger than wasm32's 4 GiB
//! can load onto WebGPU. The CPU path keeps using [`crate::loader`] (its
//! weights are views into the whole file).

use crate::error::{WebError, WebResult};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wasm_chord_core::backend::{Backend, TensorBytes};
use wasm_chord_core::gguf::{parse_header, GgufError, GgufFile, GgufHeader, TensorInfo};
use wasm_chord_runtime::{Model, StreamedWeights};

/// The first header parse is tried at this many bytes, then at what the
/// parser says it needs (at least twice as many).
const FIRST_HEADER_TRY: usize = 64 << 10;

/// Tensors below this size get buffers of their own size; larger ones the
/// largest tensor's (see [`Tensors::largest`]).
const SMALL_TENSOR: u64 = 1 << 20;

/// Where the stream is.
enum Phase<B: Backend> {
    /// Collecting the header.
    Header { prefix: Vec<u8>, next_try: usize },
    /// Collecting tensors in file order.
    Tensors(Box<Tensors<B>>),
    /// Failed earlier; every later call fails.
    Failed,
}

struct Tensors<B: Backend> {
    weights: StreamedWeights<B>,
    /// Tensor infos with their absolute byte ranges, by position in the file.
    order: Vec<(TensorInfo, u64, u64)>,
    next: usize,
    /// The tensor being received: a one-tensor GGUF file being filled.
    current: Option<Vec<u8>>,
    /// Bytes of the largest tensor. Every tensor's buffer reserves that
    /// much, so that each one fits into the block its predecessor freed and
    /// wasm memory (which never shrinks) grows to the largest tensor once,
    /// not to the sum of two large ones placed side by side.
    largest: u64,
}

/// A model file arriving in chunks, uploaded to `B` tensor by tensor.
pub struct StreamReceiver<B: Backend> {
    backend: Arc<B>,
    total: Option<u64>,
    hasher: Option<Sha256>,
    received: u64,
    phase: Phase<B>,
}

impl<B: Backend> std::fmt::Debug for StreamReceiver<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("total", &self.total)
            .field("received", &self.received)
            .finish()
    }
}

impl<B: Backend> StreamReceiver<B> {
    /// Expects `total` bytes when the size is known.
    pub fn new(backend: Arc<B>, total: Option<u64>) -> Self {
        Self {
            backend,
            total,
            hasher: Some(Sha256::new()),
            received: 0,
            phase: Phase::Header {
                prefix: Vec::new(),
                next_try: FIRST_HEADER_TRY,
            },
        }
    }

    /// Stops computing the sha256 (only before the first byte arrives).
    pub fn skip_hash(&mut self) -> WebResult<()> {
        if self.received > 0 {
            return Err(WebError::invalid("hash", "bytes were already received"));
        }
        self.hasher = None;
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether the header arrived, parsed and describes a model the runtime
    /// can build (architecture and configuration).
    pub fn header_valid(&self) -> bool {
        matches!(self.phase, Phase::Tensors(_))
    }

    /// Tensors uploaded so far, of how many.
    pub fn tensors_done(&self) -> (usize, usize) {
        match &self.phase {
            Phase::Tensors(t) => (t.next, t.order.len()),
            _ => (0, 0),
        }
    }

    /// The lowercase hex sha256 of everything received so far.
    pub fn sha256_hex(&self) -> Option<String> {
        crate::loader::digest_hex(self.hasher.as_ref())
    }

    /// Takes the next chunk: hashes it, and uploads every tensor it
    /// completes. An error leaves the receiver failed.
    pub fn push(&mut self, chunk: &[u8]) -> WebResult<()> {
        let r = self.push_inner(chunk);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn push_inner(&mut self, chunk: &[u8]) -> WebResult<()> {
        let start = self.received;
        let end = start
            .checked_add(chunk.len() as u64)
            .ok_or_else(|| WebError::invalid("chunk", "too large"))?;
        if let Some(t) = self.total.filter(|&t| end > t) {
            return Err(WebError::Integrity(format!(
                "received more than the announced {t} bytes"
            )));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(chunk);
        }
        self.received = end;
        match &mut self.phase {
            Phase::Failed => Err(WebError::invalid("loader", "failed earlier")),
            Phase::Tensors(t) => t.feed(start, chunk),
            Phase::Header { prefix, next_try } => {
                prefix
                    .try_reserve(chunk.len())
                    .map_err(|_| WebError::ModelTooLarge("the GGUF header".into()))?;
                prefix.extend_from_slice(chunk);
                if prefix.len() < *next_try {
                    return Ok(());
                }
                let file_len = self.total.unwrap_or(u64::MAX);
                match parse_header(prefix, file_len) {
                    Ok(header) => {
                        let prefix = std::mem::take(prefix);
                        let mut t = Tensors::new(&prefix, header, Arc::clone(&self.backend))?;
                        t.feed(0, &prefix)?;
                        self.phase = Phase::Tensors(Box::new(t));
                        Ok(())
                    }
                    Err(GgufError::Truncated { needed, .. }) => {
                        let needed = usize::try_from(needed).unwrap_or(usize::MAX);
                        *next_try = needed.max(next_try.saturating_mul(2));
                        Ok(())
                    }
                    Err(e) => Err(WebError::BadModel(e)),
                }
            }
        }
    }

    /// Checks that the file is complete (its announced size, every tensor)
    /// and the sha256 when given, then builds the model.
    pub fn finish(self, expected_sha256: Option<&str>) -> WebResult<Model<B>> {
        crate::loader::check_size(self.received, self.total)?;
        crate::loader::check_sha256(self.hasher.as_ref(), expected_sha256)?;
        match self.phase {
            Phase::Tensors(t) if t.next == t.order.len() => Ok(t.weights.finish()?),
            Phase::Tensors(t) => {
                let (_, start, end) = &t.order[t.next];
                Err(short(*start, end - start, self.received))
            }
            Phase::Header { prefix, .. } => Err(parse_header(&prefix, prefix.len() as u64)
                .err()
                .map_or_else(|| short(0, 0, self.received), WebError::BadModel)),
            Phase::Failed => Err(WebError::invalid("loader", "failed earlier")),
        }
    }
}

impl<B: Backend> Tensors<B> {
    fn new(prefix: &[u8], header: GgufHeader, backend: Arc<B>) -> WebResult<Self> {
        let meta = Arc::new(metadata_file(prefix, &header)?);
        let mut order = Vec::with_capacity(header.tensors.len());
        for info in &header.tensors {
            let r = header
                .tensor_range(info)
                .ok_or_else(|| short(info.offset, info.n_bytes(), u64::MAX))?;
            order.push((info.clone(), r.start, r.end));
        }
        order.sort_by_key(|&(_, s, _)| s);
        let largest = order.iter().map(|(_, s, e)| e - s).max().unwrap_or(0);
        check_types(&header.tensors, &*backend)?;
        let weights = StreamedWeights::new(meta, header.tensors, backend)?;
        Ok(Self {
            weights,
            order,
            next: 0,
            current: None,
            largest,
        })
    }

    /// Takes `bytes`, which start at `at` in the file.
    fn feed(&mut self, mut at: u64, mut bytes: &[u8]) -> WebResult<()> {
        while !bytes.is_empty() {
            let Some((info, start, end)) = self.order.get(self.next) else {
                return Ok(()); // past the last tensor
            };
            let (start, end) = (*start, *end);
            if at < start {
                let skip = (start - at).min(bytes.len() as u64) as usize;
                at += skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (end - at).min(bytes.len() as u64) as usize;
            let buf = match &mut self.current {
                Some(b) => b,
                None => {
                    // Small tensors (norms, biases, and the host's own such as
                    // rope_freqs, which stays) get exact buffers, so that none
                    // of them pins a large block.
                    let room = if end - start < SMALL_TENSOR {
                        end - start
                    } else {
                        self.largest
                    };
                    self.current.insert(tensor_file(info, room)?)
                }
            };
            buf.extend_from_slice(&bytes[..take]);
            at += take as u64;
            bytes = &bytes[take..];
            if at == end {
                let file = self.current.take().unwrap_or_default();
                let file = Arc::new(GgufFile::from_bytes(file)?);
                let data = file
                    .tensors()
                    .first()
                    .and_then(|t| TensorBytes::new(&file, t));
                let data = data.ok_or_else(|| short(start, end - start, at))?;
                let info = info.clone();
                self.weights.accept(&info, data)?;
                self.next += 1;
            }
        }
        Ok(())
    }
}

/// Refuses, as soon as the header is here, a model with a weight of a type
/// the backend cannot multiply (it would upload, then fail at the first
/// token): `UNSUPPORTED_MODEL`, and the caller may pick another backend.
fn check_types<B: Backend>(tensors: &[TensorInfo], backend: &B) -> WebResult<()> {
    let types = backend.caps().matmul_types;
    let weight = |n: &str| {
        n.ends_with(".weight")
            && (n.starts_with("blk.") || n == "token_embd.weight" || n == "output.weight")
    };
    match tensors
        .iter()
        .find(|t| weight(&t.name) && !types.contains(&t.ggml_type))
    {
        None => Ok(()),
        Some(t) => Err(WebError::UnsupportedModel(
            wasm_chord_runtime::RuntimeError::UnsupportedFeature(format!(
                "tensor {} is {}, which the {} backend does not run",
                t.name,
                t.ggml_type,
                backend.name()
            )),
        )),
    }
}

/// The file ends at `file_len`, before `len` bytes at `offset`.
fn short(offset: u64, len: u64, file_len: u64) -> WebError {
    WebError::BadModel(GgufError::UnexpectedEof {
        offset,
        len,
        file_len,
    })
}

/// The file's header with no tensors (its metadata only): the prefix up to
/// the data section with the tensor count set to 0, so that the parser
/// stops after the metadata.
fn metadata_file(prefix: &[u8], header: &GgufHeader) -> WebResult<GgufFile> {
    let end = usize::try_from(header.data_offset)
        .unwrap_or(usize::MAX)
        .min(prefix.len());
    let mut bytes = prefix[..end].to_vec();
    // magic (4), version (4), then the tensor count (u64).
    bytes
        .get_mut(8..16)
        .ok_or_else(|| short(8, 8, prefix.len() as u64))?
        .copy_from_slice(&0u64.to_le_bytes());
    Ok(GgufFile::from_bytes(bytes)?)
}

/// A GGUF file of the one tensor `info` (at offset 0), with room for
/// `n_bytes` of data (its own or more), which the caller appends.
fn tensor_file(info: &TensorInfo, n_bytes: u64) -> WebResult<Vec<u8>> {
    let mut h = Vec::with_capacity(64 + info.name.len() + 8 * info.dims.len());
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes()); // tensors
    h.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    h.extend_from_slice(&(info.name.len() as u64).to_le_bytes());
    h.extend_from_slice(info.name.as_bytes());
    h.extend_from_slice(&(info.dims.len() as u32).to_le_bytes());
    for d in &info.dims {
        h.extend_from_slice(&d.to_le_bytes());
    }
    h.extend_from_slice(&info.ggml_type.id().to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // offset in the data section
    h.resize(h.len().div_ceil(32) * 32, 0); // default alignment
    let too_large = || {
        WebError::ModelTooLarge(format!(
            "the largest tensor ({n_bytes} bytes) does not fit into wasm memory, which \
             holds one tensor at a time on the way to the GPU"
        ))
    };
    let need = usize::try_from(n_bytes).map_err(|_| too_large())?;
    h.try_reserve_exact(need).map_err(|_| too_large())?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_chord_cpu::CpuBackend;
    use wasm_chord_runtime::synth::{generate, SynthSpec};
    use wasm_chord_runtime::{Logits, Session, SessionConfig};

    fn logits(model: Model<CpuBackend>, tokens: &[u32]) -> Vec<f32> {
        let mut s = Session::new(&model, SessionConfig::default()).unwrap();
        s.forward(tokens, Logits::All).unwrap()
    }

    /// Streamed in odd chunks, the model computes exactly what the same
    /// file loaded whole computes (llama, and phi3 with fused qkv and
    /// gate/up weights split on arrival).
    #[test]
    fn streamed_model_equals_the_whole_file() {
        for (arch, ty) in [("llama", "q8_0"), ("phi3", "q4_k_m"), ("gemma3", "q4_k_m")] {
            let bytes = generate(&SynthSpec::new(Some(arch), "tiny", ty, 5).unwrap()).unwrap();
            let be = Arc::new(CpuBackend::new());
            let whole = Model::load(
                Arc::new(GgufFile::from_bytes(bytes.clone()).unwrap()),
                Arc::clone(&be),
            )
            .unwrap();
            let tokens = [1, 7, 42, 3, 99, 5];
            let want = logits(whole, &tokens);
            for (chunk, total) in [(997, Some(bytes.len() as u64)), (65_536, None)] {
                let mut rx = StreamReceiver::new(Arc::clone(&be), total);
                for c in bytes.chunks(chunk) {
                    rx.push(c).unwrap();
                }
                assert!(rx.header_valid());
                let (done, of) = rx.tensors_done();
                assert_eq!(done, of, "{arch}");
                let digest = crate::loader::hex(&Sha256::digest(&bytes));
                let model = rx.finish(Some(&digest)).unwrap();
                // The metadata came through (the tokenizer reads it).
                assert!(model.file().metadata().contains("tokenizer.ggml.tokens"));
                assert_eq!(logits(model, &tokens), want, "{arch} {ty} chunk {chunk}");
            }
        }
    }

    #[test]
    fn damaged_or_short_streams_fail_with_codes() {
        let bytes = generate(&SynthSpec::new(Some("llama"), "tiny", "q8_0", 5).unwrap()).unwrap();
        let be = Arc::new(CpuBackend::new());
        // Not GGUF: rejected at the first header try.
        let mut junk = bytes.clone();
        junk[1] = b'X';
        let mut rx = StreamReceiver::new(Arc::clone(&be), None);
        let e = junk.chunks(4096).map(|c| rx.push(c)).find_map(Result::err);
        assert_eq!(e.unwrap().code(), "BAD_MODEL");
        assert!(rx.received() < junk.len() as u64);
        // Truncated without a size: a tensor is missing at the end.
        let mut rx = StreamReceiver::new(Arc::clone(&be), None);
        rx.push(&bytes[..bytes.len() - 100]).unwrap();
        assert_eq!(rx.finish(None).unwrap_err().code(), "BAD_MODEL");
        // Truncated with a size, and more than announced.
        let mut rx = StreamReceiver::new(Arc::clone(&be), Some(bytes.len() as u64));
        rx.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(rx.finish(None).unwrap_err().code(), "INTEGRITY");
        let mut rx = StreamReceiver::new(Arc::clone(&be), Some(10));
        assert_eq!(rx.push(&bytes[..11]).unwrap_err().code(), "INTEGRITY");
        // A flipped data byte: only the digest tells.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut rx = StreamReceiver::new(Arc::clone(&be), None);
        rx.push(&flipped).unwrap();
        let want = crate::loader::hex(&Sha256::digest(&bytes));
        assert_eq!(rx.finish(Some(&want)).unwrap_err().code(), "INTEGRITY");
    }
}
