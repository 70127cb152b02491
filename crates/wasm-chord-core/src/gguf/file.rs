//! A whole GGUF file in memory (memory-mapped natively), with its validated
//! header and zero-copy access to tensor data.

use std::collections::HashMap;

use super::header::{parse_header, GgufHeader};
use super::{GgufError, Metadata, TensorInfo};

/// Where the bytes of a [`GgufFile`] live.
enum Storage {
    /// A read-only memory map of the file.
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    /// Bytes owned in memory.
    Bytes(Vec<u8>),
}

impl Storage {
    fn as_slice(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Storage::Mmap(m) => m,
            Storage::Bytes(b) => b,
        }
    }
}

/// A validated GGUF file: its header plus the bytes that hold tensor data.
///
/// Opening checks every tensor's placement, so [`GgufFile::tensor_data`] never
/// reads out of bounds.
pub struct GgufFile {
    storage: Storage,
    header: GgufHeader,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("file_len", &self.file_len())
            .field("header", &self.header)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and validates the file at `path` (zero-copy).
    ///
    /// The map is read-only; as with any memory map, a file truncated or
    /// rewritten by another process while mapped is undefined behaviour, so do
    /// not modify model files while they are open.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, GgufError> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only and lives as long as `Self`; the file is
        // not expected to change while mapped (documented above). Every access
        // goes through bounds-checked slices.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Self::from_storage(Storage::Mmap(map))
    }

    /// Validates a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_storage(Storage::Bytes(bytes))
    }

    fn from_storage(storage: Storage) -> Result<Self, GgufError> {
        let bytes = storage.as_slice();
        let header = parse_header(bytes, bytes.len() as u64)?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            storage,
            header,
            by_name,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name
            .get(name)
            .and_then(|&i| self.header.tensors.get(i))
    }

    /// The data of a tensor of this file. An info that does not describe data
    /// inside this file (one from another file, or edited) gives an empty
    /// slice; use [`GgufFile::try_tensor_data`] to tell that apart.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        self.try_tensor_data(info).unwrap_or(&[])
    }

    /// The data of a tensor, or `None` when `info` describes bytes outside
    /// this file.
    pub fn try_tensor_data(&self, info: &TensorInfo) -> Option<&[u8]> {
        let range = self.header.tensor_range(info)?;
        let start = usize::try_from(range.start).ok()?;
        let end = usize::try_from(range.end).ok()?;
        self.storage.as_slice().get(start..end)
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.as_slice()
    }

    /// Length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.as_slice().len() as u64
    }
}
