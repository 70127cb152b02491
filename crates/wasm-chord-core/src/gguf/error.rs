//! The classes of damage the GGUF reader rejects and the writer refuses.

use super::ValueType;
use crate::GgmlType;

/// Errors reading or writing GGUF files and looking up metadata.
///
/// Offsets are byte offsets from the start of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An I/O error opening, mapping or writing the file.
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
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// GGUF v1 (32-bit counts) is no longer supported.
    #[error("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)")]
    VersionOne,
    /// The version reads byte-swapped: the file was written big-endian.
    #[error("GGUF version {version:#x} looks byte-swapped: big-endian files are not supported")]
    BigEndian {
        /// The version as read little-endian.
        version: u32,
    },
    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion {
        /// The version in the file (or asked of the writer).
        version: u32,
    },
    /// The prefix handed to [`parse_header`](super::parse_header) ends before
    /// the header does; the file itself may be fine. Retry with at least
    /// `needed` bytes.
    #[error("header prefix ends at {available} bytes; need at least {needed} (reading at offset {offset})")]
    Truncated {
        /// Where the read that failed starts.
        offset: u64,
        /// Prefix length needed for this read to succeed (a lower bound for the whole header).
        needed: u64,
        /// Length of the prefix given.
        available: u64,
    },
    /// The file ends inside the header.
    #[error(
        "file ends at {file_len} bytes inside the header (reading {len} bytes at offset {offset})"
    )]
    UnexpectedEof {
        /// Where the read that failed starts.
        offset: u64,
        /// Bytes the read wanted.
        len: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The tensor count or metadata count cannot fit in the rest of the file.
    #[error(
        "{what} {count} at offset {offset} cannot fit in the {remaining} bytes left in the file"
    )]
    CountExceedsFile {
        /// Which count (`tensor count`, `metadata count`).
        what: &'static str,
        /// The count read.
        count: u64,
        /// Offset of the count.
        offset: u64,
        /// Bytes left in the file after the count.
        remaining: u64,
    },
    /// A metadata array's elements cannot fit in the rest of the file.
    #[error("array `{key}` of {len} elements at offset {offset} cannot fit in the {remaining} bytes left")]
    ArrayExceedsFile {
        /// The metadata key holding the array.
        key: String,
        /// The element count read.
        len: u64,
        /// Offset of the element count.
        offset: u64,
        /// Bytes left in the file after the count.
        remaining: u64,
    },
    /// A metadata array has more elements than [`MAX_ARRAY_LEN`](super::MAX_ARRAY_LEN).
    #[error("array `{key}` has {len} elements, more than the cap of {max}")]
    ArrayTooLong {
        /// The metadata key holding the array.
        key: String,
        /// The element count read.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Arrays of arrays nest deeper than [`MAX_ARRAY_DEPTH`](super::MAX_ARRAY_DEPTH).
    #[error("array `{key}` nests deeper than {max} levels")]
    NestingTooDeep {
        /// The metadata key holding the array.
        key: String,
        /// The cap.
        max: usize,
    },
    /// A metadata key is longer than [`MAX_KEY_LEN`](super::MAX_KEY_LEN).
    #[error("metadata key at offset {offset} is {len} bytes long, more than the cap of {max}")]
    KeyTooLong {
        /// Offset of the key's length.
        offset: u64,
        /// The length read.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A metadata key is empty.
    #[error("metadata key at offset {offset} is empty")]
    EmptyKey {
        /// Offset of the key's length (0 for the writer).
        offset: u64,
    },
    /// A metadata key appears twice.
    #[error("metadata key `{key}` appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A string value is longer than [`MAX_STRING_LEN`](super::MAX_STRING_LEN).
    #[error(
        "string in `{key}` at offset {offset} is {len} bytes long, more than the cap of {max}"
    )]
    StringTooLong {
        /// The metadata key holding the string.
        key: String,
        /// Offset of the string's length.
        offset: u64,
        /// The length read.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A string (key, value or tensor name) is not valid UTF-8.
    #[error("string at offset {offset} in {context} is not valid UTF-8")]
    InvalidUtf8 {
        /// What the string is (`key`, `value of <key>`, `tensor name`).
        context: String,
        /// Offset of the string's bytes.
        offset: u64,
    },
    /// A metadata value type id is out of range.
    #[error("metadata `{key}` has unknown value type id {id} at offset {offset}")]
    UnknownValueType {
        /// The metadata key.
        key: String,
        /// The id read.
        id: u32,
        /// Offset of the id.
        offset: u64,
    },
    /// A `bool` value is neither 0 nor 1.
    #[error("bool in `{key}` at offset {offset} is {byte}, expected 0 or 1")]
    InvalidBool {
        /// The metadata key.
        key: String,
        /// Offset of the byte.
        offset: u64,
        /// The byte read.
        byte: u8,
    },
    /// The parsed metadata would take more than
    /// [`MAX_METADATA_BYTES`](super::MAX_METADATA_BYTES) of memory.
    #[error("metadata needs more than {max} bytes of memory (at key `{key}`)")]
    MetadataTooLarge {
        /// The key being read when the cap was passed.
        key: String,
        /// The cap.
        max: u64,
    },
    /// `general.alignment` is not a `u32`.
    #[error("general.alignment has type {}, expected UINT32", found.name())]
    AlignmentType {
        /// The type stored.
        found: ValueType,
    },
    /// The alignment is zero or not a power of two.
    #[error("alignment {alignment} is not a nonzero power of two")]
    BadAlignment {
        /// The alignment.
        alignment: u64,
    },
    /// A tensor name is longer than [`MAX_TENSOR_NAME_LEN`](super::MAX_TENSOR_NAME_LEN).
    #[error("tensor name at offset {offset} is {len} bytes long, more than the cap of {max}")]
    TensorNameTooLong {
        /// Offset of the name's length (0 for the writer).
        offset: u64,
        /// The length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Two tensors have the same name.
    #[error("tensor `{name}` appears twice")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor has more than [`MAX_DIMS`](super::MAX_DIMS) dimensions (or none).
    #[error("tensor `{tensor}` has {n_dims} dimensions, expected 1 to {max}")]
    BadDimCount {
        /// The tensor name.
        tensor: String,
        /// The count read.
        n_dims: u32,
        /// The cap.
        max: u32,
    },
    /// A tensor has a zero dimension.
    #[error("tensor `{tensor}` has a zero dimension: {dims:?}")]
    ZeroDim {
        /// The tensor name.
        tensor: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// A tensor's element count or byte size overflows.
    #[error("tensor `{tensor}` with dims {dims:?} overflows its element count or byte size")]
    ShapeOverflow {
        /// The tensor name.
        tensor: String,
        /// Its dims.
        dims: Vec<u64>,
    },
    /// A tensor's ggml type id is unknown.
    #[error("tensor `{tensor}` has unknown ggml type id {id}")]
    UnknownGgmlType {
        /// The tensor name.
        tensor: String,
        /// The id read.
        id: u32,
    },
    /// A tensor's row length is not a multiple of its type's block size.
    #[error("tensor `{tensor}` of type {ggml_type} has rows of {row_len} elements, not a multiple of {block_size}")]
    RowNotBlockMultiple {
        /// The tensor name.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
        /// `dims[0]`.
        row_len: u64,
        /// The type's block size.
        block_size: u64,
    },
    /// A tensor's offset is not a multiple of the alignment.
    #[error(
        "tensor `{tensor}` data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor name.
        tensor: String,
        /// Its offset within the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor's data reaches past the end of the file.
    #[error("tensor `{tensor}` data [{start}, {start}+{len}) reaches past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        /// The tensor name.
        tensor: String,
        /// Absolute offset of its data (saturated on overflow).
        start: u64,
        /// Its byte size.
        len: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The header (with its padding) reaches past the end of the file.
    #[error(
        "data section at offset {data_offset} starts past the end of the file ({file_len} bytes)"
    )]
    DataOffsetOutOfBounds {
        /// Where the data section would start.
        data_offset: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// Two tensors' data overlap.
    #[error("tensors `{first}` and `{second}` overlap in the data section")]
    OverlappingTensors {
        /// The tensor with the lower offset.
        first: String,
        /// The tensor starting inside it.
        second: String,
    },
    /// The writer was given tensor data of the wrong length.
    #[error("tensor `{tensor}` needs {expected} bytes of data, got {found}")]
    DataSizeMismatch {
        /// The tensor name.
        tensor: String,
        /// Bytes its dims and type need.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
}
