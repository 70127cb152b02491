//! NEON row dot products over raw GGUF weight bytes (aarch64), after the
//! algorithms of ggml-cpu's `arch/arm/quants.c` (`ggml_vec_dot_*` under
//! `__ARM_NEON`): Q8_0·Q8_0, Q5_0·Q8_0, Q4_0·Q8_0, Q4_K·Q8_K, Q5_K·Q8_K and
//! Q6_K·Q8_K, each for `N` tokens sharing one decoded weight block.
//!
//! NEON itself is part of the build's baseline (this module is compiled only
//! where `target_feature = "neon"` is on, as on every aarch64 Linux, Android
//! and Apple target), so it needs no detection. The one optional instruction
//! is `sdot` (the dotprod extension, Armv8.2-A and later: 16 int8 products
//! summed in groups of 4 onto 4 int32 lanes). It is detected at run time
//! ([`has_dotprod`]); where it is missing, widening multiplies
//! (`smull`/`smull2`) with pairwise accumulation (`sadalp`) take its place.
//! The two group the products differently across lanes but give the same
//! lane total, and every kernel only uses lane totals (or multiplies all
//! lanes by one factor), so both compute the same integers. Rust's
//! `vdotq_s32` is not stable yet, so `sdot` is written as inline assembly.
//!
//! Each kernel walks the row's blocks and every token's activation blocks
//! together and stops at the shortest, so a short slice only shortens the
//! dot. The entry points are safe. The tests below run both integer-dot
//! variants, for one and four tokens, against the scalar reference.

// Most NEON intrinsics are safe where NEON is enabled from Rust 1.87 on; the
// crate's MSRV (1.80) still needs them inside `unsafe` blocks.
#![allow(unused_unsafe)]

use std::arch::aarch64::*;
use std::arch::asm;
use wasm_chord_core::quant::{BlockQ8K, BlockQ8_0};

/// Whether the CPU has the dotprod extension (`sdot`); std caches the answer.
#[inline]
pub(super) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// f16 bits to f32 with the base-ISA `fcvt` (exact for every f16; a NaN
/// comes back quieted).
#[inline]
fn fp16(bits: u16) -> f32 {
    let out: f32;
    // SAFETY: `fmov` (general to SIMD register) and `fcvt` (half to single)
    // are base Armv8-A floating-point instructions; they touch registers only.
    unsafe {
        asm!(
            "fmov {t:s}, {b:w}",
            "fcvt {o:s}, {t:h}",
            b = in(reg) u32::from(bits),
            t = out(vreg) _,
            o = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// Little-endian u16 at `b[at..at + 2]`.
#[inline]
fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// 16 bytes of `b` from `at` (bounds-checked) as a vector.
#[inline(always)]
fn load_u8(b: &[u8], at: usize) -> uint8x16_t {
    let s = &b[at..at + 16];
    // SAFETY: `s` has 16 readable bytes; NEON is in the build's baseline.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// 16 int8 of `b` from `at` (bounds-checked) as a vector.
#[inline(always)]
fn load_i8(b: &[i8], at: usize) -> int8x16_t {
    let s = &b[at..at + 16];
    // SAFETY: `s` has 16 readable bytes; NEON is in the build's baseline.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// Blocks all inputs have: the shortest of the row and the activations.
#[inline]
fn n_blocks<A, const N: usize>(row: &[u8], type_size: usize, acts: &[&[A]; N]) -> usize {
    acts.iter()
        .fold(row.len() / type_size, |m, a| m.min(a.len()))
}

/// Integer dot of 16 int8 pairs added onto the 4 int32 lanes of `acc`.
trait IDot {
    /// # Safety
    /// The CPU must have the instructions the implementation uses.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// `sdot`: lane `k` gains `Σ_{j<4} a[4k+j]·b[4k+j]` (needs dotprod).
struct Sdot;

impl IDot for Sdot {
    #[inline(always)]
    unsafe fn dot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: the caller guarantees dotprod; registers only.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }
}

/// Base NEON: the products of bytes 0-7 and 8-15 as int16 (`smull`,
/// `smull2`; exact, as `|a·b| ≤ 2^14`), adjacent pairs added onto the lanes
/// (`sadalp`).
struct Smull;

impl IDot for Smull {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: base NEON only.
        unsafe {
            let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let hi = vmull_high_s8(a, b);
            vpadalq_s16(vpadalq_s16(acc, lo), hi)
        }
    }
}

/// One weight type's kernel: one row against `N` tokens' activations.
trait Kernel {
    /// The activation block type.
    type Act;
    /// # Safety
    /// The CPU must have the instructions `D` uses.
    unsafe fn dot<D: IDot, const N: usize>(row: &[u8], acts: [&[Self::Act]; N]) -> [f32; N];
}

/// `K`'s kernel with `sdot` where `sdot` is asked for and the CPU has it,
/// otherwise with the base-NEON integer dot.
fn run<K: Kernel, const N: usize>(row: &[u8], acts: [&[K::Act]; N], sdot: bool) -> [f32; N] {
    #[target_feature(enable = "dotprod")]
    unsafe fn with_sdot<K: Kernel, const N: usize>(row: &[u8], acts: [&[K::Act]; N]) -> [f32; N] {
        // SAFETY: this function is compiled with dotprod, and runs only where
        // the CPU has it (the caller's check).
        unsafe { K::dot::<Sdot, N>(row, acts) }
    }
    if sdot && has_dotprod() {
        // SAFETY: dotprod was detected just above.
        unsafe { with_sdot::<K, N>(row, acts) }
    } else {
        // SAFETY: `Smull` needs base NEON only, which the build targets.
        unsafe { K::dot::<Smull, N>(row, acts) }
    }
}

/// A weight type of 32-value blocks paired with Q8_0 activations.
trait Q8_0Partner {
    /// Bytes per block.
    const TS: usize;
    /// The block's 32 values as signed bytes, values 0-15 then 16-31
    /// (`x` holds one whole block).
    fn decode(x: &[u8]) -> [int8x16_t; 2];
}

/// Q8_0 weights (34-byte blocks: f16 d, 32 quants at 2).
struct Q8_0;

impl Q8_0Partner for Q8_0 {
    const TS: usize = 34;
    #[inline(always)]
    fn decode(x: &[u8]) -> [int8x16_t; 2] {
        // SAFETY: base NEON only (reinterpretations).
        unsafe {
            [
                vreinterpretq_s8_u8(load_u8(x, 2)),
                vreinterpretq_s8_u8(load_u8(x, 18)),
            ]
        }
    }
}

/// Q4_0 weights (18-byte blocks: f16 d, 16 nibble bytes at 2): value `j`
/// is the low nibble of byte `j` (`j < 16`) or the high nibble of byte
/// `j - 16`, minus 8.
struct Q4_0;

impl Q8_0Partner for Q4_0 {
    const TS: usize = 18;
    #[inline(always)]
    fn decode(x: &[u8]) -> [int8x16_t; 2] {
        let v = load_u8(x, 2);
        // SAFETY: base NEON only.
        unsafe {
            let s8 = vdupq_n_s8(8);
            let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
            let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
            [vsubq_s8(lo, s8), vsubq_s8(hi, s8)]
        }
    }
}

/// Bit `k % 8` in lane `k`: tests one bit of a byte spread over 8 lanes.
static BIT_IN_LANE: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// Q5_0 weights (22-byte blocks: f16 d, `qh` 4 bytes at 2, 16 nibble bytes
/// at 6): value `j` is its nibble plus 16 times bit `j` of `qh`, minus 16.
struct Q5_0;

impl Q8_0Partner for Q5_0 {
    const TS: usize = 22;
    #[inline(always)]
    fn decode(x: &[u8]) -> [int8x16_t; 2] {
        let qh = [x[2], x[3], x[4], x[5]];
        let v = load_u8(x, 6);
        // SAFETY: base NEON only; `BIT_IN_LANE` has 16 bytes.
        unsafe {
            let bits = vld1q_u8(BIT_IN_LANE.as_ptr());
            let m16 = vdupq_n_u8(0x10);
            // 16 where a value's fifth bit is clear (ggml's `table_b2b_1`).
            let off_lo = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
            let off_lo = vbicq_u8(m16, vtstq_u8(off_lo, bits));
            let off_hi = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
            let off_hi = vbicq_u8(m16, vtstq_u8(off_hi, bits));
            let lo = vsubq_u8(vandq_u8(v, vdupq_n_u8(0x0F)), off_lo);
            let hi = vsubq_u8(vshrq_n_u8::<4>(v), off_hi);
            [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)]
        }
    }
}

/// One weight block of a Q8_0 partner against `N` tokens' block `i`:
/// `acc[t] += (Σ w·q) · d_w · d_t`, four float lanes per token.
///
/// # Safety
/// The CPU must have the instructions `D` uses.
#[inline(always)]
unsafe fn q8_0_step<W: Q8_0Partner, D: IDot, const N: usize>(
    acc: &mut [float32x4_t; N],
    x: &[u8],
    acts: &[&[BlockQ8_0]; N],
    i: usize,
) {
    let dx = fp16(le16(x, 0));
    let [x0, x1] = W::decode(x);
    for (a, ys) in acc.iter_mut().zip(acts) {
        let y = &ys[i];
        // SAFETY: `D` per this function's contract; the rest is base NEON.
        unsafe {
            let zero = vdupq_n_s32(0);
            let p = D::dot(D::dot(zero, x0, load_i8(&y.qs, 0)), x1, load_i8(&y.qs, 16));
            *a = vfmaq_n_f32(*a, vcvtq_f32_s32(p), dx * fp16(y.d));
        }
    }
}

/// A Q8_0 partner row against `N` tokens, two blocks at a time into two
/// accumulators per token (as ggml), summed across lanes at the end.
///
/// # Safety
/// The CPU must have the instructions `D` uses.
#[inline(always)]
unsafe fn q8_0_partner<W: Q8_0Partner, D: IDot, const N: usize>(
    row: &[u8],
    acts: [&[BlockQ8_0]; N],
) -> [f32; N] {
    let nb = n_blocks(row, W::TS, &acts);
    // SAFETY: base NEON.
    let zero = unsafe { vdupq_n_f32(0.0) };
    let (mut acc0, mut acc1) = ([zero; N], [zero; N]);
    let mut blocks = row.chunks_exact(W::TS).take(nb).enumerate();
    while let Some((i, x)) = blocks.next() {
        // SAFETY: `D` per this function's contract; `i < nb`.
        unsafe { q8_0_step::<W, D, N>(&mut acc0, x, &acts, i) };
        if let Some((i, x)) = blocks.next() {
            // SAFETY: as above.
            unsafe { q8_0_step::<W, D, N>(&mut acc1, x, &acts, i) };
        }
    }
    let mut out = [0f32; N];
    for ((o, a0), a1) in out.iter_mut().zip(acc0).zip(acc1) {
        // SAFETY: base NEON.
        *o = unsafe { vaddvq_f32(a0) + vaddvq_f32(a1) };
    }
    out
}

macro_rules! q8_0_kernel {
    ($($w:ident),*) => {$(
        impl Kernel for $w {
            type Act = BlockQ8_0;
            #[inline(always)]
            unsafe fn dot<D: IDot, const N: usize>(
                row: &[u8],
                acts: [&[BlockQ8_0]; N],
            ) -> [f32; N] {
                // SAFETY: forwarded contract.
                unsafe { q8_0_partner::<Self, D, N>(row, acts) }
            }
        }
    )*};
}
q8_0_kernel!(Q8_0, Q4_0, Q5_0);

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block (its 12 scale
/// bytes), as ggml's `utmp` unpacking: `[scales, mins]`.
#[inline]
fn k4_scales_mins(s: &[u8]) -> [[u8; 8]; 2] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let sc = [u0 & KMASK1, (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4)];
    let mn = [
        u1 & KMASK1,
        ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
    ];
    let bytes = |p: [u32; 2]| {
        let (a, b) = (p[0].to_le_bytes(), p[1].to_le_bytes());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    };
    [bytes(sc), bytes(mn)]
}

/// A Q4_K/Q5_K row against `N` tokens, given each block's 256 unsigned
/// values as 8 groups of 32 (`values`, decoded once for all tokens):
/// `d·Σ_g sc_g·Σ w·q − dmin·Σ_g m_g·Σ q` per block.
///
/// # Safety
/// The CPU must have the instructions `D` uses.
#[inline(always)]
unsafe fn k4_min_kernel<D: IDot, const N: usize>(
    row: &[u8],
    acts: [&[BlockQ8K]; N],
    ts: usize,
    values: impl Fn(&[u8]) -> [[int8x16_t; 2]; 8],
) -> [f32; N] {
    let nb = n_blocks(row, ts, &acts);
    let mut sumf = [0f32; N];
    for (i, x) in row.chunks_exact(ts).take(nb).enumerate() {
        let xd = fp16(le16(x, 0));
        let xdmin = fp16(le16(x, 2));
        let [sc, mn] = k4_scales_mins(&x[4..16]);
        let q = values(x);
        // SAFETY: base NEON; `mn` has 8 bytes.
        let mins = unsafe { vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn.as_ptr()))) };
        for (s, ys) in sumf.iter_mut().zip(&acts) {
            let y = &ys[i];
            // SAFETY: `D` per this function's contract; the rest is base
            // NEON; `y.bsums` has 16 i16 (two 8-lane loads), `y.qs` 256
            // bytes (groups of 32 at `32 g`, g < 8).
            unsafe {
                let b = y.bsums.as_ptr();
                let q8sums = vpaddq_s16(vld1q_s16(b), vld1q_s16(b.add(8)));
                let prod = vmull_s16(vget_low_s16(q8sums), vget_low_s16(mins));
                let summs = vaddvq_s32(vmlal_high_s16(prod, q8sums, mins));
                let zero = vdupq_n_s32(0);
                let mut isum = zero;
                for (g, (qg, &scale)) in q.iter().zip(&sc).enumerate() {
                    let p = D::dot(zero, qg[0], load_i8(&y.qs, 32 * g));
                    let p = D::dot(p, qg[1], load_i8(&y.qs, 32 * g + 16));
                    isum = vmlaq_n_s32(isum, p, i32::from(scale));
                }
                *s -= y.d * xdmin * summs as f32;
                *s += y.d * xd * vaddvq_s32(isum) as f32;
            }
        }
    }
    sumf
}

/// Q4_K weights (144-byte blocks: f16 d, f16 dmin, 12 scale bytes, 128
/// nibble bytes at 16): group `2c` holds the low nibbles of bytes
/// `32c..32c+32`, group `2c+1` their high nibbles.
struct Q4K;

impl Kernel for Q4K {
    type Act = BlockQ8K;
    #[inline(always)]
    unsafe fn dot<D: IDot, const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
        let values = |x: &[u8]| {
            // SAFETY: base NEON only.
            unsafe {
                let m4 = vdupq_n_u8(0x0F);
                let mut q = [[vdupq_n_s8(0); 2]; 8];
                for c in 0..4 {
                    let b0 = load_u8(x, 16 + 32 * c);
                    let b1 = load_u8(x, 16 + 32 * c + 16);
                    q[2 * c] = [
                        vreinterpretq_s8_u8(vandq_u8(b0, m4)),
                        vreinterpretq_s8_u8(vandq_u8(b1, m4)),
                    ];
                    q[2 * c + 1] = [
                        vreinterpretq_s8_u8(vshrq_n_u8::<4>(b0)),
                        vreinterpretq_s8_u8(vshrq_n_u8::<4>(b1)),
                    ];
                }
                q
            }
        };
        // SAFETY: forwarded contract.
        unsafe { k4_min_kernel::<D, N>(row, acts, 144, values) }
    }
}

/// Q5_K weights (176-byte blocks: f16 d, f16 dmin, 12 scale bytes, `qh` 32
/// bytes at 16, 128 nibble bytes at 48): as Q4_K, plus 16 where bit `g` of
/// `qh[l]` is set, for value `l` of group `g`.
struct Q5K;

impl Kernel for Q5K {
    type Act = BlockQ8K;
    #[inline(always)]
    unsafe fn dot<D: IDot, const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
        let values = |x: &[u8]| {
            // SAFETY: base NEON only.
            unsafe {
                let m4 = vdupq_n_u8(0x0F);
                let m16 = vdupq_n_u8(0x10);
                let qh = [load_u8(x, 16), load_u8(x, 32)];
                let high = |g: u8, h: uint8x16_t| vandq_u8(vtstq_u8(h, vdupq_n_u8(1 << g)), m16);
                let mut q = [[vdupq_n_s8(0); 2]; 8];
                for c in 0..4 {
                    let b0 = load_u8(x, 48 + 32 * c);
                    let b1 = load_u8(x, 48 + 32 * c + 16);
                    let (g_lo, g_hi) = (2 * c as u8, 2 * c as u8 + 1);
                    q[2 * c] = [
                        vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b0, m4), high(g_lo, qh[0]))),
                        vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b1, m4), high(g_lo, qh[1]))),
                    ];
                    q[2 * c + 1] = [
                        vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(b0), high(g_hi, qh[0]))),
                        vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(b1), high(g_hi, qh[1]))),
                    ];
                }
                q
            }
        };
        // SAFETY: forwarded contract.
        unsafe { k4_min_kernel::<D, N>(row, acts, 176, values) }
    }
}

/// Q6_K weights (210-byte blocks: `ql` 128 bytes, `qh` 64 at 128, 16 int8
/// scales at 192, f16 d at 208), values `q − 32` with `q` in 0..64: each
/// half of 128 values takes the low then the high nibbles of its 64 `ql`
/// bytes, and two bits of each of its 32 `qh` bytes. Computed as
/// `d·(Σ_g s_g·Σ q·y − 32·Σ_g s_g·Σ y)` over the 16 groups of 16 values.
struct Q6K;

impl Kernel for Q6K {
    type Act = BlockQ8K;
    #[inline(always)]
    unsafe fn dot<D: IDot, const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
        let nb = n_blocks(row, 210, &acts);
        let mut sumf = [0f32; N];
        for (i, x) in row.chunks_exact(210).take(nb).enumerate() {
            let xd = fp16(le16(x, 208));
            let sc = &x[192..208];
            // SAFETY: base NEON only.
            let (q, s_lo, s_hi) = unsafe {
                let m3 = vdupq_n_u8(0x03);
                let m4 = vdupq_n_u8(0x0F);
                let m30 = vdupq_n_u8(0x30);
                let mut q = [vdupq_n_s8(0); 16];
                for h in 0..2 {
                    let ql = [
                        load_u8(x, 64 * h),
                        load_u8(x, 64 * h + 16),
                        load_u8(x, 64 * h + 32),
                        load_u8(x, 64 * h + 48),
                    ];
                    for j in 0..2 {
                        // Bits 0-1, 2-3, 4-5 and 6-7 of qh[j], moved to 4-5.
                        let qh = load_u8(x, 128 + 32 * h + 16 * j);
                        let b01 = vshlq_n_u8::<4>(vandq_u8(qh, m3));
                        let b23 = vandq_u8(vshlq_n_u8::<2>(qh), m30);
                        let b45 = vandq_u8(qh, m30);
                        let b67 = vandq_u8(vshrq_n_u8::<2>(qh), m30);
                        // Groups 8h+j and 8h+2+j (values 16j.. and 32+16j..
                        // of the half): low nibbles of ql[j], ql[j+2]; groups
                        // 8h+4+j and 8h+6+j: their high nibbles.
                        let (lo, hi) = (ql[j], ql[j + 2]);
                        let g = 8 * h + j;
                        q[g] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(lo, m4), b01));
                        q[g + 2] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(hi, m4), b23));
                        q[g + 4] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(lo), b45));
                        q[g + 6] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(hi), b67));
                    }
                }
                let scales = vreinterpretq_s8_u8(load_u8(x, 192));
                (q, vmovl_s8(vget_low_s8(scales)), vmovl_high_s8(scales))
            };
            for (s, ys) in sumf.iter_mut().zip(&acts) {
                let y = &ys[i];
                // SAFETY: `D` per this function's contract; the rest is
                // base NEON; `y.bsums` has 16 i16 (two 8-lane loads), `y.qs`
                // 256 bytes (groups of 16 at `16 g`, g < 16).
                unsafe {
                    let b = y.bsums.as_ptr();
                    let (b_lo, b_hi) = (vld1q_s16(b), vld1q_s16(b.add(8)));
                    let m = vmull_s16(vget_low_s16(b_lo), vget_low_s16(s_lo));
                    let m = vmlal_high_s16(m, b_lo, s_lo);
                    let m = vmlal_s16(m, vget_low_s16(b_hi), vget_low_s16(s_hi));
                    let m = vmlal_high_s16(m, b_hi, s_hi);
                    let isum_mins = vaddvq_s32(m);
                    let zero = vdupq_n_s32(0);
                    let (mut isum0, mut isum1) = (zero, zero);
                    for g in (0..16).step_by(2) {
                        let p0 = D::dot(zero, q[g], load_i8(&y.qs, 16 * g));
                        let p1 = D::dot(zero, q[g + 1], load_i8(&y.qs, 16 * g + 16));
                        isum0 = vmlaq_n_s32(isum0, p0, i32::from(sc[g] as i8));
                        isum1 = vmlaq_n_s32(isum1, p1, i32::from(sc[g + 1] as i8));
                    }
                    let isum = vaddvq_s32(vaddq_s32(isum0, isum1));
                    *s += xd * y.d * (isum - 32 * isum_mins) as f32;
                }
            }
        }
        sumf
    }
}

/// Q8_0 weights · Q8_0 activations, `N` tokens.
pub(super) fn dot_q8_0_q8_0<const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    run::<Q8_0, N>(row, acts, true)
}

/// Q5_0 weights · Q8_0 activations, `N` tokens.
pub(super) fn dot_q5_0_q8_0<const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    run::<Q5_0, N>(row, acts, true)
}

/// Q4_0 weights · Q8_0 activations, `N` tokens.
pub(super) fn dot_q4_0_q8_0<const N: usize>(row: &[u8], acts: [&[BlockQ8_0]; N]) -> [f32; N] {
    run::<Q4_0, N>(row, acts, true)
}

/// Q4_K weights · Q8_K activations, `N` tokens.
pub(super) fn dot_q4_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    run::<Q4K, N>(row, acts, true)
}

/// Q5_K weights · Q8_K activations, `N` tokens.
pub(super) fn dot_q5_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    run::<Q5K, N>(row, acts, true)
}

/// Q6_K weights · Q8_K activations, `N` tokens.
pub(super) fn dot_q6_k_q8_k<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    run::<Q6K, N>(row, acts, true)
}

#[cfg(test)]
mod tests {
    //! Each kernel, with `sdot` (where the CPU has it) and with the base-NEON
    //! integer dot, for one and four tokens, against the scalar reference
    //! (`dot_scalar`, core's `dot_block`) on random blocks.

    use super::*;
    use crate::kernels::row_check::{self, random_acts, random_row, Rng};
    use wasm_chord_core::quant::{
        f16_bits_to_f32, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ6K, GgmlBlock,
    };

    /// Kernel `K` (weights `B`, scales at `f16_at` in each block) with each
    /// integer dot through the shared random-block check
    /// (`row_check::check`); the `sdot` variant only where the CPU has it.
    fn check<K: Kernel, B: GgmlBlock<VecDotType = K::Act>>(f16_at: &[usize]) {
        for sdot in [false, true] {
            if sdot && !has_dotprod() {
                eprintln!(
                    "{:?}: sdot variant skipped, no dotprod on this CPU",
                    B::DTYPE
                );
                continue;
            }
            row_check::check::<B>(
                &format!("sdot={sdot}"),
                f16_at,
                |row, acts| run::<K, 1>(row, acts, sdot),
                |row, acts| run::<K, 4>(row, acts, sdot),
            );
        }
    }

    #[test]
    fn neon_q8_0_matches_reference() {
        check::<Q8_0, wasm_chord_core::quant::BlockQ8_0>(&[0]);
    }

    #[test]
    fn neon_q4_0_matches_reference() {
        check::<Q4_0, BlockQ4_0>(&[0]);
    }

    #[test]
    fn neon_q5_0_matches_reference() {
        check::<Q5_0, BlockQ5_0>(&[0]);
    }

    #[test]
    fn neon_q4_k_matches_reference() {
        check::<Q4K, BlockQ4K>(&[0, 2]);
    }

    #[test]
    fn neon_q5_k_matches_reference() {
        check::<Q5K, BlockQ5K>(&[0, 2]);
    }

    #[test]
    fn neon_q6_k_matches_reference() {
        check::<Q6K, BlockQ6K>(&[208]);
    }

    /// The entry points the row kernels call take `sdot` exactly where the
    /// CPU has it, and agree with the variant they pick.
    #[test]
    fn entry_points_pick_the_detected_variant() {
        let mut rng = Rng(42);
        let row = random_row::<BlockQ4K>(&mut rng, 4, &[0, 2]);
        let acts = random_acts::<BlockQ4K>(&mut rng, 4, 2.0);
        let [got] = dot_q4_k_q8_k::<1>(&row, [&acts]);
        let [want] = run::<Q4K, 1>(&row, [&acts], has_dotprod());
        assert_eq!(got.to_bits(), want.to_bits());
        let row = random_row::<BlockQ4_0>(&mut rng, 4, &[0]);
        let acts = random_acts::<BlockQ4_0>(&mut rng, 4, 2.0);
        let got = dot_q4_0_q8_0::<4>(&row, [&acts, &acts, &acts, &acts]);
        let [want] = run::<Q4_0, 1>(&row, [&acts], has_dotprod());
        assert_eq!(got.map(f32::to_bits), [want.to_bits(); 4]);
    }

    /// `fcvt` agrees with core's conversion on every f16 bit pattern.
    #[test]
    fn fp16_matches_core_on_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            let (got, want) = (fp16(bits), f16_bits_to_f32(bits));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{bits:#06x}: {got} vs {want}"
            );
        }
    }
}
