//! Scalar `vec_dot` of every weight type with its activation type equals the
//! f64 dot product of the dequantized blocks, on random data.

use wasm_chord_core::quant::{
    f16_bits_to_f32, f32_to_f16_bits, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K,
    BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
    GgmlBlock,
};

const N: usize = 1024;

/// xorshift64* with Box-Muller normals: small, seeded, dependency-free.
struct Rng(u64);
impl Rng {
    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.normal() * scale + 0.1 * scale)
            .collect()
    }
}

fn dequant<B: GgmlBlock>(blocks: &[B]) -> Vec<f32> {
    let mut y = vec![0f32; blocks.len() * B::BLCK_SIZE];
    B::to_float(blocks, &mut y).unwrap();
    y
}

/// Checks `vec_dot(w, a)` against the exact dot of the dequantized blocks.
fn check<B: GgmlBlock>(w: &[B], rng: &mut Rng) {
    let a_f32 = rng.values(N, 0.7);
    let mut a = vec![B::VecDotType::default(); N / B::VecDotType::BLCK_SIZE];
    B::VecDotType::from_float(&a_f32, &mut a).unwrap();
    let (wd, ad) = (dequant(w), dequant(&a));
    let exact: f64 = wd.iter().zip(&ad).map(|(&x, &y)| x as f64 * y as f64).sum();
    let mag: f64 = wd
        .iter()
        .zip(&ad)
        .map(|(&x, &y)| (x as f64 * y as f64).abs())
        .sum();
    assert!(mag > 1.0, "{:?}: degenerate data", B::DTYPE);
    let got = B::vec_dot(N, w, &a).unwrap() as f64;
    let tol = 2e-6 * mag + q8_1_sum_rounding(w, &a);
    assert!(
        (got - exact).abs() <= tol,
        "{:?}: vec_dot {got} vs exact {exact} (sum |w*a| {mag})",
        B::DTYPE
    );
}

/// The Q4_1/Q5_1 kernels use the activation's `s = d * sum(q)` stored as f16
/// (relative rounding up to 2^-11) times the weight's min: llama.cpp's result
/// carries that rounding, so it is allowed on top of the float-sum tolerance.
/// Both weight types keep `m` at bytes 2..4, Q8_1 keeps `s` there.
fn q8_1_sum_rounding<B: GgmlBlock>(w: &[B], a: &[B::VecDotType]) -> f64 {
    if <B::VecDotType as GgmlBlock>::DTYPE != wasm_chord_core::GgmlType::Q8_1 {
        return 0.0;
    }
    let field = |bytes: &[u8]| f16_bits_to_f32(u16::from_le_bytes([bytes[2], bytes[3]])) as f64;
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let (mut wb, mut ab) = (vec![0u8; B::TYPE_SIZE], vec![0u8; 36]);
            w.write(&mut wb);
            a.write(&mut ab);
            (field(&wb) * field(&ab)).abs() * 2f64.powi(-10)
        })
        .sum()
}

fn quantized<B: GgmlBlock>(rng: &mut Rng) -> Vec<B> {
    let x = rng.values(N, 1.3);
    let mut w = vec![B::default(); N / B::BLCK_SIZE];
    B::from_float(&x, &mut w).unwrap();
    w
}

/// Random bytes with a finite f16 scale at offset 0 (IQ types cannot be quantized).
fn random_blocks<B: GgmlBlock>(rng: &mut Rng) -> Vec<B> {
    (0..N / B::BLCK_SIZE)
        .map(|_| {
            let mut bytes: Vec<u8> = (0..B::TYPE_SIZE).map(|_| rng.u64() as u8).collect();
            let d = f32_to_f16_bits((rng.uniform() as f32 + 0.05) * 0.02);
            bytes[..2].copy_from_slice(&d.to_le_bytes());
            B::read(&bytes)
        })
        .collect()
}

#[test]
fn vec_dot_matches_f64_dot_of_dequantized_values() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4 {
        check(&quantized::<f32>(&mut rng), &mut rng);
        check(&quantized::<half::f16>(&mut rng), &mut rng);
        check(&quantized::<half::bf16>(&mut rng), &mut rng);
        check(&quantized::<BlockQ4_0>(&mut rng), &mut rng);
        check(&quantized::<BlockQ4_1>(&mut rng), &mut rng);
        check(&quantized::<BlockQ5_0>(&mut rng), &mut rng);
        check(&quantized::<BlockQ5_1>(&mut rng), &mut rng);
        check(&quantized::<BlockQ8_0>(&mut rng), &mut rng);
        check(&quantized::<BlockQ8_1>(&mut rng), &mut rng);
        check(&quantized::<BlockQ2K>(&mut rng), &mut rng);
        check(&quantized::<BlockQ3K>(&mut rng), &mut rng);
        check(&quantized::<BlockQ4K>(&mut rng), &mut rng);
        check(&quantized::<BlockQ5K>(&mut rng), &mut rng);
        check(&quantized::<BlockQ6K>(&mut rng), &mut rng);
        check(&quantized::<BlockQ8K>(&mut rng), &mut rng);
        check(&random_blocks::<BlockIQ4NL>(&mut rng), &mut rng);
        check(&random_blocks::<BlockIQ4XS>(&mut rng), &mut rng);
    }
}

#[test]
fn vec_dot_pairs_follow_llama_cpp() {
    use wasm_chord_core::GgmlType as T;
    fn pair<B: GgmlBlock>() -> (T, T) {
        (B::DTYPE, <B::VecDotType as GgmlBlock>::DTYPE)
    }
    assert_eq!(pair::<BlockQ4_0>(), (T::Q4_0, T::Q8_0));
    assert_eq!(pair::<BlockQ4_1>(), (T::Q4_1, T::Q8_1));
    assert_eq!(pair::<BlockQ5_0>(), (T::Q5_0, T::Q8_0));
    assert_eq!(pair::<BlockQ5_1>(), (T::Q5_1, T::Q8_1));
    assert_eq!(pair::<BlockQ8_0>(), (T::Q8_0, T::Q8_0));
    for p in [
        pair::<BlockQ2K>(),
        pair::<BlockQ3K>(),
        pair::<BlockQ4K>(),
        pair::<BlockQ5K>(),
    ] {
        assert_eq!(p.1, T::Q8_K);
    }
    assert_eq!(pair::<BlockQ6K>(), (T::Q6_K, T::Q8_K));
    assert_eq!(pair::<BlockIQ4NL>(), (T::IQ4_NL, T::Q8_0));
    assert_eq!(pair::<BlockIQ4XS>(), (T::IQ4_XS, T::Q8_K));
}
