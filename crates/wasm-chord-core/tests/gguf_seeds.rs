//! The fuzzer's seed files (`fuzz/seeds/*.gguf`) are made by this writer code:
//! the test rebuilds them and checks the committed bytes match and parse.
//! Regenerate after a deliberate format change with
//! `WASM_CHORD_BLESS_SEEDS=1 cargo test -p wasm-chord-core --test gguf_seeds`.

use std::path::PathBuf;

use wasm_chord_core::gguf::{Array, GgufFile, GgufWriter, Value};
use wasm_chord_core::GgmlType;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

/// A v3 model-like file: a few scalars, alignment 16, three tensor types.
fn model_v3() -> Vec<u8> {
    let mut w = GgufWriter::new();
    let m = w.metadata_mut();
    m.insert("general.architecture", Value::String("llama".into()));
    m.insert("llama.context_length", Value::U32(128));
    m.insert("llama.rope.freq_base", Value::F32(10000.0));
    m.insert("general.alignment", Value::U32(16));
    m.insert("t.flags", Value::Array(Array::Bool(vec![true, false])));
    m.insert("t.i64", Value::I64(-7));
    // A linear congruential generator: fixed bytes that are not all alike.
    let mut s = 1u32;
    let mut rnd = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect()
    };
    w.add_tensor("token_embd.weight", &[32, 2], GgmlType::Q8_0, rnd(68))
        .unwrap();
    w.add_tensor("output_norm.weight", &[4], GgmlType::F32, rnd(16))
        .unwrap();
    w.add_tensor("blk.0.attn_k.weight", &[256], GgmlType::Q4_K, rnd(144))
        .unwrap();
    w.to_bytes().unwrap()
}

/// A v2 vocab-only file: string, float and int arrays, a nested array.
fn vocab_v2() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set_version(2).unwrap();
    let m = w.metadata_mut();
    m.insert("general.architecture", Value::String("gpt2".into()));
    m.insert("tokenizer.ggml.model", Value::String("gpt2".into()));
    let tokens = ["<s>", "Ġthe", "é", "<0x0A>"].map(String::from).to_vec();
    m.insert("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    m.insert(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0, -1.0, -2.5, -3.0])),
    );
    m.insert(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![3, 1, 1, 6])),
    );
    let merges = vec!["Ġ t".to_owned(), "h e".to_owned()];
    m.insert("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
    let nested = Array::Array(vec![
        Array::U16(vec![1, 2]),
        Array::Array(vec![Array::F64(vec![0.5])]),
    ]);
    m.insert("t.nested", Value::Array(nested));
    m.insert("t.u64", Value::U64(1 << 40));
    m.insert("t.u8", Value::U8(200));
    m.insert("t.i8", Value::I8(-3));
    m.insert("t.i16", Value::I16(-300));
    w.to_bytes().unwrap()
}

#[test]
fn committed_seeds_match_the_writer_and_parse() {
    let bless = std::env::var_os("WASM_CHORD_BLESS_SEEDS").is_some();
    for (name, bytes) in [("model-v3.gguf", model_v3()), ("vocab-v2.gguf", vocab_v2())] {
        let path = seeds_dir().join(name);
        if bless {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap();
        assert_eq!(committed, bytes, "{name} differs from the writer's output");
        let f = GgufFile::from_bytes(committed).unwrap();
        assert!(f.metadata().len() >= 6, "{name}");
    }
}
