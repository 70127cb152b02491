//! Quantized matrix multiplication and embedding lookup: activations are
//! quantized once per token, then each weight row is dotted with them by the
//! fastest kernel for its type (see `kernels`), or the scalar reference.

use crate::kernels::tiled::{self, Tiling, TILE_PAIRS, TILE_ROWS};
use crate::kernels::{self, RowKernel};
use crate::scratch::Pool;
use crate::{need, shape, CpuWeight};
use half::{bf16, f16};
use rayon::prelude::*;
use wasm_chord_core::backend::{BackendError, Result};
use wasm_chord_core::quant::{self, *};
use wasm_chord_core::GgmlType;

/// Weight types the CPU backend's matmul accepts.
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
pub(crate) fn matmul(
    w: &CpuWeight,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    pool: &Pool,
) -> Result<()> {
    need("matmul", "x", x.len(), n_tokens * w.cols)?;
    need("matmul", "out", out.len(), n_tokens * w.rows)?;
    let out = &mut out[..n_tokens * w.rows];
    let x = &x[..n_tokens * w.cols];
    if n_tokens == 1 && tiled::available() {
        match w.ty {
            GgmlType::Q8_0 => return mv_tiled(w, x, out, tiled::Kind::Q8_0),
            GgmlType::Q5_0 => return mv_tiled(w, x, out, tiled::Kind::Q5_0),
            GgmlType::Q4_0 => return mv_tiled(w, x, out, tiled::Kind::Q4_0),
            _ => {}
        }
    }
    if n_tokens >= TILED_MIN_TOKENS && tiled::available() {
        match w.ty {
            GgmlType::Q8_0 => return mm_tiled(w, x, n_tokens, out, pool, tiled::Kind::Q8_0),
            GgmlType::Q5_0 => return mm_tiled(w, x, n_tokens, out, pool, tiled::Kind::Q5_0),
            GgmlType::Q4_0 => return mm_tiled(w, x, n_tokens, out, pool, tiled::Kind::Q4_0),
            GgmlType::Q4_K => return mm_tiled(w, x, n_tokens, out, pool, tiled::Q4K),
            GgmlType::Q6_K => return mm_tiled(w, x, n_tokens, out, pool, tiled::Q6K),
            _ => {}
        }
    }
    match w.ty {
        GgmlType::F32 => mm::<f32>(w, x, n_tokens, out, RowKernel::scalar::<f32>()),
        GgmlType::F16 => mm::<f16>(w, x, n_tokens, out, RowKernel::scalar::<f16>()),
        GgmlType::BF16 => mm::<bf16>(w, x, n_tokens, out, RowKernel::scalar::<bf16>()),
        GgmlType::Q4_0 => mm::<BlockQ4_0>(w, x, n_tokens, out, kernels::Q4_0),
        GgmlType::Q4_1 => mm::<BlockQ4_1>(w, x, n_tokens, out, RowKernel::scalar::<BlockQ4_1>()),
        GgmlType::Q5_0 => mm::<BlockQ5_0>(w, x, n_tokens, out, kernels::Q5_0),
        GgmlType::Q5_1 => mm::<BlockQ5_1>(w, x, n_tokens, out, kernels::Q5_1),
        GgmlType::Q8_0 => mm::<BlockQ8_0>(w, x, n_tokens, out, kernels::Q8_0),
        GgmlType::Q2_K => mm::<BlockQ2K>(w, x, n_tokens, out, RowKernel::scalar::<BlockQ2K>()),
        GgmlType::Q3_K => mm::<BlockQ3K>(w, x, n_tokens, out, RowKernel::scalar::<BlockQ3K>()),
        GgmlType::Q4_K => mm::<BlockQ4K>(w, x, n_tokens, out, kernels::Q4_K),
        GgmlType::Q5_K => mm::<BlockQ5K>(w, x, n_tokens, out, kernels::Q5_K),
        GgmlType::Q6_K => mm::<BlockQ6K>(w, x, n_tokens, out, kernels::Q6_K),
        GgmlType::IQ4_NL => mm::<BlockIQ4NL>(w, x, n_tokens, out, kernels::IQ4_NL),
        GgmlType::IQ4_XS => {
            mm::<BlockIQ4XS>(w, x, n_tokens, out, RowKernel::scalar::<BlockIQ4XS>())
        }
        ty => Err(BackendError::UnsupportedType {
            backend: "cpu",
            op: "matmul",
            ty,
        }),
    }
}

/// Tokens handled together against a group of weight rows: their activation
/// blocks stay in cache while the rows are swept.
const TOKENS_PER_TILE: usize = 64;

fn mm<B: GgmlBlock>(
    w: &CpuWeight,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    kernel: RowKernel<B::VecDotType>,
) -> Result<()> {
    let cols = w.cols;
    if !cols.is_multiple_of(B::BLCK_SIZE) {
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
    quantize_activations(x, &mut acts)?;
    let data = w.data.as_slice();
    let row_bytes = nb * B::TYPE_SIZE;
    need("matmul", "weight bytes", data.len(), row_bytes * w.rows)?;
    let rows = w.rows;
    let row_of = |r: usize| &data[r * row_bytes..(r + 1) * row_bytes];
    if n_tokens == 1 {
        // Generation: each task writes its rows of the output directly. Small
        // matrices are cut in a few tasks per thread only: a task per 16 rows
        // costs more in scheduling than the rows take to compute.
        let per_task = rows
            .div_ceil(8 * rayon::current_num_threads())
            .max(ROWS_PER_TASK);
        out.par_chunks_mut(per_task)
            .enumerate()
            .for_each(|(task, chunk)| {
                let r0 = task * per_task;
                for (i, o) in chunk.iter_mut().enumerate() {
                    *o = (kernel.one)(row_of(r0 + i), &acts);
                }
            });
        return Ok(());
    }
    // Batches: a task takes ROWS_PER_TASK weight rows and sweeps the tokens
    // in tiles, so both the rows and a tile of activations stay in cache.
    let tasks: Vec<Vec<f32>> = (0..rows.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let r0 = task * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(rows);
            let mut res = vec![0f32; (r1 - r0) * n_tokens];
            for t0 in (0..n_tokens).step_by(TOKENS_PER_TILE) {
                let t1 = (t0 + TOKENS_PER_TILE).min(n_tokens);
                for r in r0..r1 {
                    let row = row_of(r);
                    let res = &mut res[(r - r0) * n_tokens..(r - r0 + 1) * n_tokens];
                    let act = |t: usize| &acts[t * n_act_blocks..(t + 1) * n_act_blocks];
                    // Four tokens share each decoded weight block.
                    let mut t = t0;
                    while t + 4 <= t1 {
                        let four = (kernel.four)(row, [act(t), act(t + 1), act(t + 2), act(t + 3)]);
                        res[t..t + 4].copy_from_slice(&four);
                        t += 4;
                    }
                    for (t, o) in res.iter_mut().enumerate().take(t1).skip(t) {
                        *o = (kernel.one)(row, act(t));
                    }
                }
            }
            res
        })
        .collect();
    for (task, res) in tasks.into_iter().enumerate() {
        let r0 = task * ROWS_PER_TASK;
        for (i, chunk) in res.chunks_exact(n_tokens).enumerate() {
            for (t, v) in chunk.iter().enumerate() {
                out[t * rows + r0 + i] = *v;
            }
        }
    }
    Ok(())
}

/// Prompt batches of at least this many tokens take the register-tiled
/// kernels (where the CPU has them): below it, decoding the weight rows up
/// front costs more than it saves.
const TILED_MIN_TOKENS: usize = 8;
/// Weight rows decoded and swept by one parallel task of [`mm_tiled`].
const TILED_ROWS_PER_TASK: usize = 32;
/// Token pairs whose activations one task sweeps its rows with at a time.
const TILED_PAIRS_PER_SWEEP: usize = 8;

/// The output matrix, written by several tasks at once (each its own rows).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the tasks of `mm_tiled` write disjoint elements (their own rows
// of every token) and the pointer outlives them (`for_each` returns first).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Element `i` (the caller keeps it inside the matrix).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `matmul` for prompt batches with the register-tiled kernels
/// (`kernels::tiled`): each task decodes [`TILED_ROWS_PER_TASK`] weight rows
/// once, then sweeps them with every token, tile by tile. The results are
/// bit-identical to [`mm`]'s.
fn mm_tiled<K: Tiling>(
    w: &CpuWeight,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    pool: &Pool,
    kind: K,
) -> Result<()> {
    let cols = w.cols;
    if !cols.is_multiple_of(K::BLOCK) {
        return Err(shape(
            "matmul",
            format!("row of {cols} not a multiple of {}", K::BLOCK),
        ));
    }
    let nb = cols / K::BLOCK;
    let ts = kind.type_size();
    let row_bytes = nb * ts;
    let rows = w.rows;
    let data = w.data.as_slice();
    need("matmul", "weight bytes", data.len(), row_bytes * rows)?;
    need("matmul", "out", out.len(), n_tokens * rows)?;
    let mut acts = pool.take(n_tokens * nb, K::Act::default());
    quantize_activations(x, &mut acts)?;
    let mut pairs = pool.take(0, K::A::default());
    kind.pairs_into(&acts, n_tokens, nb, &mut pairs);
    drop(acts);
    let n_pairs = n_tokens.div_ceil(2);
    let dst = OutPtr(out.as_mut_ptr());
    (0..rows.div_ceil(TILED_ROWS_PER_TASK))
        .into_par_iter()
        .for_each(|task| {
            let r0 = task * TILED_ROWS_PER_TASK;
            let r1 = (r0 + TILED_ROWS_PER_TASK).min(rows);
            let wdec: Vec<K::W> = data[r0 * row_bytes..r1 * row_bytes]
                .chunks_exact(ts)
                .map(|b| kind.decode(b))
                .collect();
            for s0 in (0..n_pairs).step_by(TILED_PAIRS_PER_SWEEP) {
                let s1 = (s0 + TILED_PAIRS_PER_SWEEP).min(n_pairs);
                for ra in (r0..r1).step_by(TILE_ROWS) {
                    let nr = (r1 - ra).min(TILE_ROWS);
                    let wt = &wdec[(ra - r0) * nb..(ra - r0 + nr) * nb];
                    for pa in (s0..s1).step_by(TILE_PAIRS) {
                        let np = (s1 - pa).min(TILE_PAIRS);
                        let at = &pairs[pa * nb..(pa + np) * nb];
                        let res = kind.tile(wt, nr, at, np, nb);
                        for (dr, res) in res.iter().enumerate().take(nr) {
                            for (dp, res) in res.iter().enumerate().take(np) {
                                for (h, &v) in res.iter().enumerate() {
                                    let t = 2 * (pa + dp) + h;
                                    if t < n_tokens {
                                        // SAFETY: `t < n_tokens` and
                                        // `ra + dr < rows`, inside `out`
                                        // (checked above); only this task
                                        // writes row `ra + dr`.
                                        unsafe { *dst.at(t * rows + ra + dr) = v };
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

/// `matmul` of one token for the Q8_0-partner types with the AVX-512 row
/// kernel (`tiled::row_dot`): bit-identical to [`mm`]'s, in fewer
/// instructions per block.
fn mv_tiled(w: &CpuWeight, x: &[f32], out: &mut [f32], kind: tiled::Kind) -> Result<()> {
    let cols = w.cols;
    if !cols.is_multiple_of(32) {
        return Err(shape(
            "matmul",
            format!("row of {cols} not a multiple of 32"),
        ));
    }
    let nb = cols / 32;
    let row_bytes = nb * kind.type_size();
    let rows = w.rows;
    let data = w.data.as_slice();
    need("matmul", "weight bytes", data.len(), row_bytes * rows)?;
    need("matmul", "out", out.len(), rows)?;
    let mut acts = vec![BlockQ8_0::default(); nb];
    quantize_activations(x, &mut acts)?;
    let pairs = kind.pairs(&acts, 1, nb);
    // As `mm` for one token: a few tasks per thread.
    let per_task = rows
        .div_ceil(8 * rayon::current_num_threads())
        .max(ROWS_PER_TASK);
    out[..rows]
        .par_chunks_mut(per_task)
        .enumerate()
        .for_each(|(task, chunk)| {
            let r0 = task * per_task;
            for (i, o) in chunk.iter_mut().enumerate() {
                let r = r0 + i;
                *o = tiled::row_dot(kind, &data[r * row_bytes..(r + 1) * row_bytes], &pairs);
            }
        });
    Ok(())
}

/// Quantizes activations into the weight's vec-dot block type the way
/// ggml-cpu's SIMD code does on x86 (`quantize_row_q8_0` / `_q8_1` in
/// `arch/x86/quants.c`): scale `d = amax/127`, multiplier `127/amax`,
/// round half to even. The reference quantizer in core (`1/d`, round half
/// away from zero) differs in the last bit often enough to flip int8 values,
/// which then compound through the layers; matching ggml here keeps our
/// logits within llama.cpp's own noise. Other block types (Q8_K, f16, f32)
/// use the reference, as ggml-cpu does.
fn quantize_activations<A: GgmlBlock>(x: &[f32], acts: &mut Vec<A>) -> Result<()> {
    let any: &mut dyn std::any::Any = &mut *acts;
    if let Some(blocks) = any.downcast_mut::<Vec<BlockQ8_0>>() {
        let quantize = |bs: &mut [BlockQ8_0], xs: &[f32]| {
            for (b, xs) in bs.iter_mut().zip(xs.chunks_exact(32)) {
                let (d, qs, _) = q8_simd_like(xs);
                b.d = d;
                b.qs = qs;
            }
        };
        // As for Q8_K below: a prompt's blocks on every thread.
        const PER_TASK: usize = 512;
        if blocks.len() <= PER_TASK {
            quantize(blocks, x);
        } else {
            blocks
                .par_chunks_mut(PER_TASK)
                .zip(x.par_chunks(PER_TASK * 32))
                .for_each(|(bs, xs)| quantize(bs, xs));
        }
        return Ok(());
    }
    if let Some(blocks) = any.downcast_mut::<Vec<BlockQ8_1>>() {
        for (b, xs) in blocks.iter_mut().zip(x.chunks_exact(32)) {
            let (d, qs, d_sum) = q8_simd_like(xs);
            b.d = d;
            b.qs = qs;
            b.s = f32_to_f16_bits(d_sum);
        }
        return Ok(());
    }
    if let Some(blocks) = any.downcast_mut::<Vec<BlockQ8K>>() {
        // A prompt's blocks on every thread (serial, this was ~2 % of a
        // Llama-1B prompt with the other thread idle).
        const PER_TASK: usize = 64;
        if blocks.len() <= PER_TASK {
            for (b, xs) in blocks.iter_mut().zip(x.chunks_exact(256)) {
                *b = q8_k_block(xs);
            }
        } else {
            blocks
                .par_chunks_mut(PER_TASK)
                .zip(x.par_chunks(PER_TASK * 256))
                .for_each(|(bs, xs)| {
                    for (b, xs) in bs.iter_mut().zip(xs.chunks_exact(256)) {
                        *b = q8_k_block(xs);
                    }
                });
        }
        return Ok(());
    }
    A::from_float(x, acts)?;
    Ok(())
}

/// One Q8_K block of 256 values, exactly as core's reference quantizer
/// (`BlockQ8K::from_float`: the scale from the first value of largest
/// magnitude, `-127 / max`, rounding half to even), in loops that vectorize.
fn q8_k_block(xs: &[f32]) -> BlockQ8K {
    // Largest magnitude in 8 lanes (`maxps`; a NaN never wins, as in the
    // reference's `amax < |v|`).
    let pick = |m: f32, a: f32| if a > m { a } else { m };
    let mut lanes = [0f32; 8];
    for c in xs.chunks_exact(8) {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = pick(*l, v.abs());
        }
    }
    let amax = lanes.iter().fold(0.0f32, |m, &a| pick(m, a));
    let mut b = BlockQ8K::default();
    if amax == 0.0 {
        return b;
    }
    // The first value of that magnitude, with its sign (as the reference's
    // strict `amax < |v|` scan keeps).
    let max = xs.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
    let iscale = -127.0 / max;
    for (q, &v) in b.qs.iter_mut().zip(xs) {
        *q = round_ties_even_small(iscale * v).min(127) as i8;
    }
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| i16::from(v)).sum();
    }
    b.d = 1.0 / iscale;
    b
}

/// One block of 32 as ggml-cpu's AVX code quantizes it: returns the f16
/// scale bits, the quants and `d · Σq` with the unrounded `d` (Q8_1's `s`).
fn q8_simd_like(xs: &[f32]) -> (u16, [i8; 32], f32) {
    let amax = xs.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; 32];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(xs) {
        let r = round_ties_even_small(v * id);
        *q = r.clamp(-128, 127) as i8;
        sum += r;
    }
    (f32_to_f16_bits(d), qs, d * sum as f32)
}

/// `v` rounded to the nearest integer, ties to even (as `i32`), for
/// `|v| < 2^22` (here at most 127): adding `1.5 · 2^23` leaves the rounding
/// to the FPU's default mode, which is ties-to-even, and puts the integer in
/// the low mantissa bits (core's `nearest_int`). Read from the bits, with no
/// float-to-int conversion, it vectorizes; without SSE4.1 enabled at compile
/// time `f32::round_ties_even` is a libm call per value.
#[inline]
fn round_ties_even_small(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    ((v + MAGIC).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_k_block_is_the_reference_bit_for_bit() {
        let mut rng = crate::test_rng::Rng(0x1357_9bdf_2468_ace0);
        let mut next = || rng.unit() - 0.5;
        for case in 0..200 {
            let scale = 10f32.powi(case % 7 - 3);
            let mut x: Vec<f32> = (0..256).map(|_| next() * scale).collect();
            match case % 4 {
                // Two values of the largest magnitude, opposite signs.
                1 => {
                    x[40] = 2.0 * scale;
                    x[200] = -2.0 * scale;
                }
                2 => {
                    x[7] = -2.0 * scale;
                    x[9] = 2.0 * scale;
                }
                // Values landing on halves after scaling.
                3 => {
                    x[0] = scale;
                    for (i, v) in x.iter_mut().enumerate().skip(1) {
                        *v = scale * ((i % 255) as f32 + 0.5) / 127.0;
                    }
                }
                _ => {}
            }
            let mut want = vec![BlockQ8K::default(); 1];
            BlockQ8K::from_float(&x, &mut want).unwrap();
            let got = q8_k_block(&x);
            assert_eq!(got.d.to_bits(), want[0].d.to_bits(), "case {case}");
            assert_eq!(got.qs, want[0].qs, "case {case}");
            assert_eq!(got.bsums, want[0].bsums, "case {case}");
        }
        let zero = q8_k_block(&[0.0; 256]);
        assert_eq!(zero.d, 0.0);
        assert!(zero.qs.iter().all(|&q| q == 0));
    }

    #[test]
    fn small_rounding_is_ties_to_even() {
        let mut rng = crate::test_rng::Rng(0x2545_f491_4f6c_dd1d);
        let mut values: Vec<f32> = (-260..=260).map(|i| i as f32 * 0.5).collect();
        for _ in 0..10_000 {
            values.push((rng.unit() - 0.5) * 260.0);
        }
        for v in values {
            assert_eq!(round_ties_even_small(v), v.round_ties_even() as i32, "{v}");
        }
    }
}
