//! ggml quantization blocks with scalar reference `dequantize`, `quantize` and
//! `vec_dot`, following llama.cpp.
//!
//! # Blocks
//!
//! A quantized ggml tensor row is a sequence of fixed-size *blocks*. Each block
//! covers [`GgmlBlock::BLCK_SIZE`] consecutive values (32 for the "legacy"
//! types and IQ4_NL, 256 for the K-quants and IQ4_XS) and takes
//! [`GgmlBlock::TYPE_SIZE`] bytes: one or more scales (f16, or f32 for Q8_K)
//! followed by packed integer quants. The structs here ([`BlockQ4_0`],
//! [`BlockQ4K`], ...) are `#[repr(C)]` plain data with exactly the field order
//! and size of llama.cpp's `ggml-common.h`; a `const` assertion next to each
//! checks the size. f16 fields are stored as their `u16` bits.
//!
//! # Reading blocks from bytes
//!
//! GGUF tensor data can sit at any byte offset (a memory map, a `Vec<u8>` in
//! wasm), and most blocks need 2-byte alignment for their f16 fields (Q8_K
//! needs 4), so casting `&[u8]` to `&[Block]` is not always possible. Blocks
//! are therefore decoded field by field from little-endian bytes
//! ([`GgmlBlock::read`]) and encoded back ([`GgmlBlock::write`]). This needs no
//! `unsafe` and no extra dependency, works on any alignment, and costs one
//! small copy per block, which is negligible next to the arithmetic of the
//! scalar reference. Optimised backends that want zero-copy access keep their
//! own kernels over raw bytes; these functions are their reference.
//!
//! # Which llama.cpp function each piece follows
//!
//! - [`GgmlBlock::to_float`]: `dequantize_row_<type>` in `ggml/src/ggml-quants.c`
//!   (same operation order, so results are bit-identical).
//! - [`GgmlBlock::from_float`]: `quantize_row_<type>_ref` in the same file, with
//!   its helpers `nearest_int`, `make_qx_quants`, `make_q3_quants` and
//!   `make_qkx2_quants` (see `quantize_k`). The IQ types have no reference
//!   quantizer here and report [`QuantError::Unsupported`].
//! - [`GgmlBlock::vec_dot`]: `ggml_vec_dot_<type>_<vec dot type>_generic` in
//!   `ggml/src/ggml-cpu/quants.c`, with the activation block type llama.cpp's
//!   CPU backend pairs each weight type with (`vec_dot_type` in `ggml-cpu.c`).
//! - f16 and bf16 conversions: `ggml_compute_fp32_to_fp16` and
//!   `ggml_compute_fp32_to_bf16` in `ggml-impl.h` (see [`f32_to_f16_bits`],
//!   [`f32_to_bf16_bits`]).
//!
//! The byte-level entry points [`dequantize`] and [`quantize`] dispatch on a
//! [`GgmlType`] and check every length first; they never panic on
//! input-derived values.

mod float;
mod iq;
mod k_quants;
mod le_bytes;
mod legacy;
mod quantize_k;

pub use float::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
pub use iq::{BlockIQ4NL, BlockIQ4XS, KVALUES_IQ4NL};
pub use k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK4_0};

use crate::GgmlType;

/// Errors of the quantization layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The operation is not implemented for this ggml type.
    #[error("{op} is not supported for ggml type {ty}")]
    Unsupported {
        /// The type asked for.
        ty: GgmlType,
        /// What was asked (`"dequantize"`, `"quantize"`).
        op: &'static str,
    },
    /// An element count is not a whole number of blocks.
    #[error("{ty}: {len} elements is not a multiple of the block size {block}")]
    NotBlockMultiple {
        /// The block type.
        ty: GgmlType,
        /// The element count given.
        len: usize,
        /// Elements per block.
        block: usize,
    },
    /// A byte buffer is not a whole number of blocks.
    #[error("{ty}: {len} bytes is not a multiple of the block size {block} bytes")]
    NotByteMultiple {
        /// The block type.
        ty: GgmlType,
        /// The byte count given.
        len: usize,
        /// Bytes per block.
        block: usize,
    },
    /// Two buffers that must describe the same number of values do not.
    #[error("{ty}: {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// The block type.
        ty: GgmlType,
        /// Which buffer is wrong.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
}

/// A ggml block type: geometry, its vec-dot partner, and scalar reference
/// conversions (modelled on candle's `quantized::k_quants::GgmlType`).
///
/// The slice functions check lengths and return [`QuantError`] rather than
/// panic, since their lengths usually come from a file.
pub trait GgmlBlock: Copy + Default + std::fmt::Debug + Send + Sync + 'static {
    /// The ggml type id of this block.
    const DTYPE: GgmlType;
    /// Number of values in one block.
    const BLCK_SIZE: usize;
    /// Number of bytes in one block, as stored in GGUF.
    const TYPE_SIZE: usize;
    /// The activation block type llama.cpp pairs this type with in a dot product.
    type VecDotType: GgmlBlock;

    /// Decodes one block from its little-endian bytes. `bytes` should hold
    /// [`Self::TYPE_SIZE`] bytes; missing bytes read as zero, extra are ignored.
    fn read(bytes: &[u8]) -> Self;

    /// Encodes this block into `out` (the first [`Self::TYPE_SIZE`] bytes;
    /// a shorter `out` gets a truncated block).
    fn write(&self, out: &mut [u8]);

    /// Dequantizes one block into `out` (exactly [`Self::BLCK_SIZE`] values are
    /// written when `out` is long enough; a shorter `out` is filled partially).
    fn dequantize_block(&self, out: &mut [f32]);

    /// Quantizes one block of [`Self::BLCK_SIZE`] values (reference quantizer).
    fn quantize_block(x: &[f32]) -> Result<Self, QuantError>;

    /// Scalar dot product of one weight block with one activation block.
    /// `acc` carries state that llama.cpp keeps across blocks (its per-lane
    /// partial sums for some K-quants); [`GgmlBlock::vec_dot`] manages it.
    fn dot_block(&self, y: &Self::VecDotType, acc: &mut DotAcc);

    /// Dequantizes `xs` into `ys`; `ys.len()` must be `xs.len() * BLCK_SIZE`.
    fn to_float(xs: &[Self], ys: &mut [f32]) -> Result<(), QuantError> {
        check_len(
            Self::DTYPE,
            "output values",
            xs.len(),
            Self::BLCK_SIZE,
            ys.len(),
        )?;
        for (x, y) in xs.iter().zip(ys.chunks_exact_mut(Self::BLCK_SIZE)) {
            x.dequantize_block(y);
        }
        Ok(())
    }

    /// Quantizes `xs` into `ys`; `xs.len()` must be `ys.len() * BLCK_SIZE`.
    fn from_float(xs: &[f32], ys: &mut [Self]) -> Result<(), QuantError> {
        check_len(
            Self::DTYPE,
            "input values",
            ys.len(),
            Self::BLCK_SIZE,
            xs.len(),
        )?;
        for (x, y) in xs.chunks_exact(Self::BLCK_SIZE).zip(ys.iter_mut()) {
            *y = Self::quantize_block(x)?;
        }
        Ok(())
    }

    /// Scalar reference dot product of `n` values: weights `xs` against
    /// activations `ys`, as ggml-cpu's generic `vec_dot` computes it.
    fn vec_dot(n: usize, xs: &[Self], ys: &[Self::VecDotType]) -> Result<f32, QuantError> {
        if !n.is_multiple_of(Self::BLCK_SIZE) {
            return Err(QuantError::NotBlockMultiple {
                ty: Self::DTYPE,
                len: n,
                block: Self::BLCK_SIZE,
            });
        }
        let nb = n / Self::BLCK_SIZE;
        if xs.len() != nb {
            return Err(QuantError::LengthMismatch {
                ty: Self::DTYPE,
                what: "weight blocks",
                expected: nb,
                got: xs.len(),
            });
        }
        if ys.len() != nb {
            return Err(QuantError::LengthMismatch {
                ty: Self::DTYPE,
                what: "activation blocks",
                expected: nb,
                got: ys.len(),
            });
        }
        let mut acc = DotAcc::default();
        for (x, y) in xs.iter().zip(ys) {
            x.dot_block(y, &mut acc);
        }
        Ok(acc.finish())
    }
}

/// Accumulator state of a scalar dot product, shaped like ggml-cpu's generic
/// kernels: a running `sumf`, eight per-lane partial sums (`sums[8]` in the
/// Q3_K..Q6_K kernels, added to `sumf` at the very end), and an f64 sum for
/// the float types (`ggml_float`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DotAcc {
    /// Running sum (`sumf`).
    pub sumf: f32,
    /// Per-lane partial sums (`sums[8]`).
    pub lanes: [f32; 8],
    /// Double-precision sum used by the float types.
    pub sumd: f64,
}

impl DotAcc {
    /// The final value, summed in llama.cpp's order.
    pub fn finish(self) -> f32 {
        let mut s = self.sumf;
        for l in self.lanes {
            s += l;
        }
        s + self.sumd as f32
    }
}

fn check_len(
    ty: GgmlType,
    what: &'static str,
    blocks: usize,
    per_block: usize,
    got: usize,
) -> Result<(), QuantError> {
    let expected = blocks
        .checked_mul(per_block)
        .ok_or(QuantError::LengthMismatch {
            ty,
            what,
            expected: usize::MAX,
            got,
        })?;
    if expected != got {
        return Err(QuantError::LengthMismatch {
            ty,
            what,
            expected,
            got,
        });
    }
    Ok(())
}

fn dequantize_as<B: GgmlBlock>(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !src.len().is_multiple_of(B::TYPE_SIZE) {
        return Err(QuantError::NotByteMultiple {
            ty: B::DTYPE,
            len: src.len(),
            block: B::TYPE_SIZE,
        });
    }
    check_len(
        B::DTYPE,
        "output values",
        src.len() / B::TYPE_SIZE,
        B::BLCK_SIZE,
        dst.len(),
    )?;
    for (b, y) in src
        .chunks_exact(B::TYPE_SIZE)
        .zip(dst.chunks_exact_mut(B::BLCK_SIZE))
    {
        B::read(b).dequantize_block(y);
    }
    Ok(())
}

fn quantize_as<B: GgmlBlock>(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    if !src.len().is_multiple_of(B::BLCK_SIZE) {
        return Err(QuantError::NotBlockMultiple {
            ty: B::DTYPE,
            len: src.len(),
            block: B::BLCK_SIZE,
        });
    }
    check_len(
        B::DTYPE,
        "output bytes",
        src.len() / B::BLCK_SIZE,
        B::TYPE_SIZE,
        dst.len(),
    )?;
    for (x, out) in src
        .chunks_exact(B::BLCK_SIZE)
        .zip(dst.chunks_exact_mut(B::TYPE_SIZE))
    {
        B::quantize_block(x)?.write(out);
    }
    Ok(())
}

/// Calls `$f::<BlockType>($args)` for the block type of `$ty`, or evaluates
/// `$other` for a type outside the supported list.
macro_rules! dispatch {
    ($ty:expr, $f:ident ($($arg:expr),*), $other:expr) => {
        match $ty {
            GgmlType::F32 => $f::<f32>($($arg),*),
            GgmlType::F16 => $f::<half::f16>($($arg),*),
            GgmlType::BF16 => $f::<half::bf16>($($arg),*),
            GgmlType::Q4_0 => $f::<BlockQ4_0>($($arg),*),
            GgmlType::Q4_1 => $f::<BlockQ4_1>($($arg),*),
            GgmlType::Q5_0 => $f::<BlockQ5_0>($($arg),*),
            GgmlType::Q5_1 => $f::<BlockQ5_1>($($arg),*),
            GgmlType::Q8_0 => $f::<BlockQ8_0>($($arg),*),
            GgmlType::Q8_1 => $f::<BlockQ8_1>($($arg),*),
            GgmlType::Q2_K => $f::<BlockQ2K>($($arg),*),
            GgmlType::Q3_K => $f::<BlockQ3K>($($arg),*),
            GgmlType::Q4_K => $f::<BlockQ4K>($($arg),*),
            GgmlType::Q5_K => $f::<BlockQ5K>($($arg),*),
            GgmlType::Q6_K => $f::<BlockQ6K>($($arg),*),
            GgmlType::Q8_K => $f::<BlockQ8K>($($arg),*),
            GgmlType::IQ4_NL => $f::<BlockIQ4NL>($($arg),*),
            GgmlType::IQ4_XS => $f::<BlockIQ4XS>($($arg),*),
            _ => $other,
        }
    };
}

/// Whether [`dequantize`] supports `ty`.
pub fn can_dequantize(ty: GgmlType) -> bool {
    dispatch!(ty, always(), false)
}

/// Whether [`quantize`] supports `ty` (every dequantizable type but the IQ ones).
pub fn can_quantize(ty: GgmlType) -> bool {
    can_dequantize(ty) && !matches!(ty, GgmlType::IQ4_NL | GgmlType::IQ4_XS)
}

fn always<B: GgmlBlock>() -> bool {
    B::BLCK_SIZE > 0
}

/// Dequantizes the GGUF bytes `src` of type `ty` into `dst`.
///
/// `src` must be a whole number of blocks and `dst` must hold exactly the
/// values they encode. Follows llama.cpp's `dequantize_row_<type>`.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    dispatch!(
        ty,
        dequantize_as(src, dst),
        Err(QuantError::Unsupported {
            ty,
            op: "dequantize"
        })
    )
}

/// Quantizes `src` into the GGUF bytes `dst` of type `ty` with llama.cpp's
/// reference quantizer (`quantize_row_<type>_ref`).
///
/// `src.len()` must be a whole number of blocks and `dst` exactly as long as
/// their encoding ([`GgmlType::row_bytes`]). IQ types return
/// [`QuantError::Unsupported`].
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    if !can_quantize(ty) {
        return Err(QuantError::Unsupported { ty, op: "quantize" });
    }
    dispatch!(
        ty,
        quantize_as(src, dst),
        Err(QuantError::Unsupported { ty, op: "quantize" })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_f32(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn unsupported_types_are_reported() {
        let mut out = [0f32; 256];
        for ty in GgmlType::ALL {
            let r = dequantize(ty, &vec![0u8; ty.type_size()], &mut out[..ty.block_size()]);
            if can_dequantize(ty) {
                assert_eq!(r, Ok(()), "{ty}");
            } else {
                assert_eq!(
                    r,
                    Err(QuantError::Unsupported {
                        ty,
                        op: "dequantize"
                    })
                );
            }
        }
        let x = random_f32(256, 1);
        for ty in [
            GgmlType::IQ4_NL,
            GgmlType::IQ4_XS,
            GgmlType::IQ2_XXS,
            GgmlType::I32,
        ] {
            let mut dst = vec![0u8; ty.type_size() * (256 / ty.block_size())];
            assert_eq!(
                quantize(ty, &x, &mut dst),
                Err(QuantError::Unsupported { ty, op: "quantize" })
            );
        }
    }

    #[test]
    fn geometry_matches_ggml_type() {
        for ty in GgmlType::ALL.into_iter().filter(|t| can_dequantize(*t)) {
            let (bs, ts) = dispatch!(ty, geometry(), unreachable!());
            assert_eq!((bs, ts), (ty.block_size(), ty.type_size()), "{ty}");
        }
    }

    fn geometry<B: GgmlBlock>() -> (usize, usize) {
        (B::BLCK_SIZE, B::TYPE_SIZE)
    }

    #[test]
    fn dequantize_rejects_bad_lengths() {
        let ty = GgmlType::Q4_K;
        let mut out = vec![0f32; 512];
        assert_eq!(
            dequantize(ty, &[0u8; 145], &mut out[..256]),
            Err(QuantError::NotByteMultiple {
                ty,
                len: 145,
                block: 144
            })
        );
        assert_eq!(
            dequantize(ty, &[0u8; 288], &mut out[..256]),
            Err(QuantError::LengthMismatch {
                ty,
                what: "output values",
                expected: 512,
                got: 256
            })
        );
        assert_eq!(dequantize(ty, &[0u8; 288], &mut out), Ok(()));
        assert_eq!(dequantize(ty, &[], &mut []), Ok(()));
        let ty = GgmlType::F16;
        assert_eq!(
            dequantize(ty, &[0u8; 3], &mut out[..1]),
            Err(QuantError::NotByteMultiple {
                ty,
                len: 3,
                block: 2
            })
        );
    }

    #[test]
    fn quantize_rejects_bad_lengths() {
        let x = random_f32(300, 2);
        let ty = GgmlType::Q8_0;
        let mut dst = vec![0u8; 34 * 9];
        assert_eq!(
            quantize(ty, &x, &mut dst),
            Err(QuantError::NotBlockMultiple {
                ty,
                len: 300,
                block: 32
            })
        );
        assert_eq!(
            quantize(ty, &x[..256], &mut dst),
            Err(QuantError::LengthMismatch {
                ty,
                what: "output bytes",
                expected: 272,
                got: 306
            })
        );
        assert_eq!(quantize(ty, &x[..288], &mut dst), Ok(()));
        let ty = GgmlType::Q6_K;
        assert_eq!(
            quantize(ty, &x[..32], &mut dst[..210]),
            Err(QuantError::NotBlockMultiple {
                ty,
                len: 32,
                block: 256
            })
        );
    }

    #[test]
    fn slice_api_rejects_bad_lengths() {
        let x = random_f32(64, 3);
        let mut blocks = [BlockQ8_0::default(); 2];
        BlockQ8_0::from_float(&x, &mut blocks).unwrap();
        let mut y = [0f32; 63];
        assert!(matches!(
            BlockQ8_0::to_float(&blocks, &mut y),
            Err(QuantError::LengthMismatch {
                expected: 64,
                got: 63,
                ..
            })
        ));
        assert!(BlockQ8_0::from_float(&x[..63], &mut blocks).is_err());
        assert!(matches!(
            BlockQ8_0::vec_dot(33, &blocks, &blocks),
            Err(QuantError::NotBlockMultiple { len: 33, .. })
        ));
        assert!(matches!(
            BlockQ8_0::vec_dot(32, &blocks, &blocks),
            Err(QuantError::LengthMismatch {
                what: "weight blocks",
                ..
            })
        ));
        assert!(matches!(
            BlockQ8_0::vec_dot(64, &blocks, &blocks[..1]),
            Err(QuantError::LengthMismatch {
                what: "activation blocks",
                ..
            })
        ));
        assert!(BlockQ8_0::vec_dot(64, &blocks, &blocks).is_ok());
        assert!(BlockIQ4NL::from_float(&x[..32], &mut [BlockIQ4NL::default()]).is_err());
    }

    #[test]
    fn hostile_values_never_panic() {
        // Arbitrary bytes (NaN/inf scales included) and non-finite or huge
        // floats must not trip overflow checks or indexing anywhere.
        let mut bytes = vec![0u8; 4096];
        let mut s = 0x2545_f491u32;
        for b in bytes.iter_mut() {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *b = (s >> 24) as u8;
        }
        let specials = [
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            f32::MAX,
            -f32::MAX,
            1e30,
            0.0,
        ];
        let mut x = random_f32(1024, 5);
        for (i, v) in x.iter_mut().enumerate().step_by(7) {
            *v = specials[i % specials.len()];
        }
        let zeros = vec![0f32; 1024];
        for ty in GgmlType::ALL.into_iter().filter(|t| can_dequantize(*t)) {
            let n = 1024 / ty.block_size() * ty.type_size();
            let mut out = vec![0f32; 1024];
            dequantize(ty, &bytes[..n], &mut out).unwrap();
            if can_quantize(ty) {
                let mut q = vec![0u8; n];
                quantize(ty, &x, &mut q).unwrap();
                dequantize(ty, &q, &mut out).unwrap();
                quantize(ty, &zeros, &mut q).unwrap();
                dequantize(ty, &q, &mut out).unwrap();
                assert!(out.iter().all(|&v| v == 0.0), "{ty}: zeros round trip");
            }
        }
        let w: Vec<BlockQ4K> = bytes[..144 * 4]
            .chunks_exact(144)
            .map(BlockQ4K::read)
            .collect();
        let a: Vec<BlockQ8K> = bytes[..292 * 4]
            .chunks_exact(292)
            .map(BlockQ8K::read)
            .collect();
        let _ = BlockQ4K::vec_dot(1024, &w, &a).unwrap();
    }

    #[test]
    fn blocks_round_trip_through_bytes_at_any_alignment() {
        let x = random_f32(256, 4);
        let mut bytes = [0u8; 1 + 144];
        quantize(GgmlType::Q4_K, &x, &mut bytes[1..]).unwrap();
        let b = BlockQ4K::read(&bytes[1..]);
        let mut again = vec![0u8; 144];
        b.write(&mut again);
        assert_eq!(&bytes[1..], &again[..]);
        let mut y1 = [0f32; 256];
        let mut y2 = [0f32; 256];
        dequantize(GgmlType::Q4_K, &bytes[1..], &mut y1).unwrap();
        b.dequantize_block(&mut y2);
        assert_eq!(y1, y2);
    }
}
