//! Choosing a template for a model: its own, else a built-in by architecture.

use super::{ChatTemplate, TemplateError, METADATA_KEY};
use wasm_chord_core::gguf::Metadata;

/// The built-in template llama.cpp's conventions would pick for a model of
/// this architecture that ships without a template, if any. Llama files are
/// told apart by their vocabulary: Llama 3's has `<|start_header_id|>`.
pub fn builtin_for(architecture: &str, has_llama3_tokens: bool) -> Option<&'static str> {
    Some(match architecture {
        "gemma" | "gemma2" | "gemma3" => "gemma",
        "llama" if has_llama3_tokens => "llama3",
        "llama" => "llama2",
        "mistral" => "mistral",
        "qwen2" | "qwen3" => "chatml",
        "phi3" => "phi3",
        _ => return None,
    })
}

impl ChatTemplate {
    /// The model's own template (`tokenizer.chat_template`), or else the
    /// built-in one for its architecture ([`builtin_for`]). Returns the
    /// template and whether it is a fallback.
    pub fn for_model(
        md: &Metadata,
        bos: impl Into<String>,
        eos: impl Into<String>,
    ) -> Result<(Self, bool), TemplateError> {
        if md.contains(METADATA_KEY) {
            return Ok((Self::from_metadata(md, bos, eos)?, false));
        }
        let arch = md.get_str("general.architecture").unwrap_or("");
        let llama3 = md
            .get_str_array("tokenizer.ggml.tokens")
            .is_ok_and(|t| t.iter().any(|s| s == "<|start_header_id|>"));
        match builtin_for(arch, llama3) {
            Some(name) => Ok((Self::builtin(name)?, true)),
            None => Err(TemplateError::NoTemplate(super::BUILTIN_NAMES)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::Message;
    use wasm_chord_core::gguf::{Array, Value};

    #[test]
    fn own_template_wins_then_architecture_fallback() {
        let mut md = Metadata::new();
        md.insert("general.architecture", Value::String("gemma3".into()));
        let (t, fallback) = ChatTemplate::for_model(&md, "<bos>", "<eos>").unwrap();
        assert!(fallback);
        let out = t.render(&[Message::user("hi")], true, None).unwrap();
        assert!(
            out.contains("<start_of_turn>user\nhi<end_of_turn>"),
            "{out}"
        );

        md.insert(
            METADATA_KEY,
            Value::String("[{{ messages[0].content }}]".into()),
        );
        let (t, fallback) = ChatTemplate::for_model(&md, "<bos>", "<eos>").unwrap();
        assert!(!fallback);
        assert_eq!(
            t.render(&[Message::user("hi")], false, None).unwrap(),
            "[hi]"
        );

        let mut md = Metadata::new();
        md.insert("general.architecture", Value::String("llama".into()));
        md.insert(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vec!["<|start_header_id|>".into()])),
        );
        let (t, _) = ChatTemplate::for_model(&md, "", "").unwrap();
        let out = t.render(&[Message::user("hi")], true, None).unwrap();
        assert!(
            out.contains("<|start_header_id|>user<|end_header_id|>"),
            "{out}"
        );

        md.insert("general.architecture", Value::String("mamba".into()));
        assert!(ChatTemplate::for_model(&md, "", "").is_err());
    }
}
