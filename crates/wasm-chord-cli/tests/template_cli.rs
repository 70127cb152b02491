//! `wasmchord template` end to end: built-in and file templates, JSON from
//! arguments, files and stdin, and typed failures as exit code 1.

use std::io::Write;
use std::process::{Command, Stdio};

fn wasmchord(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmchord"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn builtin_template_renders() {
    let (ok, out, _) = wasmchord(
        &[
            "template",
            "--template",
            "llama3",
            "--add-generation-prompt",
            "--messages",
            r#"[{"role":"user","content":"Hi there"}]"#,
        ],
        None,
    );
    assert!(ok);
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn template_file_with_tools_from_stdin_and_file() {
    let dir = std::env::temp_dir().join(format!("wasmchord-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tmpl = dir.join("t.jinja");
    std::fs::write(
        &tmpl,
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}{% if add_generation_prompt %}>{% endif %}",
    )
    .unwrap();
    let tools = dir.join("tools.json");
    std::fs::write(&tools, r#"[{"name": "f", "description": "é"}]"#).unwrap();
    let tools_arg = format!("@{}", tools.display());
    let (ok, out, err) = wasmchord(
        &[
            "template",
            "--template-file",
            tmpl.to_str().unwrap(),
            "--bos",
            "<s>",
            "--messages",
            "-",
            "--tools",
            &tools_arg,
        ],
        Some(r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]"#),
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "<s>[user] a\n[assistant] b\n[{\"name\": \"f\", \"description\": \"é\"}]"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn failures_are_reported() {
    let (ok, _, err) = wasmchord(
        &[
            "template",
            "--template",
            "gemma",
            "--messages",
            r#"[{"role":"user","content":"a"},{"role":"user","content":"b"}]"#,
        ],
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("template raised: Conversation roles must alternate"),
        "{err}"
    );
    let (ok, _, err) = wasmchord(
        &["template", "--template", "nope", "--messages", "[]"],
        None,
    );
    assert!(!ok);
    assert!(err.contains("unknown built-in template"), "{err}");
    let (ok, _, err) = wasmchord(
        &[
            "template",
            "--template",
            "chatml",
            "--messages",
            r#"[{"content":"x"}]"#,
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("message 0 is invalid"), "{err}");
}
