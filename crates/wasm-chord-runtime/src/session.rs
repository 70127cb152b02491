//! A session: one sequence's KV cache and the forward pass over it.

use crate::config::ModelConfig;
use crate::error::{Result, RuntimeError};
use crate::kv_cache::KvCache;
use crate::model::Model;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wasm_chord_core::backend::{AttentionParams, Backend, QkRope, RopeParams, StepKey};

/// Ids for [`StepKey::cache_id`]: one per session (each owns its cache).
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// Sizes of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Context capacity in positions (the model's training length at most
    /// is sensible; it is not enforced).
    pub n_ctx: usize,
    /// Most tokens per forward pass; longer inputs are split.
    pub n_batch: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            n_ctx: 2048,
            n_batch: 512,
        }
    }
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only after the last token (generation).
    Last,
    /// After every token (evaluation).
    All,
    /// After each of the last `n` tokens of the call (perplexity scores
    /// only the second half of a chunk).
    Tail(usize),
}

/// The model of a session: borrowed, or shared through an [`Arc`] so that
/// the session can outlive the caller's borrow (FFI handles, other threads).
enum ModelRef<'m, B: Backend> {
    Borrowed(&'m Model<B>),
    Shared(Arc<Model<B>>),
}

impl<B: Backend> Deref for ModelRef<'_, B> {
    type Target = Model<B>;

    fn deref(&self) -> &Model<B> {
        match self {
            Self::Borrowed(m) => m,
            Self::Shared(m) => m,
        }
    }
}

/// What [`Session::prefill`] did.
#[derive(Debug, Clone)]
pub struct Prefilled {
    /// Logits after the last token (`n_vocab` values).
    pub logits: Vec<f32>,
    /// Tokens actually evaluated (the rest came from the cache).
    pub evaluated: usize,
}

/// One sequence being evaluated: owns its KV cache, borrows the model
/// ([`Session::new`]) or shares it ([`Session::new_shared`]).
pub struct Session<'m, B: Backend> {
    model: ModelRef<'m, B>,
    cfg: SessionConfig,
    cache: KvCache<B>,
    n_past: usize,
    /// The tokens whose keys and values are in the cache, in order.
    history: Vec<u32>,
    /// This session's [`StepKey::cache_id`].
    cache_id: u64,
}

impl<B: Backend> Session<'static, B> {
    /// A session that holds a shared handle to `model` instead of a borrow,
    /// so it has no lifetime tied to the caller (what FFI handles need).
    pub fn new_shared(model: Arc<Model<B>>, cfg: SessionConfig) -> Result<Self> {
        Self::with_model(ModelRef::Shared(model), cfg)
    }
}

impl<'m, B: Backend> Session<'m, B> {
    /// A session over `model` with its own cache.
    pub fn new(model: &'m Model<B>, cfg: SessionConfig) -> Result<Self> {
        Self::with_model(ModelRef::Borrowed(model), cfg)
    }

    fn with_model(model: ModelRef<'m, B>, cfg: SessionConfig) -> Result<Self> {
        if cfg.n_ctx == 0 || cfg.n_batch == 0 {
            return Err(RuntimeError::BadConfig {
                key: "session".into(),
                reason: "n_ctx and n_batch must be positive".into(),
            });
        }
        let c = &model.config;
        let swa: Vec<bool> = (0..c.n_layer).map(|il| c.is_swa(il)).collect();
        let cache = KvCache::new(
            &*model.backend,
            cfg.n_ctx,
            cfg.n_batch,
            c.kv_width(),
            &swa,
            c.sliding_window,
        )?;
        Ok(Self {
            model,
            cfg,
            cache,
            n_past: 0,
            history: Vec::new(),
            cache_id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Positions already in the cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// The cache.
    pub fn cache(&self) -> &KvCache<B> {
        &self.cache
    }

    /// The tokens in the cache, in order.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// The session's sizes.
    pub fn config(&self) -> SessionConfig {
        self.cfg
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model<B> {
        &self.model
    }

    /// Forgets the sequence.
    pub fn clear(&mut self) {
        self.cache.clear();
        self.n_past = 0;
        self.history.clear();
    }

    /// Makes the cache hold `tokens` and returns the logits after the last
    /// one and how many tokens were evaluated, reusing the longest common prefix already cached instead of
    /// recomputing it (multi-turn chat re-sends the whole conversation).
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<Prefilled> {
        let start = self.reuse_prefix(tokens)?;
        let logits = self.forward(&tokens[start..], Logits::Last)?;
        Ok(Prefilled {
            logits,
            evaluated: tokens.len() - start,
        })
    }

    /// Keeps the longest cached prefix of `tokens` (all but the last token
    /// at most, which must run again for its logits); returns where the
    /// tokens to evaluate start.
    fn reuse_prefix(&mut self, tokens: &[u32]) -> Result<usize> {
        if tokens.is_empty() {
            return Err(RuntimeError::BadBatch {
                len: 0,
                max: self.cfg.n_batch,
            });
        }
        let common = self
            .history
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        self.truncate(common.min(tokens.len() - 1))?;
        Ok(self.n_past)
    }

    /// Keeps the first `n` positions, to continue from a common prefix.
    /// Sliding-window layers may have dropped rows a later query would need,
    /// so only a truncation inside the last window is allowed for them.
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n > self.n_past {
            return Err(RuntimeError::BadConfig {
                key: "truncate".into(),
                reason: format!("{n} is past the {} cached positions", self.n_past),
            });
        }
        if let Some(w) = self.model.config.sliding_window {
            let back = self.n_past - n;
            let rows = self.cache.rows_per_layer().into_iter().min().unwrap_or(0);
            if back > rows.saturating_sub(w as usize) {
                self.clear();
                return Ok(());
            }
        }
        self.cache.truncate(n);
        self.n_past = n;
        self.history.truncate(n);
        Ok(())
    }

    /// Runs `tokens` at the next positions, in batches of at most `n_batch`,
    /// and returns the logits asked for (`n_vocab` values per row).
    ///
    /// Errors leave the session unchanged: invalid ids and a full context
    /// are checked before any work.
    pub fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.check_input(tokens)?;
        let mut out = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.cfg.n_batch).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // Rows of this chunk that fall inside the requested tail.
            let chunk_end = (i * self.cfg.n_batch + chunk.len()) as isize;
            let rows = match which {
                Logits::All => chunk.len(),
                Logits::Last => usize::from(i == last),
                Logits::Tail(t) => {
                    let tail_start = tokens.len() as isize - t.min(tokens.len()) as isize;
                    (chunk_end - tail_start).clamp(0, chunk.len() as isize) as usize
                }
            };
            if let Some(logits) = self.batch(chunk, rows)? {
                // Straight into the result: no second buffer to allocate and
                // copy for every generated token.
                let start = out.len();
                out.resize(start + rows * self.model.config.n_vocab, 0.0);
                self.model.backend.download(&logits, &mut out[start..])?;
            }
        }
        Ok(out)
    }

    /// Like [`Session::forward`] with [`Logits::Last`], but leaves the
    /// logits on the device (`n_vocab` values in the returned buffer) and
    /// reads nothing back: the caller downloads them, e.g. asynchronously
    /// where a blocking read-back is impossible (WebGPU in a browser).
    pub fn forward_device(&mut self, tokens: &[u32]) -> Result<B::Buffer> {
        self.check_input(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.cfg.n_batch).collect();
        let last = chunks.len() - 1;
        let mut logits = None;
        for (i, chunk) in chunks.into_iter().enumerate() {
            logits = self.batch(chunk, usize::from(i == last))?;
        }
        logits.ok_or(RuntimeError::BadBatch {
            len: 0,
            max: self.cfg.n_batch,
        })
    }

    /// [`Session::prefill`] with the logits left on the device (see
    /// [`Session::forward_device`]); also returns how many tokens were
    /// evaluated.
    pub fn prefill_device(&mut self, tokens: &[u32]) -> Result<(B::Buffer, usize)> {
        let start = self.reuse_prefix(tokens)?;
        let logits = self.forward_device(&tokens[start..])?;
        Ok((logits, tokens.len() - start))
    }

    /// Checks ids and room before any work, so that errors leave the
    /// session unchanged.
    fn check_input(&self, tokens: &[u32]) -> Result<()> {
        let n_vocab = self.model.config.n_vocab;
        if tokens.is_empty() {
            return Err(RuntimeError::BadBatch {
                len: 0,
                max: self.cfg.n_batch,
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(RuntimeError::InvalidToken { id, n_vocab });
        }
        let needed = self.n_past + tokens.len();
        if needed > self.cfg.n_ctx {
            return Err(RuntimeError::ContextFull {
                needed,
                capacity: self.cfg.n_ctx,
            });
        }
        Ok(())
    }

    /// One forward pass over a batch; the logits of its last `rows` tokens
    /// stay on the device (`None` when `rows == 0`).
    fn batch(&mut self, tokens: &[u32], rows: usize) -> Result<Option<B::Buffer>> {
        let backend = Arc::clone(&self.model.backend);
        let key = StepKey {
            cache_id: self.cache_id,
            n_tokens: tokens.len(),
            logits_rows: rows,
            pos_end: self.n_past + tokens.len(),
        };
        backend.run_step(&key, || self.batch_on_backend(tokens, rows))
    }

    /// [`Session::batch`]'s body, run inside [`Backend::run_step`].
    fn batch_on_backend(&mut self, tokens: &[u32], rows: usize) -> Result<Option<B::Buffer>> {
        let m: &Model<B> = &self.model;
        let be = &*m.backend;
        let c: &ModelConfig = &m.config;
        let n = tokens.len();
        let (e, qw, kvw, hd) = (c.n_embd, c.q_width(), c.kv_width(), c.head_dim);
        let pos0 = self.n_past;
        let positions: Vec<u32> = (pos0..pos0 + n).map(|p| p as u32).collect();

        let mut x = be.alloc(n * e)?;
        be.embed(&m.tok_embd, tokens, c.embd_scale, &mut x)?;
        let mut h = be.alloc(n * e)?;
        let mut q = be.alloc(n * qw)?;
        let mut k = be.alloc(n * kvw)?;
        let mut v = be.alloc(n * kvw)?;
        let mut qn = be.alloc(n * qw)?;
        let mut kn = be.alloc(n * kvw)?;
        let mut attn = be.alloc(n * qw)?;
        let mut o = be.alloc(n * e)?;
        let mut gate = be.alloc(n * c.n_ff)?;
        let mut up = be.alloc(n * c.n_ff)?;

        // Each layer's residual adds run fused with the norm that follows
        // them (the next block's, or the output norm), so `h` already holds
        // a layer's normalized input when it starts.
        let fuse_out = rows == n && rows > 0;
        if let Some(first) = m.layers.first() {
            be.rms_norm(&x, &first.attn_norm, c.rms_eps, n, e, &mut h)?;
        }
        for (il, layer) in m.layers.iter().enumerate() {
            let swa = c.is_swa(il);
            be.matmul_qkv(
                &layer.wq, &layer.wk, &layer.wv, &h, n, &mut q, &mut k, &mut v,
            )?;
            if let (Some(bq), Some(bk), Some(bv)) = (&layer.bq, &layer.bk, &layer.bv) {
                be.add_bias(&mut q, bq, n)?;
                be.add_bias(&mut k, bk, n)?;
                be.add_bias(&mut v, bv, n)?;
            }
            let norms = match (&layer.q_norm, &layer.k_norm) {
                (Some(qnw), Some(knw)) => Some((qnw, knw, c.rms_eps)),
                _ => None,
            };
            let rope = RopeParams {
                kind: c.rope.kind,
                n_rot: c.rope.n_rot,
                freq_base: if swa {
                    c.rope.freq_base_swa
                } else {
                    c.rope.freq_base
                },
                freq_scale: c.rope.freq_scale,
                freq_factors: m.rope_freqs.as_deref(),
            };
            // Gemma and Phi-3 scale q itself before the f16 q·k product, which
            // rounds differently from scaling the scores when the scale is
            // not a power of two.
            let (q_scale, scale) = if c.scale_q {
                (Some(c.attn_scale), 1.0)
            } else {
                (None, c.attn_scale)
            };
            let (nh, nkv) = (c.n_head, c.n_head_kv);
            let lc = &mut self.cache.layers[il];
            let rows = lc.positions.len();
            let slots: Vec<usize> = positions.iter().map(|&p| p as usize % rows).collect();
            let qk = QkRope {
                norms,
                positions: &positions,
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                params: rope,
                q_scale,
            };
            let (qo, ko) = (&mut qn, &mut kn);
            be.qk_rope_kv(
                &mut q, &mut k, &v, qo, ko, &qk, &mut lc.k, &mut lc.v, &slots,
            )?;
            let q_ref = if norms.is_some() { &mut qn } else { &mut q };
            for (&s, &p) in slots.iter().zip(&positions) {
                lc.positions[s] = Some(p);
            }
            // Rows fill in order (position p in row p % rows), so rows at
            // and past `pos0 + n` have never held anything yet: attention
            // reads only the rows up to there, not the whole capacity.
            let in_use = (pos0 + n).min(rows);
            let params = AttentionParams {
                n_heads: c.n_head,
                n_kv_heads: c.n_head_kv,
                head_dim: hd,
                scale,
                softcap: c.attn_softcap,
                window: if swa { c.sliding_window } else { None },
                query_positions: &positions,
                cache_positions: &lc.positions[..in_use],
            };
            be.attention(q_ref, &lc.k, &lc.v, &params, &mut attn)?;
            be.matmul(&layer.wo, &attn, n, &mut o)?;
            let post = layer.attn_post_norm.as_ref();
            be.add_rms_norm(&mut x, &o, post, &layer.ffn_norm, c.rms_eps, n, e, &mut h)?;

            let (wg, wu) = (&layer.w_gate, &layer.w_up);
            be.matmul_glu(c.glu, wg, wu, &h, n, c.n_ff, &mut gate, &mut up)?;
            be.matmul(&layer.w_down, &gate, n, &mut o)?;
            let post = layer.ffn_post_norm.as_ref();
            match m.layers.get(il + 1) {
                Some(next) => {
                    be.add_rms_norm(&mut x, &o, post, &next.attn_norm, c.rms_eps, n, e, &mut h)?
                }
                None if fuse_out => {
                    be.add_rms_norm(&mut x, &o, post, &m.output_norm, c.rms_eps, n, e, &mut h)?
                }
                None => match post {
                    Some(pn) => {
                        be.rms_norm(&o, pn, c.rms_eps, n, e, &mut h)?;
                        be.add(&mut x, &h, n * e)?;
                    }
                    None => be.add(&mut x, &o, n * e)?,
                },
            }
        }
        self.n_past += n;
        self.history.extend_from_slice(tokens);

        if rows == 0 {
            return Ok(None);
        }
        // Final norm and output projection only for the rows asked for (the
        // norm already ran with the last residual add when all rows are).
        let normed = fuse_out && !m.layers.is_empty();
        if !normed {
            let src = if rows == n {
                x
            } else {
                be.copy_rows(&x, n - rows, rows, e)?
            };
            be.rms_norm(&src, &m.output_norm, c.rms_eps, rows, e, &mut h)?;
        }
        let mut logits = be.alloc(rows * c.n_vocab)?;
        let out_w = m.output.as_ref().unwrap_or(&m.tok_embd);
        be.matmul(out_w, &h, rows, &mut logits)?;
        if let Some(cap) = c.final_softcap {
            be.softcap(&mut logits, cap, rows * c.n_vocab)?;
        }
        Ok(Some(logits))
    }
}
