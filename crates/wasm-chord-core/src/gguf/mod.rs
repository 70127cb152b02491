//! GGUF: the file format of llama.cpp models.
//!
//! Layout (v2 and v3, little-endian): magic `GGUF`, `u32` version, `u64`
//! tensor count, `u64` metadata count, the metadata key/value pairs, the
//! tensor infos (name, dims, type, offset), padding to `general.alignment`
//! (default 32), then the tensor data section.
//!
//! Every file is hostile until validated; see [`GgufError`] for the classes of
//! damage the reader rejects.

mod value;

pub use value::{Array, Metadata, Value, ValueType};

use crate::GgmlType;

/// Default alignment of the data section and of every tensor's data.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Errors reading or writing GGUF files and looking up metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An I/O error opening or mapping the file.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A metadata key that the caller requires is absent.
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    /// A metadata key holds a value of another type than the caller expects.
    #[error("metadata key `{key}` has type {}, expected {}", found.name(), expected.name())]
    WrongType {
        /// The key looked up.
        key: String,
        /// The type the caller asked for.
        expected: ValueType,
        /// The type stored in the file.
        found: ValueType,
    },
    /// A metadata array holds elements of another type than the caller expects.
    #[error("metadata array `{key}` has elements of type {}, expected {}", found.name(), expected.name())]
    WrongArrayType {
        /// The key looked up.
        key: String,
        /// The element type the caller asked for.
        expected: ValueType,
        /// The element type stored in the file.
        found: ValueType,
    },
}

/// Where one tensor lives and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost (row length) first, as ggml stores them.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the tensor data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (product of dims).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of tensor data. Validated readers guarantee this does not
    /// overflow; for hand-built infos it saturates.
    pub fn n_bytes(&self) -> u64 {
        let n = self.n_elements();
        let bs = self.ggml_type.block_size() as u64;
        (n / bs).saturating_mul(self.ggml_type.type_size() as u64)
    }
}
