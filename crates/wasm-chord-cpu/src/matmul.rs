//! Quantized matrix multiplication and embedding lookup (scalar reference).

use crate::{need, shape, CpuWeight};
use half::{bf16, f16};
use rayon::prelude::*;
use wasm_chord_core::backend::{BackendError, Result};
use wasm_chord_core::quant::{self, *};
use wasm_chord_core::GgmlType;

/// Weight types [`matmul`] accepts.
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
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Rows of the weight handled by one parallel task.
const ROWS_PER_TASK: usize = 16;

/// `out[t][r] = Σ_i x[t][i] · W[r][i]`.
pub fn matmul(w: &CpuWeight, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<()> {
    need("matmul", "x", x.len(), n_tokens * w.cols)?;
    need("matmul", "out", out.len(), n_tokens * w.rows)?;
    let out = &mut out[..n_tokens * w.rows];
    let x = &x[..n_tokens * w.cols];
    match w.ty {
        GgmlType::F32 => mm::<f32>(w, x, n_tokens, out),
        GgmlType::F16 => mm::<f16>(w, x, n_tokens, out),
        GgmlType::BF16 => mm::<bf16>(w, x, n_tokens, out),
        GgmlType::Q4_0 => mm::<BlockQ4_0>(w, x, n_tokens, out),
        GgmlType::Q4_1 => mm::<BlockQ4_1>(w, x, n_tokens, out),
        GgmlType::Q5_0 => mm::<BlockQ5_0>(w, x, n_tokens, out),
        GgmlType::Q5_1 => mm::<BlockQ5_1>(w, x, n_tokens, out),
        GgmlType::Q8_0 => mm::<BlockQ8_0>(w, x, n_tokens, out),
        GgmlType::Q2_K => mm::<BlockQ2K>(w, x, n_tokens, out),
        GgmlType::Q3_K => mm::<BlockQ3K>(w, x, n_tokens, out),
        GgmlType::Q4_K => mm::<BlockQ4K>(w, x, n_tokens, out),
        GgmlType::Q5_K => mm::<BlockQ5K>(w, x, n_tokens, out),
        GgmlType::Q6_K => mm::<BlockQ6K>(w, x, n_tokens, out),
        GgmlType::IQ4_NL => mm::<BlockIQ4NL>(w, x, n_tokens, out),
        GgmlType::IQ4_XS => mm::<BlockIQ4XS>(w, x, n_tokens, out),
        ty => Err(BackendError::UnsupportedType {
            backend: "cpu",
            op: "matmul",
            ty,
        }),
    }
}

fn mm<B: GgmlBlock>(w: &CpuWeight, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<()> {
    let cols = w.cols;
    if cols % B::BLCK_SIZE != 0 {
        return Err(shape(
            "matmul",
            format!("row of {cols} not a multiple of {}", B::BLCK_SIZE),
        ));
    }
    let nb = cols / B::BLCK_SIZE;
    // Activations are quantized once per token row into the weight type's
    // vec-dot partner, as ggml-cpu does.
    let act_per_block = <B::VecDotType as GgmlBlock>::BLCK_SIZE;
    let n_act_blocks = cols / act_per_block;
    let mut acts = vec![<B::VecDotType as Default>::default(); n_tokens * n_act_blocks];
    for (xr, ar) in x
        .chunks_exact(cols)
        .zip(acts.chunks_exact_mut(n_act_blocks.max(1)))
    {
        <B::VecDotType as GgmlBlock>::from_float(xr, ar)?;
    }
    let data = w.data.as_slice();
    let row_bytes = nb * B::TYPE_SIZE;
    need("matmul", "weight bytes", data.len(), row_bytes * w.rows)?;
    let tasks: Vec<Result<Vec<f32>>> = (0..w.rows.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let r0 = task * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(w.rows);
            let mut res = Vec::with_capacity((r1 - r0) * n_tokens);
            let mut blocks: Vec<B> = Vec::with_capacity(nb);
            for r in r0..r1 {
                let row = &data[r * row_bytes..(r + 1) * row_bytes];
                blocks.clear();
                blocks.extend(row.chunks_exact(B::TYPE_SIZE).map(B::read));
                for t in 0..n_tokens {
                    let a = &acts[t * n_act_blocks..(t + 1) * n_act_blocks];
                    res.push(B::vec_dot(cols, &blocks, a)?);
                }
            }
            Ok(res)
        })
        .collect();
    for (task, res) in tasks.into_iter().enumerate() {
        let res = res?;
        let r0 = task * ROWS_PER_TASK;
        for (i, chunk) in res.chunks_exact(n_tokens).enumerate() {
            for (t, v) in chunk.iter().enumerate() {
                out[t * w.rows + r0 + i] = *v;
            }
        }
    }
    Ok(())
}

/// `out[t] = table[tokens[t]] · scale`.
pub fn embed(table: &CpuWeight, tokens: &[u32], scale: f32, out: &mut [f32]) -> Result<()> {
    let cols = table.cols;
    need("embed", "out", out.len(), tokens.len() * cols)?;
    let row_bytes = table
        .ty
        .row_bytes(cols as u64)
        .ok_or_else(|| shape("embed", format!("row of {cols} values")))?
        as usize;
    let data = table.data.as_slice();
    for (t, &id) in tokens.iter().enumerate() {
        let r = id as usize;
        if r >= table.rows {
            return Err(BackendError::TokenOutOfRange {
                id,
                n_vocab: table.rows,
            });
        }
        let row = data
            .get(r * row_bytes..(r + 1) * row_bytes)
            .ok_or_else(|| shape("embed", format!("row {r} outside the table")))?;
        let dst = &mut out[t * cols..(t + 1) * cols];
        quant::dequantize(table.ty, row, dst)?;
        if scale != 1.0 {
            for v in dst.iter_mut() {
                *v *= scale;
            }
        }
    }
    Ok(())
}
