//! Caps the reader applies to every file before it allocates.

/// Longest metadata key, in bytes.
pub const MAX_KEY_LEN: u64 = 64 * 1024;

/// Longest string value (or string array element), in bytes.
pub const MAX_STRING_LEN: u64 = 16 * 1024 * 1024;

/// Longest tensor name, in bytes (llama.cpp's `GGML_MAX_NAME` less the NUL).
pub const MAX_TENSOR_NAME_LEN: u64 = 63;

/// Most elements in one metadata array.
pub const MAX_ARRAY_LEN: u64 = 64 * 1024 * 1024;

/// Deepest nesting of arrays of arrays (a plain array has depth 1).
pub const MAX_ARRAY_DEPTH: usize = 4;

/// Most memory the parsed metadata may take, in bytes (approximate: string and
/// array contents plus per-item overhead).
pub const MAX_METADATA_BYTES: u64 = 512 * 1024 * 1024;

/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// The caps [`parse_header_with_limits`](super::parse_header_with_limits)
/// applies; [`Limits::default`] holds the constants of this module, which
/// [`parse_header`](super::parse_header) and [`GgufFile`](super::GgufFile) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest metadata key, in bytes.
    pub max_key_len: u64,
    /// Longest string value, in bytes.
    pub max_string_len: u64,
    /// Most elements in one metadata array.
    pub max_array_len: u64,
    /// Deepest nesting of arrays of arrays.
    pub max_array_depth: usize,
    /// Most memory the parsed metadata may take, in bytes.
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_len: MAX_KEY_LEN,
            max_string_len: MAX_STRING_LEN,
            max_array_len: MAX_ARRAY_LEN,
            max_array_depth: MAX_ARRAY_DEPTH,
            max_metadata_bytes: MAX_METADATA_BYTES,
        }
    }
}
