//! Shared, zero-copy views of tensor data inside a GGUF file.

use crate::gguf::{GgufFile, TensorInfo};
use std::sync::Arc;

/// The bytes of one tensor, kept alive by a shared handle on the file (a
/// memory map natively, a byte buffer in wasm). Cloning is cheap.
#[derive(Clone)]
pub struct TensorBytes {
    file: Arc<GgufFile>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for TensorBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBytes")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl TensorBytes {
    /// The data of `info` in `file`, or `None` when `info` does not describe
    /// a range inside the file (an info from another file).
    pub fn new(file: &Arc<GgufFile>, info: &TensorInfo) -> Option<Self> {
        let range = file.header().tensor_range(info)?;
        let start = usize::try_from(range.start).ok()?;
        let len = usize::try_from(range.end - range.start).ok()?;
        // Checked once here so that `as_slice` cannot fail later.
        file.bytes().get(start..start.checked_add(len)?)?;
        Some(Self {
            file: Arc::clone(file),
            start,
            len,
        })
    }

    /// A sub-range of these bytes (`offset..offset + len`), or `None` when
    /// it does not fit. Used to split fused weights by rows without copying.
    pub fn slice(&self, offset: usize, len: usize) -> Option<Self> {
        if offset.checked_add(len)? > self.len {
            return None;
        }
        Some(Self {
            file: Arc::clone(&self.file),
            start: self.start + offset,
            len,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.file
            .bytes()
            .get(self.start..self.start + self.len)
            .unwrap_or(&[])
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
