//! IQ4_NL and IQ4_XS blocks for random-weight models.
//!
//! Core has no IQ4 quantizer (llama.cpp's searches scales, optionally with an
//! importance matrix, and core only carries quantizers it reproduces byte
//! for byte). The generator needs valid blocks whose values follow the
//! requested distribution, not llama.cpp's exact bytes: llama.cpp is run on
//! the very file we write. So these encoders take the plain route: a scale
//! from the block's largest magnitude and, per value, the nearest entry of
//! the non-linear table.

use wasm_chord_core::quant::{
    f16_bits_to_f32, f32_to_f16_bits, BlockIQ4NL, BlockIQ4XS, GgmlBlock, KVALUES_IQ4NL,
};
use wasm_chord_core::GgmlType;

/// Index of the table entry nearest to `v`.
fn nearest(v: f32) -> u8 {
    let mut best = 0u8;
    let mut err = f32::INFINITY;
    for (i, &k) in KVALUES_IQ4NL.iter().enumerate() {
        let e = (f32::from(k) - v).abs();
        if e < err {
            err = e;
            best = i as u8;
        }
    }
    best
}

/// Packs 32 indices as IQ4 stores them: low nibbles values 0..16, high
/// nibbles 16..32.
fn pack(idx: &[u8; 32], out: &mut [u8]) {
    for j in 0..16 {
        out[j] = idx[j] | (idx[j + 16] << 4);
    }
}

/// Indices of 32 values at scale `d`.
fn indices(xs: &[f32], d: f32) -> [u8; 32] {
    let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut idx = [0u8; 32];
    for (i, &x) in idx.iter_mut().zip(xs) {
        *i = nearest(x * inv);
    }
    idx
}

/// Encodes `src` (whole blocks) into `dst` as IQ4_NL or IQ4_XS; `None` for
/// other types.
pub(crate) fn encode(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Option<()> {
    match ty {
        GgmlType::IQ4_NL => {
            for (xs, out) in src
                .chunks_exact(32)
                .zip(dst.chunks_exact_mut(BlockIQ4NL::TYPE_SIZE))
            {
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = f16_bits_to_f32(f32_to_f16_bits(amax / 127.0));
                let mut b = BlockIQ4NL {
                    d: f32_to_f16_bits(d),
                    ..Default::default()
                };
                pack(&indices(xs, d), &mut b.qs);
                b.write(out);
            }
            Some(())
        }
        GgmlType::IQ4_XS => {
            for (xs, out) in src
                .chunks_exact(256)
                .zip(dst.chunks_exact_mut(BlockIQ4XS::TYPE_SIZE))
            {
                // Per 32-value sub-block the scale it wants; the super-block
                // scale makes the largest of them 31 steps (6-bit scales
                // hold -32..=31).
                let want: Vec<f32> = xs
                    .chunks_exact(32)
                    .map(|s| s.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0)
                    .collect();
                let top = want.iter().fold(0f32, |m, &v| m.max(v));
                let d = f16_bits_to_f32(f32_to_f16_bits(top / 31.0));
                let mut b = BlockIQ4XS {
                    d: f32_to_f16_bits(d),
                    ..Default::default()
                };
                for (ib, (sub, &w)) in xs.chunks_exact(32).zip(&want).enumerate() {
                    let l = if d > 0.0 {
                        (w / d).round().clamp(1.0, 31.0)
                    } else {
                        1.0
                    };
                    let ls = l as u16 + 32;
                    b.scales_l[ib / 2] |= ((ls & 0xF) as u8) << (4 * (ib % 2));
                    b.scales_h |= ((ls >> 4) & 3) << (2 * ib);
                    pack(&indices(sub, d * l), &mut b.qs[16 * ib..16 * ib + 16]);
                }
                b.write(out);
            }
            Some(())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_blocks_decode_close_to_the_input() {
        let mut rng = crate::synth::Rng::new(7, "iq4");
        let mut x = vec![0f32; 1024];
        rng.fill_normal(&mut x, 0.0, 0.05);
        for ty in [GgmlType::IQ4_NL, GgmlType::IQ4_XS] {
            let bytes = ty.row_bytes(x.len() as u64).unwrap() as usize;
            let mut enc = vec![0u8; bytes];
            encode(ty, &x, &mut enc).unwrap();
            let mut back = vec![0f32; x.len()];
            wasm_chord_core::quant::dequantize(ty, &enc, &mut back).unwrap();
            let (mut err, mut norm) = (0f64, 0f64);
            for (a, b) in x.iter().zip(&back) {
                err += f64::from(a - b).powi(2);
                norm += f64::from(*a).powi(2);
            }
            let rel = (err / norm).sqrt();
            // A 4-bit non-linear code on Gaussian data: ~10 % RMS error.
            assert!(rel < 0.2, "{ty:?}: relative RMS error {rel}");
        }
    }
}
