//! Uploaded weights: GGUF tensors as candle `QTensor`s (quantized types stay
//! quantized on the device), dense tensors for float matrices, and f32
//! vectors for norms and biases.

use crate::{candle_err, shape};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::borrow::Cow;
use std::sync::Arc;
use wasm_chord_core::backend::{BackendError, Result, TensorBytes};
use wasm_chord_core::gguf::TensorInfo;
use wasm_chord_core::GgmlType;

/// Largest matrix (in values) whose unsupported type is expanded to f32 at
/// upload instead of being refused.
const MAX_DEQUANT_ELEMS: usize = 1 << 22;

/// Weight types [`crate::CandleBackend`] multiplies with, as stored.
pub const MATMUL_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// How a weight multiplies activations.
#[derive(Debug, Clone)]
pub(crate) enum Mat {
    /// A quantized matrix, kept in its GGUF block type.
    Quant(QMatMul),
    /// A float matrix (`rows × cols`). `acts` rounds activations to that
    /// type first, as ggml does for f16 and bf16 weights; `half` stores the
    /// matrix in f16 (device backends) and multiplies in f16 with f32
    /// accumulation.
    Dense {
        w: Tensor,
        acts: Option<DType>,
        half: bool,
    },
    /// A vector (norm weights, biases) as f32.
    Vector(Tensor),
}

/// A GGUF tensor uploaded to a candle device.
#[derive(Debug, Clone)]
pub struct CandleWeight {
    pub(crate) ty: GgmlType,
    pub(crate) cols: usize,
    pub(crate) rows: usize,
    /// The file's bytes, for host-side embedding lookups (zero-copy view).
    pub(crate) host: TensorBytes,
    pub(crate) mat: Mat,
}

impl CandleWeight {
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

    /// The weight as an f32 vector tensor (norms, biases).
    pub(crate) fn vector(&self, backend: &'static str, op: &'static str) -> Result<&Tensor> {
        match &self.mat {
            Mat::Vector(t) => Ok(t),
            _ => Err(BackendError::UnsupportedType {
                backend,
                op,
                ty: self.ty,
            }),
        }
    }

    /// `x (n × cols) → n × rows`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.mat {
            Mat::Quant(q) => q.forward(x),
            Mat::Dense { w, acts, half } => {
                if *half {
                    x.to_dtype(DType::F16)?
                        .matmul(&w.t()?)?
                        .to_dtype(DType::F32)
                } else if let Some(dt) = acts {
                    x.to_dtype(*dt)?.to_dtype(DType::F32)?.matmul(&w.t()?)
                } else {
                    x.matmul(&w.t()?)
                }
            }
            Mat::Vector(v) => x.matmul(&v.reshape((self.rows, self.cols))?.t()?),
        }
    }
}

fn candle_type(ty: GgmlType) -> Option<GgmlDType> {
    Some(match ty {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        GgmlType::Q4_K => GgmlDType::Q4K,
        GgmlType::Q5_K => GgmlDType::Q5K,
        GgmlType::Q6_K => GgmlDType::Q6K,
        _ => return None,
    })
}

/// Decodes any GGUF type to f32 on the host (core's reference dequantizers).
fn dequant_host(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let mut v = vec![0.0f32; n];
    wasm_chord_core::quant::dequantize(ty, bytes, &mut v)?;
    Ok(v)
}

/// Uploads `info`'s bytes to `device`. `backend` names the backend in errors.
pub(crate) fn upload(
    backend: &'static str,
    device: &Device,
    info: &TensorInfo,
    data: TensorBytes,
) -> Result<CandleWeight> {
    let op = "upload_weight";
    let cols = info.dims.first().copied().unwrap_or(1);
    let rows: u64 = info.dims.iter().skip(1).product();
    let to_usize =
        |v: u64| usize::try_from(v).map_err(|_| shape(op, format!("{} too large", info.name)));
    let (cols, rows) = (to_usize(cols)?, to_usize(rows)?);
    let expected = info.n_bytes();
    if data.len() as u64 != expected {
        return Err(shape(
            op,
            format!("{}: {} bytes, expected {expected}", info.name, data.len()),
        ));
    }
    let n = cols
        .checked_mul(rows)
        .ok_or_else(|| shape(op, format!("{} too large", info.name)))?;
    let ty = info.ggml_type;
    let bytes = data.as_slice();
    let mat = if rows == 1 {
        let v = dequant_host(ty, bytes, n)?;
        Mat::Vector(Tensor::from_vec(v, n, device).map_err(|e| candle_err(op, e))?)
    } else {
        match (ty, candle_type(ty)) {
            (GgmlType::F32, _) => {
                let v = dequant_host(ty, bytes, n)?;
                let w = Tensor::from_vec(v, (rows, cols), device).map_err(|e| candle_err(op, e))?;
                Mat::Dense {
                    w,
                    acts: None,
                    half: false,
                }
            }
            (GgmlType::F16 | GgmlType::BF16, _) => {
                let v = dequant_host(ty, bytes, n)?;
                let w = Tensor::from_vec(v, (rows, cols), device).map_err(|e| candle_err(op, e))?;
                // On GPUs keep the matrix in f16 and use the tensor cores;
                // candle's CPU f16 GEMM would accumulate in f16, so the CPU
                // device keeps f32 and rounds activations instead.
                let half = !device.is_cpu() && ty == GgmlType::F16;
                let w = if half {
                    w.to_dtype(DType::F16).map_err(|e| candle_err(op, e))?
                } else {
                    w
                };
                let acts = Some(if ty == GgmlType::F16 {
                    DType::F16
                } else {
                    DType::BF16
                });
                Mat::Dense { w, acts, half }
            }
            (_, Some(dt)) => {
                if cols % dt.block_size() != 0 {
                    return Err(shape(
                        op,
                        format!(
                            "{}: rows of {cols} not a multiple of {}",
                            info.name,
                            dt.block_size()
                        ),
                    ));
                }
                // candle reinterprets the bytes as blocks, which needs the
                // blocks' alignment: copy into 8-aligned memory when the view
                // is not aligned.
                let words;
                let aligned: &[u8] = if (bytes.as_ptr() as usize).is_multiple_of(8) {
                    bytes
                } else {
                    words = aligned_copy(bytes);
                    // SAFETY: `words` holds at least `bytes.len()` initialized
                    // bytes (u64s viewed as bytes, any bit pattern is a valid
                    // u8) and lives until the end of this arm.
                    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), bytes.len()) }
                };
                let aligned = Cow::Borrowed(aligned);
                let storage =
                    QStorage::from_data(aligned, device, dt).map_err(|e| candle_err(op, e))?;
                let qt = QTensor::new(storage, (rows, cols)).map_err(|e| candle_err(op, e))?;
                Mat::Quant(QMatMul::QTensor(Arc::new(qt)))
            }
            (_, None) if n <= MAX_DEQUANT_ELEMS => {
                let v = dequant_host(ty, bytes, n)?;
                let w = Tensor::from_vec(v, (rows, cols), device).map_err(|e| candle_err(op, e))?;
                Mat::Dense {
                    w,
                    acts: None,
                    half: false,
                }
            }
            (_, None) => {
                return Err(BackendError::UnsupportedType { backend, op, ty });
            }
        }
    };
    Ok(CandleWeight {
        ty,
        cols,
        rows,
        host: data,
        mat,
    })
}

/// `bytes` copied into `u64` words (8-aligned), zero-padded at the end.
fn aligned_copy(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_ne_bytes(b);
    }
    words
}
