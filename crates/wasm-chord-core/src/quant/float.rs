//! F32, F16 and BF16 as one-element "blocks", and the f16/bf16 conversions
//! ggml uses (`ggml_compute_fp32_to_fp16`, `ggml_compute_fp32_to_bf16` in
//! `ggml-impl.h`).

use super::le_bytes::{arr, put, put_u16, u16_at};
use super::{DotAcc, GgmlBlock, QuantError};
use crate::GgmlType;
use half::{bf16, f16};

/// f16 bits to f32 (exact; every f16 is an f32).
#[inline]
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// f32 to f16 bits, rounding to nearest even, as ggml's
/// `ggml_compute_fp32_to_fp16`: overflow gives ±inf, NaN gives `0x7E00` with
/// the input's sign.
#[inline]
pub fn f32_to_f16_bits(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 0x1.0p+112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 0x1.0p-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

/// bf16 bits to f32 (exact).
#[inline]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// f32 to bf16 bits as ggml's `ggml_compute_fp32_to_bf16`: round to nearest
/// even; NaN keeps its top bits and is forced quiet.
#[inline]
pub fn f32_to_bf16_bits(s: f32) -> u16 {
    let i = s.to_bits();
    if i & 0x7fff_ffff > 0x7f80_0000 {
        return ((i >> 16) | 64) as u16;
    }
    (i.wrapping_add(0x7fff + ((i >> 16) & 1)) >> 16) as u16
}

/// The first value of a block slice (the caller guarantees one is there).
#[inline]
fn first(x: &[f32]) -> Result<f32, QuantError> {
    x.first().copied().ok_or(QuantError::LengthMismatch {
        ty: GgmlType::F32,
        what: "input values",
        expected: 1,
        got: 0,
    })
}

#[inline]
fn store(out: &mut [f32], v: f32) {
    if let Some(o) = out.first_mut() {
        *o = v;
    }
}

impl GgmlBlock for f32 {
    const DTYPE: GgmlType = GgmlType::F32;
    const BLCK_SIZE: usize = 1;
    const TYPE_SIZE: usize = 4;
    type VecDotType = f32;

    fn read(bytes: &[u8]) -> Self {
        f32::from_le_bytes(arr::<4>(bytes, 0))
    }
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.to_le_bytes());
    }
    fn dequantize_block(&self, out: &mut [f32]) {
        store(out, *self);
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        first(x)
    }
    /// `ggml_vec_dot_f32`: products in f32, summed in f64.
    fn dot_block(&self, y: &f32, acc: &mut DotAcc) {
        acc.sumd += f64::from(self * y);
    }
}

impl GgmlBlock for f16 {
    const DTYPE: GgmlType = GgmlType::F16;
    const BLCK_SIZE: usize = 1;
    const TYPE_SIZE: usize = 2;
    type VecDotType = f16;

    fn read(bytes: &[u8]) -> Self {
        f16::from_bits(u16_at(bytes, 0))
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.to_bits());
    }
    fn dequantize_block(&self, out: &mut [f32]) {
        store(out, self.to_f32());
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        Ok(f16::from_bits(f32_to_f16_bits(first(x)?)))
    }
    /// `ggml_vec_dot_f16`: products in f32, summed in f64.
    fn dot_block(&self, y: &f16, acc: &mut DotAcc) {
        acc.sumd += f64::from(self.to_f32() * y.to_f32());
    }
}

impl GgmlBlock for bf16 {
    const DTYPE: GgmlType = GgmlType::BF16;
    const BLCK_SIZE: usize = 1;
    const TYPE_SIZE: usize = 2;
    type VecDotType = bf16;

    fn read(bytes: &[u8]) -> Self {
        bf16::from_bits(u16_at(bytes, 0))
    }
    fn write(&self, out: &mut [u8]) {
        put_u16(out, 0, self.to_bits());
    }
    fn dequantize_block(&self, out: &mut [f32]) {
        store(out, bf16_bits_to_f32(self.to_bits()));
    }
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError> {
        Ok(bf16::from_bits(f32_to_bf16_bits(first(x)?)))
    }
    /// `ggml_vec_dot_bf16`: products in f32, summed in f64.
    fn dot_block(&self, y: &bf16, acc: &mut DotAcc) {
        acc.sumd += f64::from(bf16_bits_to_f32(self.to_bits()) * bf16_bits_to_f32(y.to_bits()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_half_round_to_nearest_even() {
        // half's from_f32 also rounds to nearest even; the two must agree on
        // every non-NaN input (sampled densely, including subnormals and overflow).
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let f = f32::from_bits(s);
            if f.is_nan() {
                assert_eq!(f32_to_f16_bits(f) & 0x7fff, 0x7E00);
                continue;
            }
            assert_eq!(f32_to_f16_bits(f), f16::from_f32(f).to_bits(), "{f:e}");
        }
        assert_eq!(f32_to_f16_bits(65520.0), 0x7C00);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd -> up
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0xff81_0000)), 0xffc1);
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(bf16_bits_to_f32(0x4049), f32::from_bits(0x4049_0000));
    }
}
