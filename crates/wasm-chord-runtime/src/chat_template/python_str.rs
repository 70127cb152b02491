//! Python's `str()` / `repr()` of template values, so that printing a
//! value (`{{ x }}`, `x|string`) gives what jinja2 gives: `None`, `True`,
//! `1.0`, `[{'type': 'text'}]`, rather than minijinja's own spellings.

use super::json::python_float_repr;
use minijinja::value::ValueKind;
use minijinja::Value;

/// Nesting limit for containers.
const MAX_DEPTH: usize = 128;

/// Python `str(v)`.
pub(crate) fn py_str(v: &Value) -> String {
    let mut out = String::new();
    match v.kind() {
        ValueKind::String => out.push_str(v.as_str().unwrap_or("")),
        ValueKind::Undefined => {}
        _ => write_repr(&mut out, v, 0),
    }
    out
}

fn write_repr(out: &mut String, v: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                match f64::try_from(v.clone()) {
                    Ok(f) => out.push_str(&python_float_repr(f)),
                    Err(_) => out.push_str(&v.to_string()),
                }
            }
        }
        ValueKind::String => write_str_repr(out, v.as_str().unwrap_or("")),
        ValueKind::Seq => {
            out.push('[');
            if let Ok(items) = v.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &item, depth + 1);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = v.try_iter() {
                for (i, k) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &k, depth + 1);
                    out.push_str(": ");
                    if let Ok(item) = v.get_item(&k) {
                        write_repr(out, &item, depth + 1);
                    }
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_python_str() {
        // python3: str([{'a': None, 'b': True, 'c': 1.0, 'd': "it's", 'e': 'x\ny', 'f': 3}])
        let v = Value::from_serialize(serde_json::json!([
            {"a": null, "b": true, "c": 1.0, "d": "it's", "e": "x\ny", "f": 3}
        ]));
        assert_eq!(
            py_str(&v),
            r#"[{'a': None, 'b': True, 'c': 1.0, 'd': "it's", 'e': 'x\ny', 'f': 3}]"#
        );
        assert_eq!(py_str(&Value::from("plain")), "plain");
        assert_eq!(py_str(&Value::from(false)), "False");
    }
}
