//! The KV cache: per layer, K and V rows on the backend plus, on the host,
//! the position held in each row.
//!
//! Global layers hold one row per context position. Sliding-window layers
//! hold only `window + n_batch - 1` rows as a ring (position `p` lives in row
//! `p % rows`): enough for the oldest query of a batch to see its whole
//! window while the batch's own keys are written.

use crate::error::{Result, RuntimeError};
use wasm_chord_core::backend::Backend;

/// One layer's cache.
pub(crate) struct LayerCache<B: Backend> {
    pub k: B::Cache,
    pub v: B::Cache,
    /// Position held by each row.
    pub positions: Vec<Option<u32>>,
}

/// The cache of a session.
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<LayerCache<B>>,
    n_ctx: usize,
}

impl<B: Backend> KvCache<B> {
    /// A cache for `n_ctx` positions; layers flagged in `swa` keep only
    /// `window + n_batch - 1` rows.
    pub(crate) fn new(
        backend: &B,
        n_ctx: usize,
        n_batch: usize,
        kv_width: usize,
        swa: &[bool],
        window: Option<u32>,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(swa.len());
        for &is_swa in swa {
            let rows = match (is_swa, window) {
                (true, Some(w)) => n_ctx.min(w as usize + n_batch - 1),
                _ => n_ctx,
            };
            let len = rows.checked_mul(kv_width).ok_or(RuntimeError::BadConfig {
                key: "n_ctx".into(),
                reason: "cache size overflows".into(),
            })?;
            layers.push(LayerCache {
                k: backend.alloc_cache(len)?,
                v: backend.alloc_cache(len)?,
                positions: vec![None; rows],
            });
        }
        Ok(Self { layers, n_ctx })
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.n_ctx
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            l.positions.iter_mut().for_each(|p| *p = None);
        }
    }

    /// Forgets positions `>= n` (keeps a common prefix).
    pub fn truncate(&mut self, n: usize) {
        for l in &mut self.layers {
            for p in &mut l.positions {
                if p.is_some_and(|p| p as usize >= n) {
                    *p = None;
                }
            }
        }
    }

    /// Bytes of K and V rows held on the backend, for reporting.
    pub fn rows_per_layer(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.positions.len()).collect()
    }
}
