//! The non-linear 4-bit types IQ4_NL (blocks of 32) and IQ4_XS (super-blocks
//! of 256): 4-bit indices into the table [`KVALUES_IQ4NL`].
//!
//! Dequantizers follow `dequantize_row_iq4_nl` / `dequantize_row_iq4_xs` in
//! llama.cpp's `ggml-quants.c`, dot products `ggml_vec_dot_iq4_nl_q8_0_generic`
//! and `ggml_vec_dot_iq4_xs_q8_K_generic` in `ggml-cpu/quants.c`. Quantizing
//! to these types needs llama.cpp's importance-matrix search and is not
//! provided: [`GgmlBlock::quantize_block`] returns [`QuantError::Unsupported`].

use super::float::f16_bits_to_f32 as fp16;
use super::k_quants::{BlockQ8K, QK_K};
use super::le_bytes::{arr, put, put_u16, u16_at};
use super::legacy::{set, BlockQ8_0};
use super::{DotAcc, GgmlBlock, QuantError};
use crate::GgmlType;

/// The 16 IQ4 levels (`kvalues_iq4nl` in `ggml-common.h`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

const QK4_NL: usize = 32;

#[inline]
fn kv(i: u8) -> i32 {
    KVALUES_IQ4NL[(i & 0xF) as usize] as i32
}

/// `block_iq4_nl`: value `d * KVALUES_IQ4NL[q]` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockIQ4NL {
    /// Scale (f16 bits).
    pub d: u16,
    /// Indices: low nibbles are values 0..16, high nibbles 16..32.
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4NL>() == 18);

/// `block_iq4_xs`: 8 sub-blocks of 32 with signed 6-bit scales; value
/// `d * (ls - 32) * KVALUES_IQ4NL[q]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockIQ4XS {
    /// Super-block scale (f16 bits).
    pub d: u16,
    /// High 2 bits of the 8 sub-block scales.
    pub scales_h: u16,
    /// Low 4 bits of the 8 sub-block scales.
    pub scales_l: [u8; QK_K / 64],
    /// Indices: per 32-value sub-block, 16 bytes of low then high nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);

impl Default for BlockIQ4XS {
    fn default() -> Self {
        Self {
            d: 0,
            scales_h: 0,
            scales_l: [0; QK_K / 64],
            qs: [0; QK_K / 2],
        }
    }
}

fn unsupported<T>(ty: GgmlType) -> Result<T, QuantError> {
    Err(QuantError::Unsupported { ty, op: "quantize" })
}

impl GgmlBlock for BlockIQ4NL {
    const DTYPE: GgmlType = GgmlType::IQ4_NL;
    const BLCK_SIZE: usize = QK4_NL;
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
            set(y, j, d * kv(q) as f32);
            set(y, j + QK4_NL / 2, d * kv(q >> 4) as f32);
        }
    }
    fn quantize_block(_x: &[f32]) -> Result<Self, QuantError> {
        unsupported(Self::DTYPE)
    }
    fn dot_block(&self, y: &BlockQ8_0, acc: &mut DotAcc) {
        let d = fp16(y.d) * fp16(self.d);
        let (mut s1, mut s2) = (0i32, 0i32);
        for (j, &q) in self.qs.iter().enumerate() {
            s1 += y.qs[j] as i32 * kv(q);
            s2 += y.qs[j + QK4_NL / 2] as i32 * kv(q >> 4);
        }
        acc.sumf += d * (s1 + s2) as f32;
    }
}

impl BlockIQ4XS {
    /// The signed scale of sub-block `ib` (0..8), minus 32.
    #[inline]
    fn scale(&self, ib: usize) -> i32 {
        let lo = (self.scales_l.get(ib / 2).copied().unwrap_or(0) >> (4 * (ib % 2))) & 0xF;
        let hi = ((self.scales_h >> (2 * ib)) & 3) as u8;
        (lo | (hi << 4)) as i32 - 32
    }
}

impl GgmlBlock for BlockIQ4XS {
    const DTYPE: GgmlType = GgmlType::IQ4_XS;
    const BLCK_SIZE: usize = QK_K;
    const TYPE_SIZE: usize = 136;
    type VecDotType = BlockQ8K;

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            scales_h: u16_at(b, 2),
            scales_l: arr(b, 4),
            qs: arr(b, 8),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.d);
        put_u16(out, 2, self.scales_h);
        put(out, 4, &self.scales_l);
        put(out, 8, &self.qs);
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16(self.d);
        for (ib, qs) in self.qs.chunks_exact(16).enumerate() {
            let dl = d * self.scale(ib) as f32;
            for (j, &q) in qs.iter().enumerate() {
                set(y, 32 * ib + j, dl * kv(q) as f32);
                set(y, 32 * ib + j + 16, dl * kv(q >> 4) as f32);
            }
        }
    }
    fn quantize_block(_x: &[f32]) -> Result<Self, QuantError> {
        unsupported(Self::DTYPE)
    }
    fn dot_block(&self, y: &BlockQ8K, acc: &mut DotAcc) {
        let d4d8 = fp16(self.d) * y.d;
        for (ib, (qs, q8)) in self
            .qs
            .chunks_exact(16)
            .zip(y.qs.chunks_exact(32))
            .enumerate()
        {
            let dl = d4d8 * self.scale(ib) as f32;
            let (mut s1, mut s2) = (0i32, 0i32);
            for (j, &q) in qs.iter().enumerate() {
                s1 += q8[j] as i32 * kv(q);
                s2 += q8[j + 16] as i32 * kv(q >> 4);
            }
            acc.sumf += dl * (s1 + s2) as f32;
        }
    }
}
