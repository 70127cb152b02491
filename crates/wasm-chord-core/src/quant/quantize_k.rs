//! Reference quantizers for the K-quants, ported from llama.cpp's
//! `ggml-quants.c`: `quantize_row_q{2,3,4,5,6,8}_K_ref` and their helpers
//! `nearest_int`, `make_qx_quants`, `make_q3_quants` and `make_qkx2_quants`.
//!
//! The ports keep llama.cpp's float operation order so that, on the same
//! input, they produce the same bytes (the fixture tests count how often).

use super::float::{f16_bits_to_f32 as fp16, f32_to_f16_bits as to_fp16};
use super::k_quants::{
    get_scale_min_k4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K,
};
use super::legacy::{abs_max, block_input};
use super::{GgmlBlock, QuantError};

/// `GROUP_MAX_EPS`: below this magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int`: round to nearest, ties to even, by the magic-number trick
/// (valid for |x| <= 4194303, as llama.cpp asserts; larger inputs give
/// meaningless but harmless values).
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `make_qx_quants` with `qw == NULL`: symmetric quants in `L` (offset by
/// `nmax`), returns the scale. Only `rmse_type` 1 is used by the K-quants.
fn make_qx_quants(x: &[f32], nmax: i32, l_out: &mut [i8], rmse_type: i32) -> f32 {
    let (amax, max) = abs_max(x);
    if amax < GROUP_MAX_EPS {
        l_out.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for (l, &v) in l_out.iter_mut().zip(x) {
            *l = (nmax + nearest_int(iscale * v).clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = if rmse_type < 0 {
        (-rmse_type, true)
    } else {
        (rmse_type, false)
    };
    let weight = |v: f32| match rmse_type {
        1 => v * v,
        2 => 1.0,
        3 => v.abs(),
        _ => v.abs().sqrt(),
    };
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (lo, &v) in l_out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *lo = (l + nmax) as i8;
        let w = weight(v);
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = weight(v);
            sumlx += w * v * l as f32;
            suml2 += w * l as f32 * l as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (lo, &v) in l_out.iter_mut().zip(x) {
                *lo = (nmax + nearest_int(iscale * v).clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse == true`: quants in `L` offset by `nmax`.
fn make_q3_quants(x: &[f32], nmax: i32, l_out: &mut [i8]) -> f32 {
    let (amax, max) = abs_max(x);
    if amax < GROUP_MAX_EPS {
        l_out.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (lo, &v) in l_out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *lo = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (lo, &v) in l_out.iter_mut().zip(x) {
            let w = v * v;
            let li = *lo as f32;
            let mut slx = sumlx - w * v * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *lo as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *lo = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for lo in l_out.iter_mut() {
        *lo += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Parameters of `make_qkx2_quants` besides the data.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

/// `make_qkx2_quants`: asymmetric quants `L` in 0..=nmax minimising the
/// weighted error; returns `(scale, the_min)` where values are
/// `scale * L - the_min`.
fn make_qkx2_quants(x: &[f32], weights: &[f32], l_out: &mut [u8], p: &Qkx2) -> (f32, f32) {
    let n = x.len().min(weights.len()).min(l_out.len());
    let (x, weights, l_out) = (&x[..n], &weights[..n], &mut l_out[..n]);
    let (Some(&x0), Some(&w0)) = (x.first(), weights.first()) else {
        return (0.0, 0.0);
    };
    let (mut min, mut max) = (x0, x0);
    let mut sum_w = w0;
    let mut sum_x = sum_w * x0;
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let nmax = p.nmax as f32;
    let mut iscale = nmax / (max - min);
    let mut scale = 1.0 / iscale;
    let err = |diff: f32| if p.use_mad { diff.abs() } else { diff * diff };
    let mut best_error = 0.0f32;
    for ((lo, &v), &w) in l_out.iter_mut().zip(x).zip(weights) {
        *lo = nearest_int(iscale * (v - min)).clamp(0, p.nmax) as u8;
        best_error += w * err(scale * *lo as f32 + min - v);
    }
    if p.nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n.min(32)];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + nmax) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((la, &v), &w) in laux.iter_mut().zip(x).zip(weights) {
            let l = nearest_int(iscale * (v - min)).clamp(0, p.nmax);
            *la = l as u8;
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * v;
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for ((&la, &v), &w) in laux.iter().zip(x).zip(weights) {
                cur_error += w * err(this_scale * la as f32 + this_min - v);
            }
            if cur_error < best_error {
                l_out.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `quantize_row_q2_K_ref` for one super-block.
pub(crate) fn q2_k(x: &[f32]) -> Result<BlockQ2K, QuantError> {
    let x = block_input::<QK_K>(BlockQ2K::DTYPE, x)?;
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut mins = [0f32; QK_K / 16];
    let p = Qkx2 {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        let weights: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
        let (s, m) = make_qkx2_quants(xs, &weights, ls, &p);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let mut y = BlockQ2K::default();
    const Q4SCALE: f32 = 15.0;
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (o, &s) in y.scales.iter_mut().zip(&scales) {
            *o = nearest_int(iscale * s) as u8;
        }
        y.d = to_fp16(max_scale / Q4SCALE);
    } else {
        y.d = to_fp16(0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (o, &m) in y.scales.iter_mut().zip(&mins) {
            *o |= (nearest_int(iscale * m) << 4) as u8;
        }
        y.dmin = to_fp16(max_min / Q4SCALE);
    } else {
        y.dmin = to_fp16(0.0);
    }
    for (j, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        let d = fp16(y.d) * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = fp16(y.dmin) * (y.scales[j] >> 4) as f32;
        for (lo, &v) in ls.iter_mut().zip(xs) {
            *lo = nearest_int((v + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut y.qs);
    Ok(y)
}

/// Packs 2-bit values: byte `32c + l` of chunk `c` holds values
/// `128c + l + 32s` at bit `2s`.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (c, q) in qs.chunks_exact_mut(32).enumerate() {
        let l = &l[128 * c..];
        for (i, o) in q.iter_mut().enumerate() {
            *o = l[i] | (l[i + 32] << 2) | (l[i + 64] << 4) | (l[i + 96] << 6);
        }
    }
}

/// `quantize_row_q3_K_ref` for one super-block.
pub(crate) fn q3_k(x: &[f32]) -> Result<BlockQ3K, QuantError> {
    let x = block_input::<QK_K>(BlockQ3K::DTYPE, x)?;
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        scales[j] = make_q3_quants(xs, 4, ls);
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    let mut y = BlockQ3K::default();
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            // `int8_t l = nearest_int(..)` truncates before clamping.
            let lj = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                y.scales[j] = lj & 0xF;
            } else {
                y.scales[j - 8] |= (lj & 0xF) << 4;
            }
            y.scales[j % 4 + 8] |= (lj >> 4) << (2 * (j / 4));
        }
        y.d = to_fp16(1.0 / iscale);
    } else {
        y.d = to_fp16(0.0);
    }
    let sc = super::k_quants::q3k_scales(&y.scales);
    for (j, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        let d = fp16(y.d) * sc[j] as f32;
        if d == 0.0 {
            continue;
        }
        for (lo, &v) in ls.iter_mut().zip(xs) {
            *lo = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
        }
    }
    let mut lu = [0u8; QK_K];
    for (j, (o, &v)) in lu.iter_mut().zip(&l).enumerate() {
        let mut v = v as u8;
        if v > 3 {
            y.hmask[j % 32] |= 1 << (j / 32);
            v -= 4;
        }
        *o = v;
    }
    pack_2bit(&lu, &mut y.qs);
    Ok(y)
}

/// Packs the 6-bit scales and mins of Q4_K/Q5_K (the loop in
/// `quantize_row_q4_K_ref`) and computes `d`, `dmin`.
fn pack_scales_mins(
    scales: &[f32; 8],
    mins: &[f32; 8],
    max_scale: f32,
    max_min: f32,
) -> ([u8; 12], u16, u16) {
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut out = [0u8; 12];
    for j in 0..QK_K / 32 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            out[j] = ls;
            out[j + 4] = lm;
        } else {
            out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            out[j - 4] |= (ls >> 4) << 6;
            out[j] |= (lm >> 4) << 6;
        }
    }
    (out, to_fp16(max_scale / 63.0), to_fp16(max_min / 63.0))
}

/// The first half of `quantize_row_q{4,5}_K_ref`: per 32-value sub-block
/// `make_qkx2_quants` with weights `av_x + |x|`, then the final quants in
/// 0..=nmax against the rounded scales. Returns `(L, scales, d, dmin)`.
fn quantize_qk_min(x: &[f32; QK_K], p: &Qkx2) -> ([u8; QK_K], [u8; 12], u16, u16) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, (xs, ls)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(xs, &weights, ls, p);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let (packed, d, dmin) = pack_scales_mins(&scales, &mins, max_scale, max_min);
    for (j, (xs, ls)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = fp16(d) * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = fp16(dmin) * m as f32;
        for (lo, &v) in ls.iter_mut().zip(xs) {
            *lo = nearest_int((v + dm) / dj).clamp(0, p.nmax) as u8;
        }
    }
    (l, packed, d, dmin)
}

/// `quantize_row_q4_K_ref` for one super-block.
pub(crate) fn q4_k(x: &[f32]) -> Result<BlockQ4K, QuantError> {
    let x = block_input::<QK_K>(BlockQ4K::DTYPE, x)?;
    let p = Qkx2 {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let (l, scales, d, dmin) = quantize_qk_min(x, &p);
    let mut y = BlockQ4K {
        d,
        dmin,
        scales,
        ..BlockQ4K::default()
    };
    for (c, q) in y.qs.chunks_exact_mut(32).enumerate() {
        for (i, o) in q.iter_mut().enumerate() {
            *o = l[64 * c + i] | (l[64 * c + i + 32] << 4);
        }
    }
    Ok(y)
}

/// `quantize_row_q5_K_ref` for one super-block.
pub(crate) fn q5_k(x: &[f32]) -> Result<BlockQ5K, QuantError> {
    let x = block_input::<QK_K>(BlockQ5K::DTYPE, x)?;
    let p = Qkx2 {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let (l, scales, d, dmin) = quantize_qk_min(x, &p);
    let mut y = BlockQ5K {
        d,
        dmin,
        scales,
        ..BlockQ5K::default()
    };
    let (mut m1, mut m2) = (1u8, 2u8);
    for (c, q) in y.qs.chunks_exact_mut(32).enumerate() {
        for (j, o) in q.iter_mut().enumerate() {
            let mut l1 = l[64 * c + j];
            if l1 > 15 {
                l1 -= 16;
                y.qh[j] |= m1;
            }
            let mut l2 = l[64 * c + j + 32];
            if l2 > 15 {
                l2 -= 16;
                y.qh[j] |= m2;
            }
            *o = l1 | (l2 << 4);
        }
        m1 = m1.wrapping_shl(2);
        m2 = m2.wrapping_shl(2);
    }
    Ok(y)
}

/// `quantize_row_q6_K_ref` for one super-block.
pub(crate) fn q6_k(x: &[f32]) -> Result<BlockQ6K, QuantError> {
    let x = block_input::<QK_K>(BlockQ6K::DTYPE, x)?;
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for (ib, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        let scale = make_qx_quants(xs, 32, ls, 1);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    let mut y = BlockQ6K::default();
    if max_abs_scale < GROUP_MAX_EPS {
        return Ok(y);
    }
    let iscale = -128.0 / max_scale;
    y.d = to_fp16(1.0 / iscale);
    for (o, &s) in y.scales.iter_mut().zip(&scales) {
        *o = nearest_int(iscale * s).min(127) as i8;
    }
    for (j, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        let d = fp16(y.d) * y.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for (lo, &v) in ls.iter_mut().zip(xs) {
            *lo = (nearest_int(v / d).clamp(-32, 31) + 32) as i8;
        }
    }
    for (c, (ql, qh)) in
        y.ql.chunks_exact_mut(64)
            .zip(y.qh.chunks_exact_mut(32))
            .enumerate()
    {
        let l = &l[128 * c..];
        for i in 0..32 {
            let q = |k: usize| l[i + 32 * k] as u8;
            ql[i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            ql[i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            qh[i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    Ok(y)
}

/// `quantize_row_q8_K_ref` for one super-block.
pub(crate) fn q8_k(x: &[f32]) -> Result<BlockQ8K, QuantError> {
    let x = block_input::<QK_K>(BlockQ8K::DTYPE, x)?;
    let (amax, max) = abs_max(x);
    let mut y = BlockQ8K::default();
    if amax == 0.0 {
        return Ok(y);
    }
    let iscale = -127.0 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| v as i16).sum();
    }
    y.d = 1.0 / iscale;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::nearest_int;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        for (x, want) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.51, -8),
        ] {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }
}
