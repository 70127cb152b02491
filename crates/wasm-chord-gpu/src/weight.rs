//! Weights on the device: a GGUF tensor's bytes, as stored, in one storage
//! buffer, or in several when it is larger than one binding may be (split
//! by rows, each part a whole number of rows).

use std::sync::Arc;

use crate::context::Ctx;
use wasm_chord_core::backend::{BackendError, Result, TensorBytes};
use wasm_chord_core::gguf::TensorInfo;
use wasm_chord_core::GgmlType;

/// Weight types the kernels decode (matmul and embed).
pub const GPU_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// The WGSL name suffix of a supported type's decoder.
pub(crate) fn wgsl_name(ty: GgmlType) -> Option<&'static str> {
    Some(match ty {
        GgmlType::F32 => "f32",
        GgmlType::F16 => "f16",
        GgmlType::Q4_0 => "q4_0",
        GgmlType::Q5_0 => "q5_0",
        GgmlType::Q8_0 => "q8_0",
        GgmlType::Q4_K => "q4_k",
        GgmlType::Q5_K => "q5_k",
        GgmlType::Q6_K => "q6_k",
        _ => return None,
    })
}

/// One part of a weight: rows `first .. first + rows`.
#[derive(Debug)]
pub(crate) struct Part {
    pub buf: wgpu::Buffer,
    pub first: usize,
    pub rows: usize,
}

/// A weight uploaded to the device, in its GGUF type.
#[derive(Debug)]
pub struct GpuWeight {
    pub(crate) ty: GgmlType,
    pub(crate) cols: usize,
    pub(crate) rows: usize,
    pub(crate) row_bytes: usize,
    pub(crate) parts: Vec<Part>,
    /// Told when the weight is dropped (its cached bind groups go too).
    ctx: Arc<Ctx>,
}

impl Drop for GpuWeight {
    fn drop(&mut self) {
        for p in &self.parts {
            self.ctx.forget(&p.buf);
        }
    }
}

impl GpuWeight {
    /// The stored type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of device buffers holding it (more than one when it was split).
    pub fn n_parts(&self) -> usize {
        self.parts.len()
    }
}

fn shape(detail: String) -> BackendError {
    BackendError::Shape {
        op: "upload_weight",
        detail,
    }
}

/// Uploads `data` (the bytes of `info`), split by rows into parts of at most
/// `max_part` bytes.
pub(crate) fn upload(
    ctx: &Arc<Ctx>,
    info: &TensorInfo,
    data: &TensorBytes,
    max_part: u64,
) -> Result<GpuWeight> {
    let to_usize =
        |v: u64| usize::try_from(v).map_err(|_| shape(format!("{} too large", info.name)));
    let cols = to_usize(info.dims.first().copied().unwrap_or(1))?;
    let rows = info
        .dims
        .iter()
        .skip(1)
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| shape(format!("{}: dims overflow", info.name)))?;
    let rows = to_usize(rows)?;
    let row_bytes = info
        .ggml_type
        .row_bytes(cols as u64)
        .ok_or_else(|| shape(format!("{}: row of {cols} values", info.name)))?;
    let row_bytes = to_usize(row_bytes)?;
    let total = row_bytes
        .checked_mul(rows)
        .ok_or_else(|| shape(format!("{}: size overflows", info.name)))?;
    if data.len() != total {
        return Err(shape(format!(
            "{}: {} bytes, expected {total}",
            info.name,
            data.len()
        )));
    }
    let bytes = data.as_slice();
    // Leave room for the padding word the decoders may read past a row.
    let per_part = if row_bytes == 0 {
        rows.max(1)
    } else {
        (max_part.saturating_sub(16) / row_bytes as u64).max(1) as usize
    };
    let mut parts = Vec::new();
    let mut first = 0;
    while first < rows || parts.is_empty() {
        let n = per_part.min(rows - first);
        let slice = &bytes[first * row_bytes..(first + n) * row_bytes];
        parts.push(Part {
            buf: ctx.storage_with(slice, &info.name)?,
            first,
            rows: n,
        });
        first += n;
        if n == 0 {
            break;
        }
    }
    Ok(GpuWeight {
        ty: info.ggml_type,
        cols,
        rows,
        row_bytes,
        parts,
        ctx: Arc::clone(ctx),
    })
}
