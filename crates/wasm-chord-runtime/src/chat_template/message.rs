//! One chat message, as templates see it: `role`, `content` (a string or a
//! list of parts such as `{"type": "text", "text": "..."}`), and any other
//! fields a template may read (`tool_calls`, `name`, `tool_call_id`, ...).

use super::TemplateError;
use serde_json::{Map, Value};

/// A chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `"system"`, `"user"`, `"assistant"`, `"tool"`, ...
    pub role: String,
    /// A JSON string, or an array of content parts.
    pub content: Value,
    /// Other fields, passed to the template as they are (in order).
    pub extra: Map<String, Value>,
    /// Key order of the JSON object this came from, so templates that
    /// iterate or serialize a message see the caller's order (as Python
    /// dicts keep it); empty for messages built in code.
    key_order: Vec<String>,
}

impl Message {
    /// A message with text content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Value::String(content.into()),
            extra: Map::new(),
            key_order: Vec::new(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// From a JSON object with a string `role` (`content` may be missing,
    /// a string, an array of parts, or null).
    pub fn from_json(v: &Value, index: usize) -> Result<Self, TemplateError> {
        let obj = v.as_object().ok_or(TemplateError::BadMessage {
            index,
            reason: "not a JSON object",
        })?;
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .ok_or(TemplateError::BadMessage {
                index,
                reason: "missing string `role`",
            })?;
        let content = obj.get("content").cloned().unwrap_or(Value::Null);
        if !matches!(content, Value::String(_) | Value::Array(_) | Value::Null) {
            return Err(TemplateError::BadMessage {
                index,
                reason: "`content` must be a string, an array of parts, or null",
            });
        }
        let extra = obj
            .iter()
            .filter(|(k, _)| *k != "role" && *k != "content")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            role: role.to_owned(),
            content,
            extra,
            key_order: obj.keys().cloned().collect(),
        })
    }

    /// Messages from a JSON array of message objects.
    pub fn list_from_json(v: &Value) -> Result<Vec<Self>, TemplateError> {
        let arr = v.as_array().ok_or(TemplateError::BadMessage {
            index: 0,
            reason: "messages must be a JSON array",
        })?;
        arr.iter()
            .enumerate()
            .map(|(i, m)| Self::from_json(m, i))
            .collect()
    }

    /// Adds (or replaces) another field, e.g. `tool_calls`.
    pub fn with_field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// The message as the JSON object a template sees.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for k in &self.key_order {
            match k.as_str() {
                "role" => {
                    m.insert("role".into(), Value::String(self.role.clone()));
                }
                "content" => {
                    m.insert("content".into(), self.content.clone());
                }
                other => {
                    if let Some(v) = self.extra.get(other) {
                        m.insert(other.to_owned(), v.clone());
                    }
                }
            }
        }
        if !m.contains_key("role") {
            m.insert("role".into(), Value::String(self.role.clone()));
        }
        if !m.contains_key("content") {
            m.insert("content".into(), self.content.clone());
        }
        for (k, v) in &self.extra {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }
}
