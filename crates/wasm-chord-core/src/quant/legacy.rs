//! The "legacy" 32-value blocks Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
//!
//! Dequantizers follow `dequantize_row_q*` and quantizers
//! `quantize_row_q*_ref` in llama.cpp's `ggml-quants.c`; dot products follow
//! `ggml_vec_dot_q*_q8_*_generic` in `ggml-cpu/quants.c`.

use super::float::{f16_bits_to_f32 as fp16, f32_to_f16_bits};
use super::le_bytes::{arr, arr_i8, put, put_i8, put_u16, u16_at};
use super::{DotAcc, GgmlBlock, QuantError};
use crate::GgmlType;

/// Values per legacy block (`QK4_0` = `QK4_1` = `QK5_0` = `QK5_1` = `QK8_0` = `QK8_1`).
pub const QK4_0: usize = 32;
const QK: usize = QK4_0;

/// `block_q4_0`: 4-bit quants `q` with value `(q - 8) * d`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Quants: low nibbles are values 0..16, high nibbles 16..32.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// `block_q4_1`: 4-bit quants `q` with value `q * d + m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Quants: low nibbles are values 0..16, high nibbles 16..32.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// `block_q5_0`: 5-bit quants `q` with value `(q - 16) * d`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Fifth bits, one per value (little-endian u32).
    pub qh: [u8; 4],
    /// Low four bits, packed as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// `block_q5_1`: 5-bit quants `q` with value `q * d + m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockQ5_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Fifth bits, one per value (little-endian u32).
    pub qh: [u8; 4],
    /// Low four bits, packed as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// `block_q8_0`: 8-bit quants with value `q * d`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// `block_q8_1`: 8-bit quants with value `q * d`, plus `s = d * sum(q)`
/// (used by the Q4_1/Q5_1 dot products).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockQ8_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// `d * sum(qs)` (f16 bits).
    pub s: u16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

/// Checks that a quantizer got exactly one block of input.
pub(crate) fn block_input<const N: usize>(
    ty: GgmlType,
    x: &[f32],
) -> Result<&[f32; N], QuantError> {
    x.try_into().map_err(|_| QuantError::LengthMismatch {
        ty,
        what: "input values",
        expected: N,
        got: x.len(),
    })
}

/// Writes `v` into `out[i]` when it exists.
#[inline]
pub(crate) fn set(out: &mut [f32], i: usize, v: f32) {
    if let Some(o) = out.get_mut(i) {
        *o = v;
    }
}

/// Index and value of the element with the largest magnitude (the first one
/// on ties), as the `amax`/`max` loops of the reference quantizers.
#[inline]
pub(crate) fn abs_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline]
fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

impl GgmlBlock for BlockQ4_0 {
    const DTYPE: GgmlType = GgmlType::Q4_0;
    const BLCK_SIZE: usize = QK;
    const TYPE_SIZE: usize = 18;
    type VecDotType = BlockQ8_0;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            qs: arr(b, 2),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put(out, 2, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16(self.d);
        for (j, &q) in self.qs.iter().enumerate() {
            set(y, j, ((q & 0x0F) as i32 - 8) as f32 * d);
            set(y, j + QK / 2, ((q >> 4) as i32 - 8) as f32 * d);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        let x = block_input::<QK>(Self::DTYPE, x)?;
        let (_, max) = abs_max(x);
        let d = max / -8.0;
        let id = inv(d);
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let xi0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let xi1 = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            *q = xi0 | (xi1 << 4);
        }
        Ok(Self {
            d: f32_to_f16_bits(d),
            qs,
        })
    }
    fn dot_block(&self, y: &BlockQ8_0, acc: &mut DotAcc) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for (j, &q) in self.qs.iter().enumerate() {
            s0 += ((q & 0x0F) as i32 - 8) * y.qs[j] as i32;
            s1 += ((q >> 4) as i32 - 8) * y.qs[j + QK / 2] as i32;
        }
        acc.sumf += (s0 + s1) as f32 * fp16(self.d) * fp16(y.d);
    }
}

impl GgmlBlock for BlockQ4_1 {
    const DTYPE: GgmlType = GgmlType::Q4_1;
    const BLCK_SIZE: usize = QK;
    const TYPE_SIZE: usize = 20;
    type VecDotType = BlockQ8_1;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            m: u16_at(b, 2),
            qs: arr(b, 4),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.m);
        put(out, 4, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let (d, m) = (fp16(self.d), fp16(self.m));
        for (j, &q) in self.qs.iter().enumerate() {
            set(y, j, (q & 0x0F) as f32 * d + m);
            set(y, j + QK / 2, (q >> 4) as f32 * d + m);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        let x = block_input::<QK>(Self::DTYPE, x)?;
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inv(d);
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let xi0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let xi1 = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            *q = xi0 | (xi1 << 4);
        }
        Ok(Self {
            d: f32_to_f16_bits(d),
            m: f32_to_f16_bits(min),
            qs,
        })
    }
    fn dot_block(&self, y: &BlockQ8_1, acc: &mut DotAcc) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for (j, &q) in self.qs.iter().enumerate() {
            s0 += (q & 0x0F) as i32 * y.qs[j] as i32;
            s1 += (q >> 4) as i32 * y.qs[j + QK / 2] as i32;
        }
        acc.sumf += (fp16(self.d) * fp16(y.d)) * (s0 + s1) as f32 + fp16(self.m) * fp16(y.s);
    }
}

/// The 5-bit values of a Q5 block, in output order.
fn q5_values(qh: [u8; 4], qs: &[u8; QK / 2]) -> [i32; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut v = [0i32; QK];
    for (j, &q) in qs.iter().enumerate() {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        v[j] = ((q & 0x0F) | xh_0) as i32;
        v[j + QK / 2] = ((q >> 4) | xh_1) as i32;
    }
    v
}

/// Packs 5-bit values into `(qh, qs)` as `quantize_row_q5_*_ref` does.
fn q5_pack(l: &[u8; QK]) -> ([u8; 4], [u8; QK / 2]) {
    let mut qs = [0u8; QK / 2];
    let mut qh = 0u32;
    for (j, q) in qs.iter_mut().enumerate() {
        let (xi0, xi1) = (l[j], l[j + QK / 2]);
        *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    (qh.to_le_bytes(), qs)
}

impl GgmlBlock for BlockQ5_0 {
    const DTYPE: GgmlType = GgmlType::Q5_0;
    const BLCK_SIZE: usize = QK;
    const TYPE_SIZE: usize = 22;
    type VecDotType = BlockQ8_0;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            qh: arr(b, 2),
            qs: arr(b, 6),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put(out, 2, &self.qh);
        put(out, 6, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16(self.d);
        for (j, v) in q5_values(self.qh, &self.qs).into_iter().enumerate() {
            set(y, j, (v - 16) as f32 * d);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        let x = block_input::<QK>(Self::DTYPE, x)?;
        let (_, max) = abs_max(x);
        let d = max / -16.0;
        let id = inv(d);
        let l = x.map(|v| ((v * id + 16.5) as i8).min(31) as u8);
        let (qh, qs) = q5_pack(&l);
        Ok(Self {
            d: f32_to_f16_bits(d),
            qh,
            qs,
        })
    }
    fn dot_block(&self, y: &BlockQ8_0, acc: &mut DotAcc) {
        let v = q5_values(self.qh, &self.qs);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            s0 += (v[j] - 16) * y.qs[j] as i32;
            s1 += (v[j + QK / 2] - 16) * y.qs[j + QK / 2] as i32;
        }
        acc.sumf += (fp16(self.d) * fp16(y.d)) * (s0 + s1) as f32;
    }
}

impl GgmlBlock for BlockQ5_1 {
    const DTYPE: GgmlType = GgmlType::Q5_1;
    const BLCK_SIZE: usize = QK;
    const TYPE_SIZE: usize = 24;
    type VecDotType = BlockQ8_1;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            m: u16_at(b, 2),
            qh: arr(b, 4),
            qs: arr(b, 8),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.m);
        put(out, 4, &self.qh);
        put(out, 8, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let (d, m) = (fp16(self.d), fp16(self.m));
        for (j, v) in q5_values(self.qh, &self.qs).into_iter().enumerate() {
            set(y, j, v as f32 * d + m);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        let x = block_input::<QK>(Self::DTYPE, x)?;
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inv(d);
        let l = x.map(|v| ((v - min) * id + 0.5) as u8);
        let (qh, qs) = q5_pack(&l);
        Ok(Self {
            d: f32_to_f16_bits(d),
            m: f32_to_f16_bits(min),
            qh,
            qs,
        })
    }
    fn dot_block(&self, y: &BlockQ8_1, acc: &mut DotAcc) {
        let v = q5_values(self.qh, &self.qs);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            s0 += v[j] * y.qs[j] as i32;
            s1 += v[j + QK / 2] * y.qs[j + QK / 2] as i32;
        }
        acc.sumf += (fp16(self.d) * fp16(y.d)) * (s0 + s1) as f32 + fp16(self.m) * fp16(y.s);
    }
}

/// Scale and quants of `quantize_row_q8_0_ref` / `quantize_row_q8_1_ref`.
fn q8_quants(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inv(d);
    (d, x.map(|v| (v * id).round() as i8))
}

impl GgmlBlock for BlockQ8_0 {
    const DTYPE: GgmlType = GgmlType::Q8_0;
    const BLCK_SIZE: usize = QK;
    const TYPE_SIZE: usize = 34;
    type VecDotType = BlockQ8_0;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            qs: arr_i8(b, 2),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_i8(out, 2, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16(self.d);
        for (j, &q) in self.qs.iter().enumerate() {
            set(y, j, q as f32 * d);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        let (d, qs) = q8_quants(block_input::<QK>(Self::DTYPE, x)?);
        Ok(Self {
            d: f32_to_f16_bits(d),
            qs,
        })
    }
    fn dot_block(&self, y: &BlockQ8_0, acc: &mut DotAcc) {
        let sumi: i32 = self
            .qs
            .iter()
            .zip(&y.qs)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        acc.sumf += sumi as f32 * (fp16(self.d) * fp16(y.d));
    }
}

impl GgmlBlock for BlockQ8_1 {
    const DTYPE: GgmlType = GgmlType::Q8_1;
    const BLCK_SIZE: usize = QK;
    const TYPE_SIZE: usize = 36;
    type VecDotType = BlockQ8_1;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            s: u16_at(b, 2),
            qs: arr_i8(b, 4),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.s);
        put_i8(out, 4, &self.qs);
    }
    /// llama.cpp has no Q8_1 dequantizer; values are `q * d` as for Q8_0.
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16(self.d);
        for (j, &q) in self.qs.iter().enumerate() {
            set(y, j, q as f32 * d);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        let (d, qs) = q8_quants(block_input::<QK>(Self::DTYPE, x)?);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        Ok(Self {
            d: f32_to_f16_bits(d),
            s: f32_to_f16_bits(sum as f32 * d),
            qs,
        })
    }
    /// llama.cpp has no Q8_1·Q8_1 kernel; this is the Q8_0·Q8_0 one.
    fn dot_block(&self, y: &BlockQ8_1, acc: &mut DotAcc) {
        let sumi: i32 = self
            .qs
            .iter()
            .zip(&y.qs)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        acc.sumf += sumi as f32 * (fp16(self.d) * fp16(y.d));
    }
}
