//! GGUF: the file format of llama.cpp models.
//!
//! Layout (v2 and v3, little-endian): magic `GGUF`, `u32` version, `u64`
//! tensor count, `u64` metadata count, the metadata key/value pairs, the
//! tensor infos (name, dims, type, offset), padding to `general.alignment`
//! (default 32), then the tensor data section.
//!
//! Every file is hostile until validated; see [`GgufError`] for the classes of
//! damage the reader rejects. [`parse_header`] reads and validates the header
//! from a prefix of a file (a browser can parse the first bytes of a streamed
//! file), [`GgufFile`] owns a whole file (memory-mapped natively) and hands out
//! tensor data, and [`GgufWriter`] writes files for tests and tools.
//!
//! Strings must be valid UTF-8 ([`GgufError::InvalidUtf8`]): llama.cpp does not
//! check, but every vocabulary file shipped with llama.cpp is valid UTF-8, so a
//! file that is not is treated as damaged rather than converted lossily.

mod cursor;
mod error;
mod file;
mod header;
mod limits;
mod read_meta;
mod value;
mod writer;

pub use error::GgufError;
pub use file::GgufFile;
pub use header::{parse_header, parse_header_with_limits, GgufHeader};
pub use limits::{
    Limits, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_KEY_LEN, MAX_METADATA_BYTES,
    MAX_STRING_LEN, MAX_TENSOR_NAME_LEN,
};
pub use value::{Array, Metadata, Value, ValueType};
pub use writer::GgufWriter;

use crate::GgmlType;

/// Default alignment of the data section and of every tensor's data.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The four magic bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// The metadata key holding the alignment (a `u32` power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";

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
    ///
    /// Validated readers guarantee this does not overflow; for hand-built
    /// infos it saturates.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Bytes of tensor data. Validated readers guarantee this does not
    /// overflow; for hand-built infos it saturates.
    pub fn n_bytes(&self) -> u64 {
        let n = self.n_elements();
        let bs = self.ggml_type.block_size() as u64;
        (n / bs).saturating_mul(self.ggml_type.type_size() as u64)
    }
}
