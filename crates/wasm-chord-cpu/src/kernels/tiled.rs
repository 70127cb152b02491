//! Register-tiled prompt matmuls: the weight types whose blocks are 32
//! values and one scale, dotted with Q8_0 activations (Q8_0, Q5_0, Q4_0),
//! and the K-quants Q4_K and Q6_K with Q8_K activations (see [`Q4K`] and
//! [`Q6K`] for theirs).
//!
//! The weight rows of a task are decoded once into [`WBlock`]s: the 32
//! values as unsigned bytes `value + offset` (Q5_0's raw 5-bit values,
//! Q4_0's raw nibbles, Q8_0's bytes `^ 0x80`) and the scale as f32. The
//! activations are laid out once per matmul as [`PairBlock`]s: block `i` of
//! two consecutive tokens side by side, with `-offset · Σ` of every group of
//! four activations and the scales, pre-broadcast. An unsigned × signed
//! integer dot of four (`vpdpbusd`) started from that correction is then
//! exactly the integer dot of the signed values, for the eight groups of
//! four of each block, as ggml's `mul_sum_i8_pairs_float` computes them.
//!
//! Each output keeps ggml's arithmetic and order (and that of the AVX2 row
//! kernels): eight f32 lanes, lane `k` adding `(d_w · d_x) · Σ_group k` of
//! every block with one fused multiply-add, blocks in order, then
//! `hsum_float_8`. Results are bit-identical to those kernels.

use wasm_chord_core::quant::{f16_bits_to_f32, BlockQ8K, BlockQ8_0, GgmlBlock};

/// Runs the AVX-512 kernel `$k` monomorphized for the tile's shape.
macro_rules! dispatch {
    ($k:ident, $w:expr, $rows:expr, $acts:expr, $pairs:expr, $nb:expr) => {{
        let (rows, pairs, nb) = ($rows, $pairs, $nb);
        assert!(available(), "tiled kernels need AVX-512 F/BW/VL/VNNI");
        assert!(rows <= TILE_ROWS && pairs <= TILE_PAIRS && rows > 0 && pairs > 0);
        let (w, acts) = (&$w[..rows * nb], &$acts[..pairs * nb]);
        #[allow(unused_mut)]
        let mut out = [[[0f32; 2]; TILE_PAIRS]; TILE_ROWS];
        #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
        {
            use super::avx512::$k as k;
            macro_rules! run {
                ($r:literal, $p:literal) => {{
                    // SAFETY: the CPU features were checked by `available`;
                    // the slices hold exactly `$r · nb` and `$p · nb` blocks.
                    let res = unsafe { k::<$r, $p>(w, acts, nb) };
                    for (o, r) in out.iter_mut().zip(res) {
                        o[..$p].copy_from_slice(&r);
                    }
                }};
            }
            match (rows, pairs) {
                (4, 2) => run!(4, 2),
                (4, 1) => run!(4, 1),
                (3, 2) => run!(3, 2),
                (3, 1) => run!(3, 1),
                (2, 2) => run!(2, 2),
                (2, 1) => run!(2, 1),
                (1, 2) => run!(1, 2),
                _ => run!(1, 1),
            }
        }
        #[cfg(not(all(target_arch = "x86_64", wasm_chord_avx512)))]
        let _ = (w, acts);
        out
    }};
}

/// One weight type's tiled matmul: how its rows are decoded, how the
/// activations are laid out in token pairs, and the register tile.
pub(crate) trait Tiling: Copy + Send + Sync {
    /// A decoded weight block.
    type W: Copy + Send + Sync;
    /// Block `i` of a pair of tokens.
    type A: Clone + Default + Send + Sync + 'static;
    /// The activation block type (the weight type's vec-dot partner).
    type Act: GgmlBlock + Default + Clone;
    /// Values per block.
    const BLOCK: usize;
    /// Bytes of one stored block.
    fn type_size(self) -> usize;
    /// Decodes one stored block (`x.len() >= type_size`).
    fn decode(self, x: &[u8]) -> Self::W;
    /// The activations of `n_tokens` tokens (`nb` blocks each, token-major)
    /// as pairs, pair-major, into `out` (its contents replaced): pair `p`'s
    /// block `i` at `p · nb + i`. An odd last token is paired with zeros.
    fn pairs_into(self, acts: &[Self::Act], n_tokens: usize, nb: usize, out: &mut Vec<Self::A>);
    /// [`Tiling::pairs_into`] a new vector.
    fn pairs(self, acts: &[Self::Act], n_tokens: usize, nb: usize) -> Vec<Self::A> {
        let mut out = Vec::new();
        self.pairs_into(acts, n_tokens, nb, &mut out);
        out
    }
    /// `rows` decoded rows (`w`, row-major, `nb` blocks each; at most
    /// [`TILE_ROWS`]) against `pairs` token pairs (`acts`; at most
    /// [`TILE_PAIRS`]): `out[r][p][h]` is row `r` · token `2p + h`.
    ///
    /// # Panics
    /// Where [`available`] is false, or the slices are shorter than stated.
    fn tile(
        self,
        w: &[Self::W],
        rows: usize,
        acts: &[Self::A],
        pairs: usize,
        nb: usize,
    ) -> [[[f32; 2]; TILE_PAIRS]; TILE_ROWS];
}

/// The weight types with 32-value blocks and one scale, with Q8_0
/// activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Q8_0 (34-byte blocks).
    Q8_0,
    /// Q5_0 (22-byte blocks).
    Q5_0,
    /// Q4_0 (18-byte blocks).
    Q4_0,
}

impl Kind {
    /// What the decoded unsigned values exceed the signed ones by.
    fn offset(self) -> i32 {
        match self {
            Kind::Q8_0 => 128,
            Kind::Q5_0 => 16,
            Kind::Q4_0 => 8,
        }
    }
}

/// One decoded weight block: values plus the type's offset, and the scale.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct WBlock {
    /// `value + offset`, in block order.
    pub q: [u8; 32],
    /// The block's scale.
    pub d: f32,
}

/// Block `i` of two tokens, laid out for 512-bit registers: the first token
/// in the low half, the second in the high half.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct PairBlock {
    /// The two tokens' 32 quants.
    pub qs: [i8; 64],
    /// `-offset · Σ` of each group of four quants.
    pub corr: [i32; 16],
    /// Each token's scale, eight copies.
    pub d: [f32; 16],
}

impl Default for PairBlock {
    fn default() -> Self {
        Self {
            qs: [0; 64],
            corr: [0; 16],
            d: [0.0; 16],
        }
    }
}

/// Runs `f(t, h, pair_block_slot, token's blocks)` for each token of each
/// pair: the shared walk of the `pairs` layouts.
fn for_pairs<Act: Sync, A: Clone + Send>(
    acts: &[Act],
    n_tokens: usize,
    nb: usize,
    out: &mut Vec<A>,
    empty: A,
    f: impl Fn(usize, &mut A, &Act) + Sync,
) {
    use rayon::prelude::*;
    let n_pairs = n_tokens.div_ceil(2);
    out.clear();
    out.resize(n_pairs * nb, empty);
    if nb == 0 {
        return;
    }
    let one_pair = |(p, pair): (usize, &mut [A])| {
        for h in 0..2 {
            let t = 2 * p + h;
            if t >= n_tokens {
                continue;
            }
            for (pb, a) in pair.iter_mut().zip(&acts[t * nb..(t + 1) * nb]) {
                f(h, pb, a);
            }
        }
    };
    // A prompt's pairs on every thread; a decode step's one pair here.
    if n_pairs < 8 {
        out.chunks_exact_mut(nb).enumerate().for_each(one_pair);
    } else {
        out.par_chunks_exact_mut(nb)
            .enumerate()
            .with_min_len(4)
            .for_each(one_pair);
    }
}

impl Tiling for Kind {
    type W = WBlock;
    type A = PairBlock;
    type Act = BlockQ8_0;
    const BLOCK: usize = 32;

    fn type_size(self) -> usize {
        match self {
            Kind::Q8_0 => 34,
            Kind::Q5_0 => 22,
            Kind::Q4_0 => 18,
        }
    }

    fn decode(self, x: &[u8]) -> WBlock {
        let d = f16_bits_to_f32(u16::from_le_bytes([x[0], x[1]]));
        let mut q = [0u8; 32];
        match self {
            Kind::Q8_0 => {
                for (v, &b) in q.iter_mut().zip(&x[2..34]) {
                    *v = b ^ 0x80;
                }
            }
            Kind::Q5_0 => {
                let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                for (j, &b) in x[6..22].iter().enumerate() {
                    q[j] = (b & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                    q[j + 16] = (b >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                }
            }
            Kind::Q4_0 => {
                for (j, &b) in x[2..18].iter().enumerate() {
                    q[j] = b & 0x0F;
                    q[j + 16] = b >> 4;
                }
            }
        }
        WBlock { q, d }
    }

    fn pairs_into(self, acts: &[BlockQ8_0], n_tokens: usize, nb: usize, out: &mut Vec<PairBlock>) {
        let off = self.offset();
        for_pairs(acts, n_tokens, nb, out, PairBlock::default(), |h, pb, a| {
            pb.qs[32 * h..32 * h + 32].copy_from_slice(&a.qs);
            for (k, c) in pb.corr[8 * h..8 * h + 8].iter_mut().enumerate() {
                let s: i32 = a.qs[4 * k..4 * k + 4].iter().map(|&v| i32::from(v)).sum();
                *c = -off * s;
            }
            pb.d[8 * h..8 * h + 8].fill(f16_bits_to_f32(a.d));
        })
    }

    fn tile(
        self,
        w: &[WBlock],
        rows: usize,
        acts: &[PairBlock],
        pairs: usize,
        nb: usize,
    ) -> [[[f32; 2]; TILE_PAIRS]; TILE_ROWS] {
        dispatch!(q8_0_partner_tile, w, rows, acts, pairs, nb)
    }
}

/// Block `i` of two tokens' Q8_K activations for 512-bit registers.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct PairBlockK {
    /// Chunk `c` of 32 quants of both tokens at `64 c`: the first token's,
    /// then the second's.
    pub qs: [i8; 512],
    /// Both tokens' 16 sums of 16 quants.
    pub bsums: [i16; 32],
    /// Each token's scale, eight copies.
    pub d: [f32; 16],
    /// Both tokens' 8 sums of 32 quants (Q4_K's mins).
    pub sums32: [i16; 16],
    /// Each token's negated scale, four copies (Q4_K's mins).
    pub neg_d: [f32; 8],
}

impl Default for PairBlockK {
    fn default() -> Self {
        Self {
            qs: [0; 512],
            bsums: [0; 32],
            d: [0.0; 16],
            sums32: [0; 16],
            neg_d: [0.0; 8],
        }
    }
}

/// [`Tiling::pairs`] of the K-quants.
fn pairs_k(acts: &[BlockQ8K], n_tokens: usize, nb: usize, out: &mut Vec<PairBlockK>) {
    for_pairs(
        acts,
        n_tokens,
        nb,
        out,
        PairBlockK::default(),
        |h, pb, a| {
            for c in 0..8 {
                pb.qs[64 * c + 32 * h..64 * c + 32 * h + 32]
                    .copy_from_slice(&a.qs[32 * c..32 * c + 32]);
            }
            pb.bsums[16 * h..16 * h + 16].copy_from_slice(&a.bsums);
            pb.d[8 * h..8 * h + 8].fill(a.d);
            for c in 0..8 {
                pb.sums32[8 * h + c] = a.bsums[2 * c].wrapping_add(a.bsums[2 * c + 1]);
            }
            pb.neg_d[4 * h..4 * h + 4].fill(-a.d);
        },
    )
}

/// Q6_K weights (210-byte blocks) with Q8_K activations, in the order of
/// the AVX2 kernel (ggml's): per block, eight int32 lanes; lane `k` adds,
/// over the eight chunks of 32 values, the chunk's 16-value scale times its
/// `k`-th group of four (values 0-63, not yet less 32), less
/// `32 · (bsum_2k · scale_2k + bsum_2k+1 · scale_2k+1)`; then
/// `acc = fma(d_x · d_w, lane, acc)` and `hsum_float_8` at the end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Q6K;

/// A decoded Q6_K block.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub(crate) struct WBlockQ6K {
    /// The 6-bit values (0-63) in order.
    pub q: [u8; 256],
    /// Per chunk of 32 values: its two 16-value scales, eight copies each.
    pub sc: [[i16; 16]; 8],
    /// `-32 ·` each of the 16 scales.
    pub neg32_sc: [i16; 16],
    /// The super-block scale.
    pub d: f32,
}

impl Tiling for Q6K {
    type W = WBlockQ6K;
    type A = PairBlockK;
    type Act = BlockQ8K;
    const BLOCK: usize = 256;

    fn type_size(self) -> usize {
        210
    }

    fn decode(self, x: &[u8]) -> WBlockQ6K {
        let (ql, qh, scales) = (&x[0..128], &x[128..192], &x[192..208]);
        let mut q = [0u8; 256];
        for j in 0..2 {
            for l in 0..32 {
                let h = qh[32 * j + l];
                let (a, b) = (ql[64 * j + l], ql[64 * j + l + 32]);
                q[128 * j + l] = (a & 0xF) | ((h & 3) << 4);
                q[128 * j + l + 32] = (b & 0xF) | (((h >> 2) & 3) << 4);
                q[128 * j + l + 64] = (a >> 4) | (((h >> 4) & 3) << 4);
                q[128 * j + l + 96] = (b >> 4) | (((h >> 6) & 3) << 4);
            }
        }
        let mut sc = [[0i16; 16]; 8];
        for (c, s) in sc.iter_mut().enumerate() {
            s[..8].fill(i16::from(scales[2 * c] as i8));
            s[8..].fill(i16::from(scales[2 * c + 1] as i8));
        }
        let mut neg32_sc = [0i16; 16];
        for (n, &s) in neg32_sc.iter_mut().zip(scales) {
            *n = -32 * i16::from(s as i8);
        }
        let d = f16_bits_to_f32(u16::from_le_bytes([x[208], x[209]]));
        WBlockQ6K { q, sc, neg32_sc, d }
    }

    fn pairs_into(self, acts: &[BlockQ8K], n_tokens: usize, nb: usize, out: &mut Vec<PairBlockK>) {
        pairs_k(acts, n_tokens, nb, out)
    }

    fn tile(
        self,
        w: &[WBlockQ6K],
        rows: usize,
        acts: &[PairBlockK],
        pairs: usize,
        nb: usize,
    ) -> [[[f32; 2]; TILE_PAIRS]; TILE_ROWS] {
        dispatch!(q6_k_tile, w, rows, acts, pairs, nb)
    }
}

/// Q4_K weights (144-byte blocks) with Q8_K activations, in the order of
/// the AVX2 kernel (ggml's): per block, eight int32 lanes, lane `k` adding
/// each chunk of 32 values' scale times its `k`-th group of four, then
/// `acc = fma(d_x · d_w, lane, acc)`; apart, four lanes `l` adding
/// `min_2l · Σ_2l + min_2l+1 · Σ_2l+1` (sums of 32 activations) times
/// `-d_x · dmin_w` by fma; at the end `hsum_float_8(acc)` plus the four
/// lanes summed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Q4K;

/// A decoded Q4_K block.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub(crate) struct WBlockQ4K {
    /// The 4-bit values in order.
    pub q: [u8; 256],
    /// Each chunk's scale, twice (two int16 in one int32).
    pub sc: [u32; 8],
    /// The eight mins, twice.
    pub mins: [i16; 16],
    /// The super-block scale.
    pub d: f32,
    /// The super-block scale of the mins.
    pub dmin: f32,
}

impl Tiling for Q4K {
    type W = WBlockQ4K;
    type A = PairBlockK;
    type Act = BlockQ8K;
    const BLOCK: usize = 256;

    fn type_size(self) -> usize {
        144
    }

    fn decode(self, x: &[u8]) -> WBlockQ4K {
        let s = &x[4..16];
        let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
        for j in 0..8 {
            if j < 4 {
                sc[j] = s[j] & 63;
                mn[j] = s[j + 4] & 63;
            } else {
                sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
                mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            }
        }
        let mut q = [0u8; 256];
        for j in 0..4 {
            for l in 0..32 {
                let b = x[16 + 32 * j + l];
                q[64 * j + l] = b & 0xF;
                q[64 * j + 32 + l] = b >> 4;
            }
        }
        let mut mins = [0i16; 16];
        for (m, &v) in mins.iter_mut().zip(mn.iter().chain(&mn)) {
            *m = i16::from(v);
        }
        WBlockQ4K {
            q,
            sc: sc.map(|v| u32::from(v) * 0x0001_0001),
            mins,
            d: f16_bits_to_f32(u16::from_le_bytes([x[0], x[1]])),
            dmin: f16_bits_to_f32(u16::from_le_bytes([x[2], x[3]])),
        }
    }

    fn pairs_into(self, acts: &[BlockQ8K], n_tokens: usize, nb: usize, out: &mut Vec<PairBlockK>) {
        pairs_k(acts, n_tokens, nb, out)
    }

    fn tile(
        self,
        w: &[WBlockQ4K],
        rows: usize,
        acts: &[PairBlockK],
        pairs: usize,
        nb: usize,
    ) -> [[[f32; 2]; TILE_PAIRS]; TILE_ROWS] {
        dispatch!(q4_k_tile, w, rows, acts, pairs, nb)
    }
}

/// Whether the CPU has the AVX-512 subsets the tiled kernels use (F, BW,
/// VL, VNNI), and this build has the kernels (detected once).
pub(crate) fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            super::has_avx2()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(all(target_arch = "x86_64", wasm_chord_avx512)))]
    {
        false
    }
}

/// All 65536 f16 values as f32 (built once, 256 KiB).
fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(f16_bits_to_f32).collect())
}

/// One stored weight row of `kind` · one token's activations, laid out by
/// [`Tiling::pairs`] for a single token (the first of each pair): for
/// generation, bit-identical to the AVX2 row kernels.
///
/// # Panics
/// Where [`available`] is false.
pub(crate) fn row_dot(kind: Kind, row: &[u8], acts: &[PairBlock]) -> f32 {
    assert!(available(), "tiled kernels need AVX-512 F/BW/VL/VNNI");
    #[cfg(all(target_arch = "x86_64", wasm_chord_avx512))]
    {
        use super::avx512::q8_0_partner_row as k;
        let (ts, t) = (kind.type_size(), f16_table());
        // SAFETY: the CPU features were checked by `available`; the table
        // has 65536 entries.
        unsafe {
            match kind {
                Kind::Q8_0 => k::<0>(row, ts, acts, t),
                Kind::Q5_0 => k::<1>(row, ts, acts, t),
                Kind::Q4_0 => k::<2>(row, ts, acts, t),
            }
        }
    }
    #[cfg(not(all(target_arch = "x86_64", wasm_chord_avx512)))]
    {
        let _ = (kind, row, acts, f16_table);
        0.0
    }
}

/// Rows per register tile.
pub(crate) const TILE_ROWS: usize = 4;
/// Token pairs per register tile.
pub(crate) const TILE_PAIRS: usize = 2;
