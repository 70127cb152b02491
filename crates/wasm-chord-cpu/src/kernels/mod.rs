//! Row dot products over raw GGUF weight bytes: one weight row, as stored,
//! against the row's activation blocks (quantized once per token).
//!
//! Each weight type with a fast kernel has a safe entry point here that picks
//! the best kernel for the CPU (features detected once, see [`has_avx2`]) and
//! otherwise falls back to `portable` (raw bytes, no intrinsics; Q8_0, Q5_0,
//! Q4_0) or to [`dot_scalar`], the scalar reference: core's
//! `GgmlBlock::dot_block`, block by block. The SIMD kernels are tested against
//! that reference on random blocks (`tests.rs`).
//!
//! Kernels so far (x86-64 with AVX2, FMA and F16C, ported from ggml-cpu's
//! `arch/x86/quants.c`): Q8_0·Q8_0, Q5_0·Q8_0, Q4_0·Q8_0, Q4_K·Q8_K, Q5_K·Q8_K,
//! Q6_K·Q8_K; the same six with NEON on aarch64 (`neon.rs`, `sdot` where the
//! CPU has dotprod) and with wasm `simd128` where the build enables it
//! (`simd128.rs`; wasm has no run-time detection).

pub(crate) mod attn;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
mod avx512;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;
mod portable;
#[cfg(all(
    test,
    any(
        all(target_arch = "aarch64", target_feature = "neon"),
        all(target_arch = "wasm32", target_feature = "simd128")
    )
))]
mod row_check;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(test)]
mod tests;
pub(crate) mod tiled;

use wasm_chord_core::quant::{
    BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, BlockQ8_0, DotAcc, GgmlBlock,
};

/// Whether the CPU has AVX2, FMA and F16C (detected on first call, then
/// cached).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Σ a_i · b_i` over the shorter slice, in 8 independent partial sums
/// (reduced pairwise at the end) so that it vectorizes on any target; a
/// plain `.sum()` is one serial chain of dependent additions.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (p, q) in ra.iter().zip(rb) {
        s += p * q;
    }
    s
}

/// The scalar reference for any block type: decodes each weight block from
/// its bytes and accumulates core's `dot_block`, exactly as
/// `GgmlBlock::vec_dot` does. Blocks beyond the shorter input are ignored.
pub(crate) fn dot_scalar<B: GgmlBlock>(row: &[u8], acts: &[B::VecDotType]) -> f32 {
    let mut acc = DotAcc::default();
    for (x, y) in row.chunks_exact(B::TYPE_SIZE).zip(acts) {
        B::read(x).dot_block(y, &mut acc);
    }
    acc.finish()
}

/// Four tokens against one weight row with the scalar reference.
pub(crate) fn dot4_scalar<B: GgmlBlock>(row: &[u8], acts: [&[B::VecDotType]; 4]) -> [f32; 4] {
    acts.map(|a| dot_scalar::<B>(row, a))
}

/// The two kernels of one weight type: one token, and four tokens sharing
/// each decoded weight block (prompt batches).
#[derive(Clone, Copy)]
pub(crate) struct RowKernel<A: 'static> {
    /// One weight row · one token's activation blocks.
    pub one: fn(&[u8], &[A]) -> f32,
    /// One weight row · four tokens' activation blocks.
    pub four: fn(&[u8], [&[A]; 4]) -> [f32; 4],
}

impl<A: 'static> RowKernel<A> {
    /// The scalar reference kernels of weight type `B`.
    pub(crate) fn scalar<B: GgmlBlock<VecDotType = A>>() -> Self {
        Self {
            one: dot_scalar::<B>,
            four: dot4_scalar::<B>,
        }
    }
}

/// Defines the safe entry points of one weight type: the AVX2 kernel when
/// the CPU has it, the NEON kernel of the same name on aarch64, the simd128
/// one on wasm32 built with `simd128`, otherwise `$fallback` (the scalar
/// reference unless given).
macro_rules! row_kernel {
    ($(#[$doc:meta])* $name:ident, $block:ty, $act:ty, $avx2:ident) => {
        row_kernel!($(#[$doc])* $name, $block, $act, $avx2, dot_scalar::<$block>);
    };
    ($(#[$doc:meta])* $name:ident, $block:ty, $act:ty, $avx2:ident, $fallback:expr) => {
        $(#[$doc])*
        pub(crate) const $name: RowKernel<$act> = {
            fn one(row: &[u8], acts: &[$act]) -> f32 {
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: AVX2, FMA and F16C were detected on this CPU;
                    // the kernel bounds every read by the slices it is given.
                    let [r] = unsafe { avx2::$avx2::<1>(row, [acts]) };
                    return r;
                }
                // NEON is in the aarch64 baseline (dotprod is detected inside).
                #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
                return neon::$avx2::<1>(row, [acts])[0];
                // simd128 is a compile-time feature on wasm.
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                return simd128::$avx2::<1>(row, [acts])[0];
                #[allow(unreachable_code)]
                $fallback(row, acts)
            }
            fn four(row: &[u8], acts: [&[$act]; 4]) -> [f32; 4] {
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: as in `one`.
                    return unsafe { avx2::$avx2::<4>(row, acts) };
                }
                #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
                return neon::$avx2::<4>(row, acts);
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                return simd128::$avx2::<4>(row, acts);
                #[allow(unreachable_code)]
                acts.map(|a| $fallback(row, a))
            }
            RowKernel { one, four }
        };
    };
}

row_kernel!(
    /// Q8_0 weight rows · Q8_0 activations.
    Q8_0,
    BlockQ8_0,
    BlockQ8_0,
    dot_q8_0_q8_0,
    portable::dot_q8_0
);
row_kernel!(
    /// Q5_0 weight rows · Q8_0 activations.
    Q5_0,
    BlockQ5_0,
    BlockQ8_0,
    dot_q5_0_q8_0,
    portable::dot_q5_0
);
row_kernel!(
    /// Q4_0 weight rows · Q8_0 activations.
    Q4_0,
    BlockQ4_0,
    BlockQ8_0,
    dot_q4_0_q8_0,
    portable::dot_q4_0
);
/// Q5_1 weight rows · Q8_1 activations, in ggml-cpu's x86 order
/// (`portable::dot_q5_1`, which LLVM vectorizes; no intrinsics needed).
pub(crate) const Q5_1: RowKernel<wasm_chord_core::quant::BlockQ8_1> = RowKernel {
    one: portable::dot_q5_1,
    four: |row, acts| acts.map(|a| portable::dot_q5_1(row, a)),
};
/// IQ4_NL weight rows · Q8_0 activations, in ggml-cpu's x86 order
/// (`portable::dot_iq4_nl`).
pub(crate) const IQ4_NL: RowKernel<BlockQ8_0> = RowKernel {
    one: portable::dot_iq4_nl,
    four: |row, acts| acts.map(|a| portable::dot_iq4_nl(row, a)),
};
row_kernel!(
    /// Q4_K weight rows · Q8_K activations.
    Q4_K,
    BlockQ4K,
    BlockQ8K,
    dot_q4_k_q8_k
);
row_kernel!(
    /// Q6_K weight rows · Q8_K activations.
    Q6_K,
    BlockQ6K,
    BlockQ8K,
    dot_q6_k_q8_k
);
row_kernel!(
    /// Q5_K weight rows · Q8_K activations.
    Q5_K,
    BlockQ5K,
    BlockQ8K,
    dot_q5_k_q8_k
);
