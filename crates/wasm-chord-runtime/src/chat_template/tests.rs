//! Unit tests of chat-template rendering; the comparison with Python jinja2
//! on real templates is in `tests/chat_templates.rs`.

use super::*;
use serde_json::json;

fn conv() -> Vec<Message> {
    vec![
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("Hello."),
        Message::user("Bye"),
    ]
}

#[test]
fn builtins_render_their_formats() {
    let cases = [
        ("chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"),
        ("gemma", "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"),
        ("llama3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        ("llama2", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]"),
        ("mistral", "<s>[INST] Be brief.\n\nHi [/INST]Hello.</s>[INST] Bye [/INST]"),
        ("phi3", "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"),
    ];
    for (name, want) in cases {
        let t = ChatTemplate::builtin(name).unwrap();
        assert_eq!(t.render(&conv(), true, None).unwrap(), want, "{name}");
    }
    assert!(matches!(
        ChatTemplate::builtin("nope"),
        Err(TemplateError::UnknownBuiltin { .. })
    ));
}

#[test]
fn raise_exception_is_typed() {
    let t = ChatTemplate::builtin("gemma").unwrap();
    let bad = [Message::user("a"), Message::user("b")];
    match t.render(&bad, false, None) {
        Err(TemplateError::Raised(m)) => assert!(m.contains("alternate"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fuel_and_output_limits_stop_bombs() {
    let bomb = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let t = ChatTemplate::new(bomb, "", "").unwrap();
    assert!(matches!(
        t.render(&[], false, None),
        Err(TemplateError::OutOfFuel(_))
    ));
    let big = "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}";
    let limits = Limits {
        max_output_bytes: 10_000,
        ..Limits::default()
    };
    let t = ChatTemplate::with_limits(big, "", "", limits).unwrap();
    assert!(matches!(
        t.render(&[], false, None),
        Err(TemplateError::OutputTooLarge(10_000))
    ));
    let t = ChatTemplate::with_limits(
        "{{ 1 }}",
        "",
        "",
        Limits {
            max_source_bytes: 3,
            ..Limits::default()
        },
    );
    assert!(matches!(
        t,
        Err(TemplateError::SourceTooLarge { len: 7, max: 3 })
    ));
}

#[test]
fn no_file_access_and_syntax_errors_are_typed() {
    let t = ChatTemplate::new("{% include '/etc/passwd' %}", "", "").unwrap();
    assert!(matches!(
        t.render(&[], false, None),
        Err(TemplateError::Render(_))
    ));
    assert!(matches!(
        ChatTemplate::new("{% if %}", "", ""),
        Err(TemplateError::Syntax(_))
    ));
}

#[test]
fn tojson_matches_python_json_dumps() {
    // python3 -c 'import json; print(json.dumps(x, ensure_ascii=False))' etc.
    let t = ChatTemplate::new(
        "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ tools | tojson(separators=(',', ':'), sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}",
        "",
        "",
    )
    .unwrap();
    let tools = json!([{"z": 1.5, "a": [1, true, null, "<é\"\n>"], "e": {}, "n": 1e-7}]);
    let got = t.render(&[], false, Some(&tools)).unwrap();
    let want = concat!(
        r#"[{"z": 1.5, "a": [1, true, null, "<é\"\n>"], "e": {}, "n": 1e-07}]|"#,
        "{\n  \"z\": 1.5,\n  \"a\": [\n    1,\n    true,\n    null,\n    \"<é\\\"\\n>\"\n  ],\n  \"e\": {},\n  \"n\": 1e-07\n}|",
        r#"[{"a":[1,true,null,"<é\"\n>"],"e":{},"n":1e-07,"z":1.5}]|"#,
        r#""\u00e9""#
    );
    assert_eq!(got, want);
}

#[test]
fn strftime_now_and_python_methods() {
    let t = ChatTemplate::new(
        "{{ strftime_now('%d %b %Y') }}|{{ messages[0].content.strip().split(' ')|join(',') }}|{% for k, v in messages[0].items() %}{{ k }}={{ v|trim }};{% endfor %}|{{ 'abc'.startswith('ab') }}",
        "",
        "",
    )
    .unwrap()
    .with_fixed_time(1_721_999_109);
    let got = t.render(&[Message::user("  a b c ")], false, None).unwrap();
    assert_eq!(got, "26 Jul 2024|a,b,c|role=user;content=a b c;|True");
}

#[test]
fn generation_tags_are_plain_blocks() {
    let t = ChatTemplate::new(
        "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}\n{% endfor %}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&[Message::user("a"), Message::user("b")], false, None)
            .unwrap(),
        // trim_blocks eats the newline after the closing tag, as in jinja2.
        "ab"
    );
}

#[test]
fn messages_from_json() {
    let v = json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "tool", "content": "1", "name": "f"}]);
    let m = Message::list_from_json(&v).unwrap();
    assert_eq!(m[1].extra.get("name"), Some(&json!("f")));
    // The caller's key order survives (Python dicts keep it).
    let keys: Vec<String> = m[1]
        .to_json()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["role", "content", "name"]);
    let v = json!([{"name": "f", "content": "1", "role": "tool"}]);
    let t = ChatTemplate::new("{{ messages[0] | tojson }}", "", "").unwrap();
    let m = Message::list_from_json(&v).unwrap();
    assert_eq!(
        t.render(&m, false, None).unwrap(),
        r#"{"name": "f", "content": "1", "role": "tool"}"#
    );
    let built = Message::assistant("x").with_field("tool_calls", json!([]));
    assert_eq!(
        built.to_json(),
        json!({"role": "assistant", "content": "x", "tool_calls": []})
    );
    assert!(matches!(
        Message::list_from_json(&json!([{"content": "x"}])),
        Err(TemplateError::BadMessage { index: 0, .. })
    ));
    assert!(matches!(
        Message::list_from_json(&json!({"role": "user"})),
        Err(TemplateError::BadMessage { .. })
    ));
}
