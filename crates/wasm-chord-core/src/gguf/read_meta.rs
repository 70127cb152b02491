//! Reading metadata key/value pairs, with every count and length checked
//! against the bytes left in the file and the caps in [`super::limits`].

use std::collections::HashSet;

use super::cursor::Cursor;
use super::limits::Limits;
use super::{Array, GgufError, Metadata, Value, ValueType};

/// Bytes the smallest key/value pair takes in a file: key length, one key
/// byte, value type, one value byte.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;

/// Approximate heap bytes charged per metadata entry and per string.
const ENTRY_OVERHEAD: u64 = 64;
const STRING_OVERHEAD: u64 = std::mem::size_of::<String>() as u64;

/// The caps in force and the memory the parsed metadata takes so far.
struct Budget<'l> {
    limits: &'l Limits,
    used: u64,
}

impl Budget<'_> {
    fn charge(&mut self, key: &str, bytes: u64) -> Result<(), GgufError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limits.max_metadata_bytes {
            return Err(GgufError::MetadataTooLarge {
                key: key.to_owned(),
                max: self.limits.max_metadata_bytes,
            });
        }
        Ok(())
    }
}

/// Reads `n_kv` key/value pairs.
pub(crate) fn read_metadata(
    cur: &mut Cursor<'_>,
    n_kv: u64,
    limits: &Limits,
) -> Result<Metadata, GgufError> {
    let offset = cur.pos().saturating_sub(8);
    if n_kv.saturating_mul(MIN_KV_BYTES) > cur.remaining_in_file() {
        return Err(GgufError::CountExceedsFile {
            what: "metadata count",
            count: n_kv,
            offset,
            remaining: cur.remaining_in_file(),
        });
    }
    let mut meta = Metadata::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut budget = Budget { limits, used: 0 };
    for _ in 0..n_kv {
        let key_offset = cur.pos();
        let len = cur.u64()?;
        if len > limits.max_key_len {
            return Err(GgufError::KeyTooLong {
                offset: key_offset,
                len,
                max: limits.max_key_len,
            });
        }
        if len == 0 {
            return Err(GgufError::EmptyKey { offset: key_offset });
        }
        let key = utf8(cur, len, || "key".to_owned())?;
        if !seen.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { key });
        }
        budget.charge(&key, ENTRY_OVERHEAD + len)?;
        let type_offset = cur.pos();
        let ty = value_type(cur.u32()?, &key, type_offset)?;
        let value = read_value(cur, &key, ty, &mut budget)?;
        meta.push_unique(key, value);
    }
    Ok(meta)
}

fn value_type(id: u32, key: &str, offset: u64) -> Result<ValueType, GgufError> {
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_owned(),
        id,
        offset,
    })
}

/// Reads `len` bytes as UTF-8.
fn utf8(
    cur: &mut Cursor<'_>,
    len: u64,
    context: impl FnOnce() -> String,
) -> Result<String, GgufError> {
    let offset = cur.pos();
    let bytes = cur.take(len)?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(GgufError::InvalidUtf8 {
            context: context(),
            offset,
        }),
    }
}

/// Reads a string value (length-prefixed) of metadata `key`.
fn read_string(
    cur: &mut Cursor<'_>,
    key: &str,
    budget: &mut Budget<'_>,
) -> Result<String, GgufError> {
    let offset = cur.pos();
    let len = cur.u64()?;
    let max = budget.limits.max_string_len;
    if len > max {
        return Err(GgufError::StringTooLong {
            key: key.to_owned(),
            offset,
            len,
            max,
        });
    }
    // The `String` itself is charged by its entry or its array.
    budget.charge(key, len)?;
    utf8(cur, len, || format!("value of `{key}`"))
}

fn read_bool(cur: &mut Cursor<'_>, key: &str) -> Result<bool, GgufError> {
    let offset = cur.pos();
    match cur.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(GgufError::InvalidBool {
            key: key.to_owned(),
            offset,
            byte,
        }),
    }
}

fn read_value(
    cur: &mut Cursor<'_>,
    key: &str,
    ty: ValueType,
    budget: &mut Budget<'_>,
) -> Result<Value, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.u8()?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array()?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array()?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array()?)),
        ValueType::U32 => Value::U32(cur.u32()?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array()?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array()?)),
        ValueType::Bool => Value::Bool(read_bool(cur, key)?),
        ValueType::String => Value::String(read_string(cur, key, budget)?),
        ValueType::Array => Value::Array(read_array(cur, key, 1, budget)?),
        ValueType::U64 => Value::U64(cur.u64()?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array()?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array()?)),
    })
}

/// Bytes one element of `ty` takes at least in a file, and in memory.
fn element_sizes(ty: ValueType) -> (u64, u64) {
    match ty {
        ValueType::U8 | ValueType::I8 | ValueType::Bool => (1, 1),
        ValueType::U16 | ValueType::I16 => (2, 2),
        ValueType::U32 | ValueType::I32 | ValueType::F32 => (4, 4),
        ValueType::U64 | ValueType::I64 | ValueType::F64 => (8, 8),
        ValueType::String => (8, STRING_OVERHEAD),
        ValueType::Array => (12, std::mem::size_of::<Array>() as u64),
    }
}

/// Reads `count` fixed-size little-endian numbers in one bounds check.
fn numbers<T, const N: usize>(
    cur: &mut Cursor<'_>,
    count: u64,
    from: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    let bytes = cur.take(count.saturating_mul(N as u64))?;
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        })
        .collect())
}

/// Reads an array (element type, count, elements) at nesting `depth` (1 for a
/// top-level array).
fn read_array(
    cur: &mut Cursor<'_>,
    key: &str,
    depth: usize,
    budget: &mut Budget<'_>,
) -> Result<Array, GgufError> {
    let type_offset = cur.pos();
    let ty = value_type(cur.u32()?, key, type_offset)?;
    let count_offset = cur.pos();
    let count = cur.u64()?;
    let max = budget.limits.max_array_len;
    if count > max {
        return Err(GgufError::ArrayTooLong {
            key: key.to_owned(),
            len: count,
            max,
        });
    }
    let (file_size, mem_size) = element_sizes(ty);
    let remaining = cur.remaining_in_file();
    if count.saturating_mul(file_size) > remaining {
        return Err(GgufError::ArrayExceedsFile {
            key: key.to_owned(),
            len: count,
            offset: count_offset,
            remaining,
        });
    }
    budget.charge(key, count.saturating_mul(mem_size))?;
    // Capacity for variable-size elements is bounded by what the prefix holds.
    let cap = |min: u64| -> usize {
        let fits = cur.remaining_in_prefix() as u64 / min;
        usize::try_from(count.min(fits)).unwrap_or(0)
    };
    Ok(match ty {
        ValueType::U8 => Array::U8(cur.take(count)?.to_vec()),
        ValueType::I8 => Array::I8(numbers(cur, count, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(numbers(cur, count, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(numbers(cur, count, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(numbers(cur, count, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(numbers(cur, count, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(numbers(cur, count, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(numbers(cur, count, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(numbers(cur, count, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(numbers(cur, count, f64::from_le_bytes)?),
        ValueType::Bool => {
            let mut v = Vec::with_capacity(cap(1));
            for _ in 0..count {
                v.push(read_bool(cur, key)?);
            }
            Array::Bool(v)
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(cap(8));
            for _ in 0..count {
                v.push(read_string(cur, key, budget)?);
            }
            Array::String(v)
        }
        ValueType::Array => {
            let max = budget.limits.max_array_depth;
            if depth >= max {
                return Err(GgufError::NestingTooDeep {
                    key: key.to_owned(),
                    max,
                });
            }
            let mut v = Vec::with_capacity(cap(12));
            for _ in 0..count {
                v.push(read_array(cur, key, depth + 1, budget)?);
            }
            Array::Array(v)
        }
    })
}
