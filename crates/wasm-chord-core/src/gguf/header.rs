//! Parsing and validating the header: magic, version, metadata, tensor infos
//! and the placement of every tensor's data.

use std::collections::HashSet;
use std::ops::Range;

use super::cursor::Cursor;
use super::limits::{Limits, MAX_DIMS, MAX_TENSOR_NAME_LEN};
use super::read_meta::read_metadata;
use super::{GgufError, Metadata, TensorInfo, Value, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
use crate::GgmlType;

/// Bytes the smallest tensor info takes in a file: name length, one name
/// byte, dim count, one dim, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;

/// A parsed and validated GGUF header.
///
/// Invariants after [`parse_header`]: every tensor's data lies inside the file,
/// starts at a multiple of `alignment` within the data section, does not
/// overlap another tensor's, and its byte size does not overflow; and
/// `data_offset <= file_len`.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/value pairs in file order.
    pub metadata: Metadata,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section and of each tensor's data.
    pub alignment: u64,
    /// Absolute offset of the data section. For a file without tensors this is
    /// the padded header end capped at the file length.
    pub data_offset: u64,
}

impl GgufHeader {
    /// Absolute byte range of a tensor's data in the file, or `None` when the
    /// range overflows (never for infos of this header).
    pub fn tensor_range(&self, info: &TensorInfo) -> Option<Range<u64>> {
        let start = self.data_offset.checked_add(info.offset)?;
        let bytes = tensor_bytes(&info.dims, info.ggml_type)?;
        Some(start..start.checked_add(bytes)?)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parses and validates the header from `prefix`, the first bytes of a file
/// of total length `file_len`.
///
/// A prefix that ends before the header does gives [`GgufError::Truncated`]
/// (with the prefix length needed to get further); a file that ends inside
/// its header gives [`GgufError::UnexpectedEof`]. Tensor data need not be in
/// the prefix, but its placement is checked against `file_len`.
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<GgufHeader, GgufError> {
    parse_header_with_limits(prefix, file_len, &Limits::default())
}

/// [`parse_header`] with other caps on metadata (tighter for a browser, say).
pub fn parse_header_with_limits(
    prefix: &[u8],
    file_len: u64,
    limits: &Limits,
) -> Result<GgufHeader, GgufError> {
    let mut cur = Cursor::new(prefix, file_len);
    let magic: [u8; 4] = cur.array()?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = check_version(cur.u32()?)?;
    let n_tensors_offset = cur.pos();
    let n_tensors = cur.u64()?;
    let n_kv = cur.u64()?;
    // Each tensor info needs bytes after the metadata; check the count early
    // so that a huge count fails before any metadata is read.
    if n_tensors.saturating_mul(MIN_TENSOR_INFO_BYTES) > cur.remaining_in_file() {
        return Err(GgufError::CountExceedsFile {
            what: "tensor count",
            count: n_tensors,
            offset: n_tensors_offset,
            remaining: cur.remaining_in_file(),
        });
    }
    let metadata = read_metadata(&mut cur, n_kv, limits)?;
    let alignment = alignment_of(&metadata)?;
    let tensors = read_tensor_infos(&mut cur, n_tensors, n_tensors_offset)?;

    let header_end = cur.pos();
    let padded = align_up(header_end, alignment).ok_or(GgufError::DataOffsetOutOfBounds {
        data_offset: u64::MAX,
        file_len,
    })?;
    let data_offset = if tensors.is_empty() {
        padded.min(file_len)
    } else if padded > file_len {
        return Err(GgufError::DataOffsetOutOfBounds {
            data_offset: padded,
            file_len,
        });
    } else {
        padded
    };
    check_placement(&tensors, alignment, data_offset, file_len)?;
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// Accepts versions 2 and 3, naming the ways others fail.
pub(crate) fn check_version(version: u32) -> Result<u32, GgufError> {
    match version {
        2 | 3 => Ok(version),
        1 => Err(GgufError::VersionOne),
        // A version written big-endian has its low 16 bits zero.
        v if v & 0xFFFF == 0 && v != 0 => Err(GgufError::BigEndian { version: v }),
        v => Err(GgufError::UnsupportedVersion { version: v }),
    }
}

/// The alignment from `general.alignment` (a `u32` power of two) or the default.
pub(crate) fn alignment_of(metadata: &Metadata) -> Result<u64, GgufError> {
    let alignment = match metadata.get(ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) => u64::from(*a),
        Some(other) => {
            return Err(GgufError::AlignmentType {
                found: other.value_type(),
            })
        }
    };
    if !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment { alignment });
    }
    Ok(alignment)
}

/// `n` rounded up to a multiple of `align` (a power of two).
pub(crate) fn align_up(n: u64, align: u64) -> Option<u64> {
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Bytes of a tensor's data: `None` when the element count exceeds
/// `i64::MAX` (as llama.cpp requires), the row is not a block multiple, or the
/// byte size overflows.
pub(crate) fn tensor_bytes(dims: &[u64], ty: GgmlType) -> Option<u64> {
    let mut n: u64 = 1;
    for &d in dims {
        n = n.checked_mul(d)?;
    }
    if n > i64::MAX as u64 {
        return None;
    }
    let (&row, rest) = dims.split_first()?;
    rest.iter()
        .try_fold(ty.row_bytes(row)?, |acc, &d| acc.checked_mul(d))
}

/// Checks a tensor's shape and type, returning its byte size.
pub(crate) fn check_shape(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, GgufError> {
    let n_dims = u32::try_from(dims.len()).unwrap_or(u32::MAX);
    if dims.is_empty() || n_dims > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            tensor: name.to_owned(),
            n_dims,
            max: MAX_DIMS,
        });
    }
    if dims.contains(&0) {
        return Err(GgufError::ZeroDim {
            tensor: name.to_owned(),
            dims: dims.to_vec(),
        });
    }
    let overflow = || GgufError::ShapeOverflow {
        tensor: name.to_owned(),
        dims: dims.to_vec(),
    };
    if dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .is_none()
    {
        return Err(overflow());
    }
    let Some(&row_len) = dims.first() else {
        return Err(overflow());
    };
    let block_size = ty.block_size() as u64;
    if row_len % block_size != 0 {
        return Err(GgufError::RowNotBlockMultiple {
            tensor: name.to_owned(),
            ggml_type: ty,
            row_len,
            block_size,
        });
    }
    tensor_bytes(dims, ty).ok_or_else(overflow)
}

fn read_tensor_infos(
    cur: &mut Cursor<'_>,
    n_tensors: u64,
    count_offset: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    if n_tensors.saturating_mul(MIN_TENSOR_INFO_BYTES) > cur.remaining_in_file() {
        return Err(GgufError::CountExceedsFile {
            what: "tensor count",
            count: n_tensors,
            offset: count_offset,
            remaining: cur.remaining_in_file(),
        });
    }
    let cap = (cur.remaining_in_prefix() as u64 / MIN_TENSOR_INFO_BYTES).min(n_tensors);
    let mut tensors = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    let mut seen: HashSet<String> = HashSet::new();
    for _ in 0..n_tensors {
        let name_offset = cur.pos();
        let len = cur.u64()?;
        if len > MAX_TENSOR_NAME_LEN {
            return Err(GgufError::TensorNameTooLong {
                offset: name_offset,
                len,
                max: MAX_TENSOR_NAME_LEN,
            });
        }
        let bytes_offset = cur.pos();
        let name = match std::str::from_utf8(cur.take(len)?) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                return Err(GgufError::InvalidUtf8 {
                    context: "tensor name".to_owned(),
                    offset: bytes_offset,
                })
            }
        };
        if !seen.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { name });
        }
        let n_dims = cur.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                tensor: name,
                n_dims,
                max: MAX_DIMS,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cur.u64()?);
        }
        let id = cur.u32()?;
        let ggml_type = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownGgmlType {
            tensor: name.clone(),
            id,
        })?;
        check_shape(&name, &dims, ggml_type)?;
        let offset = cur.u64()?;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    Ok(tensors)
}

/// Checks that every tensor's data is aligned, inside the file and not
/// overlapping another's.
fn check_placement(
    tensors: &[TensorInfo],
    alignment: u64,
    data_offset: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    let mut spans = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        // Shapes were checked, so the size is known not to overflow.
        let len = tensor_bytes(&t.dims, t.ggml_type).unwrap_or(u64::MAX);
        let start = data_offset.saturating_add(t.offset);
        match start.checked_add(len) {
            Some(end) if end <= file_len => spans.push((t.offset, t.offset + len, t.name.as_str())),
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start,
                    len,
                    file_len,
                })
            }
        }
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if let [(_, end, first), (start, _, second)] = pair {
            if start < end {
                return Err(GgufError::OverlappingTensors {
                    first: (*first).to_owned(),
                    second: (*second).to_owned(),
                });
            }
        }
    }
    Ok(())
}
