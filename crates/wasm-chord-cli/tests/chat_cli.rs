//! `wasmchord chat` driven through stdin on the default model.

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn chat_runs_turns_from_stdin_with_the_fallback_template() {
    if wasm_chord_cli::models::default_model_for_test().is_none() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmchord"))
        .args(["chat", "--greedy", "-n", "6", "--ctx", "512"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Name a colour.\n/reset\nName a fruit.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The default model ships no template: the gemma built-in is used.
    assert!(stderr.contains("built-in"), "{stderr}");
    assert!(stderr.contains("conversation cleared"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replies = stdout.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(replies >= 2, "{stdout:?}");
}
