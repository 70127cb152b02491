//! The K-quant super-blocks of 256 values: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the
//! activation type Q8_K.
//!
//! Dequantizers follow `dequantize_row_q*_K` in llama.cpp's `ggml-quants.c`,
//! dot products `ggml_vec_dot_q*_K_q8_K_generic` in `ggml-cpu/quants.c`
//! (including the eight per-lane float sums of the Q3_K..Q6_K kernels). The
//! reference quantizers live in `quantize_k`.

use super::float::f16_bits_to_f32 as fp16;
use super::le_bytes::{arr, arr_i8, put, put_i8, put_u16, u16_at};
use super::legacy::set;
use super::quantize_k;
use super::{DotAcc, GgmlBlock, QuantError};
use crate::GgmlType;

/// Values per K-quant super-block (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K/Q5_K (`K_SCALE_SIZE`).
const K_SCALE_SIZE: usize = 12;

/// `block_q2_K`: 16 sub-blocks of 16 with 4-bit scale and min each; value
/// `d * sc * q - dmin * m` with 2-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ2K {
    /// Per sub-block: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales (f16 bits).
    pub d: u16,
    /// Super-block scale for the mins (f16 bits).
    pub dmin: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// `block_q3_K`: 16 sub-blocks of 16 with signed 6-bit scales; value
/// `d * (sc - 32) * (q - 4 * !hbit)` with 2-bit `q` plus a high bit.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ3K {
    /// High bits of the quants (set means "no -4").
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 packed 6-bit scales.
    pub scales: [u8; 12],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// `block_q4_K`: 8 sub-blocks of 32 with 6-bit scale and min each; value
/// `d * sc * q - dmin * m` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4K {
    /// Super-block scale for the scales (f16 bits).
    pub d: u16,
    /// Super-block scale for the mins (f16 bits).
    pub dmin: u16,
    /// Packed 6-bit scales and mins.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// `block_q5_K`: as Q4_K with a fifth bit per quant.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5K {
    /// Super-block scale for the scales (f16 bits).
    pub d: u16,
    /// Super-block scale for the mins (f16 bits).
    pub dmin: u16,
    /// Packed 6-bit scales and mins.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits of the quants.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits of the quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// `block_q6_K`: 16 sub-blocks of 16 with signed 8-bit scales; value
/// `d * sc * (q - 32)` with 6-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// `block_q8_K`: 8-bit activations with an f32 scale and sums of 16 quants.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// Scale.
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl Default for BlockQ2K {
    fn default() -> Self {
        Self {
            scales: [0; QK_K / 16],
            qs: [0; QK_K / 4],
            d: 0,
            dmin: 0,
        }
    }
}
impl Default for BlockQ3K {
    fn default() -> Self {
        Self {
            hmask: [0; QK_K / 8],
            qs: [0; QK_K / 4],
            scales: [0; 12],
            d: 0,
        }
    }
}
impl Default for BlockQ4K {
    fn default() -> Self {
        Self {
            d: 0,
            dmin: 0,
            scales: [0; K_SCALE_SIZE],
            qs: [0; QK_K / 2],
        }
    }
}
impl Default for BlockQ5K {
    fn default() -> Self {
        Self {
            d: 0,
            dmin: 0,
            scales: [0; K_SCALE_SIZE],
            qh: [0; QK_K / 8],
            qs: [0; QK_K / 2],
        }
    }
}
impl Default for BlockQ6K {
    fn default() -> Self {
        Self {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; QK_K / 16],
            d: 0,
        }
    }
}
impl Default for BlockQ8K {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Scale and min of sub-block `j` of a Q4_K/Q5_K block (`get_scale_min_k4`).
#[inline]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let j = j & 7;
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, already minus 32.
#[inline]
pub(crate) fn q3k_scales(s: &[u8; 12]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i32 - 32;
    }
    out
}

/// Adds `sc * (q8[l] * a[l])` for one 8-lane group, as the `aux16`/`aux32`
/// loops of the generic kernels.
#[inline]
fn lanes8(aux32: &mut [i32; 8], sc: i32, q8: &[i8], a: &[i8]) {
    for ((acc, &q), &v) in aux32.iter_mut().zip(q8).zip(a) {
        *acc += sc * (q as i32 * v as i32);
    }
}

impl GgmlBlock for BlockQ2K {
    const DTYPE: GgmlType = GgmlType::Q2_K;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 84;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        Self {
            scales: arr(b, 0),
            qs: arr(b, 16),
            d: u16_at(b, 80),
            dmin: u16_at(b, 82),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.scales);
        put(out, 16, &self.qs);
        put_u16(out, 80, self.d);
        put_u16(out, 82, self.dmin);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let (d, min) = (fp16(self.d), fp16(self.dmin));
        let mut k = 0;
        let mut is = 0;
        for q in self.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in q.chunks_exact(16) {
                    let sc = self.scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for &ql in half {
                        set(y, k, dl * ((ql >> shift) & 3) as f32 - ml);
                        k += 1;
                    }
                }
            }
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        quantize_k::q2_k(x)
    }
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        let summs: i32 = y
            .bsums
            .iter()
            .zip(&self.scales)
            .map(|(&b, &s)| b as i32 * (s >> 4) as i32)
            .sum();
        let dall = y.d * fp16(self.d);
        let dmin = y.d * fp16(self.dmin);
        let mut isum = 0i32;
        let mut is = 0;
        let mut q8 = y.qs.chunks_exact(16);
        for q2 in self.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in q2.chunks_exact(16) {
                    let d = (self.scales[is] & 0xF) as i32;
                    is += 1;
                    let q8 = q8.next().unwrap_or(&[]);
                    let isuml: i32 = q8
                        .iter()
                        .zip(half)
                        .map(|(&a, &b)| a as i32 * ((b >> shift) & 3) as i32)
                        .sum();
                    isum += d * isuml;
                }
            }
        }
        acc.sumf += dall * isum as f32 - dmin * summs as f32;
    }
}

impl BlockQ3K {
    /// The 256 quants as signed values in -4..=3, in output order.
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        let mut k = 0;
        let mut m = 1u8;
        for q in self.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (&ql, &h) in q.iter().zip(&self.hmask) {
                    a[k] = ((ql >> shift) & 3) as i8 - if h & m != 0 { 0 } else { 4 };
                    k += 1;
                }
                m = m.wrapping_shl(1);
            }
        }
        a
    }
}

impl GgmlBlock for BlockQ3K {
    const DTYPE: GgmlType = GgmlType::Q3_K;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 110;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        Self {
            hmask: arr(b, 0),
            qs: arr(b, 32),
            scales: arr(b, 96),
            d: u16_at(b, 108),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.hmask);
        put(out, 32, &self.qs);
        put(out, 96, &self.scales);
        put_u16(out, 108, self.d);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let d_all = fp16(self.d);
        let scales = q3k_scales(&self.scales);
        for (k, v) in self.values().into_iter().enumerate() {
            let dl = d_all * scales[k / 16] as f32;
            set(y, k, dl * v as f32);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        quantize_k::q3_k(x)
    }
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        let a = self.values();
        let scales = q3k_scales(&self.scales);
        let mut aux32 = [0i32; 8];
        for ((q8, a), k) in y.qs.chunks_exact(8).zip(a.chunks_exact(8)).zip(0..) {
            lanes8(&mut aux32, scales[k / 2], q8, a);
        }
        let d = fp16(self.d) * y.d;
        for (s, &v) in acc.lanes.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
    }
}

/// Shared Q4_K/Q5_K dot product given the unsigned quants `a` (0..32).
fn dot_qk_min(
    d: u16,
    dmin: u16,
    scales: &[u8; K_SCALE_SIZE],
    a: &[i8; QK_K],
    y: &BlockQ8K,
    acc: &mut DotAcc,
) {
    let mut sumi = 0i32;
    for (j, &b) in y.bsums.iter().enumerate() {
        sumi += b as i32 * get_scale_min_k4(j / 2, scales).1 as i32;
    }
    let mut aux32 = [0i32; 8];
    for ((q8, a), k) in y.qs.chunks_exact(8).zip(a.chunks_exact(8)).zip(0..) {
        lanes8(&mut aux32, get_scale_min_k4(k / 4, scales).0 as i32, q8, a);
    }
    let d = fp16(d) * y.d;
    for (s, &v) in acc.lanes.iter_mut().zip(&aux32) {
        *s += d * v as f32;
    }
    let dmin = fp16(dmin) * y.d;
    acc.sumf -= dmin * sumi as f32;
}

impl BlockQ4K {
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (c, q) in self.qs.chunks_exact(32).enumerate() {
            for (l, &v) in q.iter().enumerate() {
                a[64 * c + l] = (v & 0xF) as i8;
                a[64 * c + 32 + l] = (v >> 4) as i8;
            }
        }
        a
    }
}

impl GgmlBlock for BlockQ4K {
    const DTYPE: GgmlType = GgmlType::Q4_K;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 144;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            dmin: u16_at(b, 2),
            scales: arr(b, 4),
            qs: arr(b, 16),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.dmin);
        put(out, 4, &self.scales);
        put(out, 16, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let (d, min) = (fp16(self.d), fp16(self.dmin));
        for (k, v) in self.values().into_iter().enumerate() {
            let (sc, m) = get_scale_min_k4(k / 32, &self.scales);
            set(y, k, (d * sc as f32) * v as f32 - min * m as f32);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        quantize_k::q4_k(x)
    }
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        dot_qk_min(self.d, self.dmin, &self.scales, &self.values(), y, acc);
    }
}

impl BlockQ5K {
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        let mut u = 1u8;
        for (c, q) in self.qs.chunks_exact(32).enumerate() {
            for (l, (&v, &h)) in q.iter().zip(&self.qh).enumerate() {
                a[64 * c + l] = ((v & 0xF) + if h & u != 0 { 16 } else { 0 }) as i8;
                a[64 * c + 32 + l] = ((v >> 4) + if h & (u << 1) != 0 { 16 } else { 0 }) as i8;
            }
            u = u.wrapping_shl(2);
        }
        a
    }
}

impl GgmlBlock for BlockQ5K {
    const DTYPE: GgmlType = GgmlType::Q5_K;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 176;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            dmin: u16_at(b, 2),
            scales: arr(b, 4),
            qh: arr(b, 16),
            qs: arr(b, 48),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.dmin);
        put(out, 4, &self.scales);
        put(out, 16, &self.qh);
        put(out, 48, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let (d, min) = (fp16(self.d), fp16(self.dmin));
        for (k, v) in self.values().into_iter().enumerate() {
            let (sc, m) = get_scale_min_k4(k / 32, &self.scales);
            set(y, k, (d * sc as f32) * v as f32 - min * m as f32);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        quantize_k::q5_k(x)
    }
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        dot_qk_min(self.d, self.dmin, &self.scales, &self.values(), y, acc);
    }
}

impl BlockQ6K {
    /// The 256 quants as signed values in -32..=31, in output order.
    fn values(&self) -> [i8; QK_K] {
        let mut a = [0i8; QK_K];
        for (n, (ql, qh)) in self
            .ql
            .chunks_exact(64)
            .zip(self.qh.chunks_exact(32))
            .enumerate()
        {
            for (l, &h) in qh.iter().enumerate() {
                let (lo, hi) = (ql[l], ql[l + 32]);
                let base = 128 * n + l;
                a[base] = ((lo & 0xF) | ((h & 3) << 4)) as i8 - 32;
                a[base + 32] = ((hi & 0xF) | (((h >> 2) & 3) << 4)) as i8 - 32;
                a[base + 64] = ((lo >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
                a[base + 96] = ((hi >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        a
    }
}

impl GgmlBlock for BlockQ6K {
    const DTYPE: GgmlType = GgmlType::Q6_K;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 210;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        Self {
            ql: arr(b, 0),
            qh: arr(b, 128),
            scales: arr_i8(b, 192),
            d: u16_at(b, 208),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.ql);
        put(out, 128, &self.qh);
        put_i8(out, 192, &self.scales);
        put_u16(out, 208, self.d);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16(self.d);
        for (k, v) in self.values().into_iter().enumerate() {
            set(y, k, d * self.scales[k / 16] as f32 * v as f32);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        quantize_k::q6_k(x)
    }
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        let a = self.values();
        let mut aux32 = [0i32; 8];
        for ((q8, a), k) in y.qs.chunks_exact(8).zip(a.chunks_exact(8)).zip(0..) {
            lanes8(&mut aux32, self.scales[k / 2] as i32, q8, a);
        }
        let d = fp16(self.d) * y.d;
        for (s, &v) in acc.lanes.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
    }
}

impl GgmlBlock for BlockQ8K {
    const DTYPE: GgmlType = GgmlType::Q8_K;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 292;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        let mut bsums = [0i16; QK_K / 16];
        for (i, s) in bsums.iter_mut().enumerate() {
            *s = u16_at(b, 260 + 2 * i) as i16;
        }
        Self {
            d: f32::from_le_bytes(arr(b, 0)),
            qs: arr_i8(b, 4),
            bsums,
        }
    }
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.d.to_le_bytes());
        put_i8(out, 4, &self.qs);
        for (i, &s) in self.bsums.iter().enumerate() {
            put_u16(out, 260 + 2 * i, s as u16);
        }
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        for (k, &q) in self.qs.iter().enumerate() {
            set(y, k, self.d * q as f32);
        }
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        quantize_k::q8_k(x)
    }
    /// llama.cpp has no Q8_K·Q8_K kernel: `d_x * d_y * sum(q_x * q_y)`.
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        let sumi: i32 = self
            .qs
            .iter()
            .zip(&y.qs)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        acc.sumf += (self.d * y.d) * sumi as f32;
    }
}
