//! `wasmchord inspect` on the real default model and on a file we write.

use std::process::Command;

fn wasmchord() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasmchord"))
}

#[test]
fn inspect_default_model_lists_236_tensors_and_gemma3_metadata() {
    let Some(model) = wasm_chord_cli::models::default_model_for_test() else {
        return;
    };
    let out = wasmchord().arg("inspect").arg(&model).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tensors (236,"), "{text}");
    let arch = text
        .lines()
        .find(|l| l.trim_start().starts_with("general.architecture"))
        .expect("architecture line");
    assert!(arch.contains("\"gemma3\""), "{arch}");
    assert!(
        text.contains("gemma3.attention.sliding_window"),
        "gemma3 keys listed"
    );
    // Arrays are summarized, not dumped: 262144 tokens on one short line.
    let tokens = text
        .lines()
        .find(|l| l.trim_start().starts_with("tokenizer.ggml.tokens"))
        .expect("tokens line");
    assert!(tokens.contains("[262144 × STRING]"), "{tokens}");
    assert!(
        tokens.len() < 400,
        "array not summarized: {} chars",
        tokens.len()
    );
    // Rows of the tensor table: name, type, shape, bytes.
    let embd = text
        .lines()
        .find(|l| l.contains("token_embd.weight"))
        .expect("token_embd row");
    assert!(embd.contains("640 x 262144"), "{embd}");
    // Types the default model is known to use.
    for ty in [" f32 ", " q8_0 ", " q5_0 ", " q4_K ", " q6_K "] {
        assert!(text.contains(ty), "no {ty} tensor listed");
    }
}

#[test]
fn inspect_missing_file_is_a_clear_error() {
    let out = wasmchord()
        .args(["inspect", "/definitely/not/here.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not/here.gguf"), "{err}");
}

#[test]
fn inspect_rejects_a_non_gguf_file_without_panicking() {
    let dir = std::env::temp_dir().join(format!("wc-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("not.gguf");
    std::fs::write(&p, b"this is not a gguf file at all").unwrap();
    let out = wasmchord().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error exit, not a panic (101)"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("magic"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
