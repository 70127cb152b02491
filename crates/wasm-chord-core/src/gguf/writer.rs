//! Writing GGUF files, validating what is written so that the reader accepts it.

use std::collections::HashSet;
use std::io::Write;

use super::header::{align_up, alignment_of, check_shape, check_version};
use super::limits::{
    MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_KEY_LEN, MAX_STRING_LEN, MAX_TENSOR_NAME_LEN,
};
use super::{Array, GgufError, Metadata, Value, MAGIC};
use crate::GgmlType;

/// One tensor queued for writing.
#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file: metadata, then tensors in the order added, each at an
/// offset aligned to `general.alignment` (default 32).
///
/// ```
/// use wasm_chord_core::gguf::{GgufFile, GgufWriter, Value};
/// use wasm_chord_core::GgmlType;
///
/// let mut w = GgufWriter::new();
/// w.metadata_mut().insert("general.architecture", Value::String("llama".into()));
/// w.add_tensor("x", &[2], GgmlType::F32, [0u8; 8].as_slice()).unwrap();
/// let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
/// assert_eq!(file.tensors()[0].name, "x");
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version 3 file.
    pub fn new() -> Self {
        Self {
            version: 3,
            metadata: Metadata::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Sets the format version (2 or 3; the two share one layout).
    pub fn set_version(&mut self, version: u32) -> Result<&mut Self, GgufError> {
        self.version = check_version(version)?;
        Ok(self)
    }

    /// The format version to be written.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Replaces all metadata.
    pub fn set_metadata(&mut self, metadata: Metadata) -> &mut Self {
        self.metadata = metadata;
        self
    }

    /// The metadata to be written, for inserting keys.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The metadata to be written.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Adds a tensor with `dims` innermost first. Checks the name (unique, at
    /// most [`MAX_TENSOR_NAME_LEN`] bytes), the shape (1 to 4 nonzero dims,
    /// rows a multiple of the block size, no overflow) and that `data` has
    /// exactly the bytes the shape needs.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        if name.len() as u64 > MAX_TENSOR_NAME_LEN {
            return Err(GgufError::TensorNameTooLong {
                offset: 0,
                len: name.len() as u64,
                max: MAX_TENSOR_NAME_LEN,
            });
        }
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor { name });
        }
        let expected = check_shape(&name, dims, ggml_type)?;
        let data = data.into();
        if data.len() as u64 != expected {
            return Err(GgufError::DataSizeMismatch {
                tensor: name,
                expected,
                found: data.len() as u64,
            });
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        Ok(self)
    }

    /// Writes the file to `out`, streaming tensor data without copying it.
    pub fn write_to(&self, mut out: impl Write) -> Result<(), GgufError> {
        let (header, alignment) = self.header_bytes()?;
        out.write_all(&header)?;
        let zeros = vec![0u8; alignment as usize];
        for t in &self.tensors {
            out.write_all(&t.data)?;
            let rem = (t.data.len() as u64 % alignment) as usize;
            if rem != 0 {
                out.write_all(zeros.get(rem..).unwrap_or(&[]))?;
            }
        }
        Ok(())
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// The header with its padding up to the data section, and the alignment.
    fn header_bytes(&self) -> Result<(Vec<u8>, u64), GgufError> {
        let alignment = alignment_of(&self.metadata)?;
        for (key, value) in self.metadata.iter() {
            check_entry(key, value)?;
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, value) in self.metadata.iter() {
            put_str(&mut out, key);
            put_u32(&mut out, value.value_type().id());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ggml_type.id());
            put_u64(&mut out, offset);
            let end = offset.checked_add(t.data.len() as u64);
            offset = end.and_then(|e| align_up(e, alignment)).ok_or_else(|| {
                GgufError::ShapeOverflow {
                    tensor: t.name.clone(),
                    dims: t.dims.clone(),
                }
            })?;
        }
        pad(&mut out, alignment);
        Ok((out, alignment))
    }
}

/// Checks what the reader would reject in a key/value pair.
fn check_entry(key: &str, value: &Value) -> Result<(), GgufError> {
    if key.is_empty() {
        return Err(GgufError::EmptyKey { offset: 0 });
    }
    if key.len() as u64 > MAX_KEY_LEN {
        return Err(GgufError::KeyTooLong {
            offset: 0,
            len: key.len() as u64,
            max: MAX_KEY_LEN,
        });
    }
    let string_ok = |s: &str| {
        if s.len() as u64 > MAX_STRING_LEN {
            Err(GgufError::StringTooLong {
                key: key.to_owned(),
                offset: 0,
                len: s.len() as u64,
                max: MAX_STRING_LEN,
            })
        } else {
            Ok(())
        }
    };
    fn check_array(
        key: &str,
        a: &Array,
        depth: usize,
        string_ok: &dyn Fn(&str) -> Result<(), GgufError>,
    ) -> Result<(), GgufError> {
        if a.len() as u64 > MAX_ARRAY_LEN {
            return Err(GgufError::ArrayTooLong {
                key: key.to_owned(),
                len: a.len() as u64,
                max: MAX_ARRAY_LEN,
            });
        }
        match a {
            Array::String(v) => v.iter().try_for_each(|s| string_ok(s)),
            Array::Array(v) => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        key: key.to_owned(),
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                v.iter()
                    .try_for_each(|c| check_array(key, c, depth + 1, string_ok))
            }
            _ => Ok(()),
        }
    }
    match value {
        Value::String(s) => string_ok(s),
        Value::Array(a) => check_array(key, a, 1, &string_ok),
        _ => Ok(()),
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    let rem = (out.len() as u64 % alignment) as usize;
    if rem != 0 {
        out.resize(out.len() + (alignment as usize - rem), 0);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => put_u32(out, *v),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(v) => put_u64(out, *v),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    put_u32(out, a.element_type().id());
    put_u64(out, a.len() as u64);
    macro_rules! nums {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => nums!(v),
        Array::U16(v) => nums!(v),
        Array::I16(v) => nums!(v),
        Array::U32(v) => nums!(v),
        Array::I32(v) => nums!(v),
        Array::F32(v) => nums!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|c| put_array(out, c)),
        Array::U64(v) => nums!(v),
        Array::I64(v) => nums!(v),
        Array::F64(v) => nums!(v),
    }
}
