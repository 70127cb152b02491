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
