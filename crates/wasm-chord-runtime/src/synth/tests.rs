use super::*;
use crate::{Logits, Model, Session, SessionConfig};
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_cpu::CpuBackend;

fn load(spec: &SynthSpec) -> Arc<GgufFile> {
    Arc::new(GgufFile::from_bytes(generate(spec).unwrap()).unwrap())
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = generate(&SynthSpec::new(Some("llama"), "tiny", "q4_k", 3).unwrap()).unwrap();
    let b = generate(&SynthSpec::new(Some("llama"), "tiny", "q4_k", 3).unwrap()).unwrap();
    let c = generate(&SynthSpec::new(Some("llama"), "tiny", "q4_k", 4).unwrap()).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), c.len());
}

#[test]
fn every_tiny_architecture_loads_and_gives_sane_logits() {
    for arch in SUPPORTED {
        let spec = SynthSpec::new(Some(arch), "tiny", "q8_0", 1).unwrap();
        let file = load(&spec);
        let model = Model::load(file, Arc::new(CpuBackend::new())).unwrap();
        assert_eq!(model.config.arch.name(), *arch);
        let mut s = Session::new(
            &model,
            SessionConfig {
                n_ctx: 16,
                n_batch: 16,
            },
        )
        .unwrap();
        let logits = s.forward(&[1, 300, 7, 42, 260, 511], Logits::All).unwrap();
        let n = logits.len() as f64;
        let mean = logits.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = logits
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(logits.iter().all(|x| x.is_finite()), "{arch}");
        // Neither degenerate nor exploding.
        assert!(
            var.sqrt() > 0.1 && var.sqrt() < 30.0,
            "{arch}: std {}",
            var.sqrt()
        );
    }
}

#[test]
fn every_mix_loads_with_the_types_it_names() {
    for name in MIX_NAMES {
        let spec = SynthSpec::new(Some("llama"), "tiny", name, 2).unwrap();
        let file = load(&spec);
        let q = file.tensor("blk.0.attn_q.weight").unwrap().ggml_type;
        match spec.mix {
            Mix::Pure(t) => assert_eq!(q, t, "{name}"),
            Mix::Q4KM => {
                assert_eq!(q, GgmlType::Q4_K);
                // Layer 1 of 2 gets more bits; the output is Q6_K.
                assert_eq!(
                    file.tensor("blk.1.attn_v.weight").unwrap().ggml_type,
                    GgmlType::Q6_K
                );
                assert_eq!(
                    file.tensor("blk.0.attn_v.weight").unwrap().ggml_type,
                    GgmlType::Q4_K
                );
                assert_eq!(
                    file.tensor("output.weight").unwrap().ggml_type,
                    GgmlType::Q6_K
                );
            }
        }
        assert_eq!(
            file.tensor("blk.0.attn_norm.weight").unwrap().ggml_type,
            GgmlType::F32
        );
        Model::load(file, Arc::new(CpuBackend::new())).unwrap();
    }
}

#[test]
fn weights_have_the_planned_scale() {
    let spec = SynthSpec::new(Some("gemma3"), "tiny", "f32", 5).unwrap();
    let file = load(&spec);
    let get = |name: &str| -> Vec<f32> {
        let info = file.tensor(name).unwrap();
        let bytes = file.tensor_data(info);
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let stats = |v: &[f32]| {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let sd = (v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n).sqrt();
        (m, sd)
    };
    let (m, sd) = stats(&get("blk.0.ffn_down.weight"));
    assert!(
        m.abs() < 0.01 && (sd - 1.0 / 512f64.sqrt()).abs() < 0.005,
        "{m} {sd}"
    );
    let (m, sd) = stats(&get("blk.1.attn_norm.weight"));
    assert!(
        (m - 1.0).abs() < 0.03 && (sd - 0.1).abs() < 0.03,
        "{m} {sd}"
    );
}

#[test]
fn vocabulary_is_copied_and_sets_the_vocab_size() {
    let donor = SynthSpec::new(Some("gemma"), "tiny", "f16", 0).unwrap();
    let mut donor_md = vocab::self_made(300).unwrap();
    donor_md.insert("general.architecture", Value::String("x".into()));
    let spec = donor.with_vocab(&donor_md).unwrap();
    let file = load(&spec);
    assert_eq!(file.tensor("token_embd.weight").unwrap().dims, [256, 300]);
    assert!(file.metadata().get("tokenizer.ggml.scores").is_some());
    assert_eq!(
        file.metadata().get_str("general.architecture").unwrap(),
        "gemma"
    );
}

#[test]
fn bad_names_are_reported() {
    assert!(matches!(
        SynthSpec::new(Some("mamba"), "tiny", "f16", 0),
        Err(SynthError::UnknownArch(_))
    ));
    assert!(matches!(
        SynthSpec::new(None, "tiny", "f16", 0),
        Err(SynthError::UnknownPreset { .. })
    ));
    assert!(matches!(
        SynthSpec::new(Some("gemma"), "llama-1b", "f16", 0),
        Err(SynthError::UnknownPreset { .. })
    ));
    assert!(matches!(
        SynthSpec::new(Some("llama"), "tiny", "q9", 0),
        Err(SynthError::UnknownMix(_))
    ));
}
