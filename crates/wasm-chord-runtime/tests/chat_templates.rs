//! Real chat templates (from llama.cpp's `models/templates`, originally from
//! the models' Hugging Face repositories) rendered by our minijinja setup
//! must equal Python jinja2's rendering with Hugging Face's conventions,
//! recorded in `tests/fixtures/chat_templates/expected.json` by
//! `scripts/fixtures/chat_templates.py` (see the README there).

use serde_json::Value;
use std::path::PathBuf;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message, TemplateError};

/// 2024-07-26 13:05:09 UTC, the script's `FIXED_NOW`.
const FIXED_NOW: i64 = 1_721_999_109;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates")
}

#[test]
fn real_templates_match_python_jinja2() {
    let dir = fixture_dir();
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let bos = fixture["bos_token"].as_str().unwrap();
    let eos = fixture["eos_token"].as_str().unwrap();
    let convs = &fixture["conversations"];
    let mut matched = 0;
    let mut raised = 0;
    let mut skipped = 0;
    let mut failures = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["template"].as_str().unwrap();
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        let Some(conv_name) = case["conversation"].as_str() else {
            // jinja2 could not compile it: minijinja need not either.
            skipped += 1;
            continue;
        };
        let conv = &convs[conv_name];
        let messages = Message::list_from_json(&conv["messages"]).unwrap();
        let tools = conv.get("tools").filter(|t| !t.is_null());
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let label = format!("{name} / {conv_name} / add_generation_prompt={agp}");
        let rendered = ChatTemplate::new(source, bos, eos)
            .map(|t| t.with_fixed_time(FIXED_NOW))
            .and_then(|t| t.render(&messages, agp, tools));
        if let Some(want) = case["output"].as_str() {
            match rendered {
                Ok(got) if got == want => matched += 1,
                Ok(got) => failures.push(format!(
                    "{label}: output differs\n--- jinja2\n{want}\n--- ours\n{got}\n"
                )),
                Err(e) => failures.push(format!("{label}: error {e}")),
            }
        } else if let Some(msg) = case["raised"].as_str() {
            match rendered {
                Err(TemplateError::Raised(m)) if m == msg => raised += 1,
                other => failures.push(format!(
                    "{label}: want raise_exception({msg:?}), got {other:?}"
                )),
            }
        } else {
            // jinja2 itself failed on this input (a template bug such as
            // iterating `tools` when it is None): nothing to compare.
            skipped += 1;
        }
    }
    eprintln!("{matched} outputs and {raised} raise_exception messages equal jinja2's; {skipped} cases skipped (jinja2 failed)");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(matched > 500, "{matched}");
    assert!(raised > 0);
}
