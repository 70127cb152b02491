//! jinja2's `Markup` arithmetic, for templates that concatenate with `|safe`.
//!
//! In jinja2, `'x'|safe` is a markupsafe `Markup` string, and `+` between a
//! `Markup` and a plain string HTML-escapes the plain one, even with
//! autoescaping off (Hugging Face renders templates that way). So
//!
//! ```jinja
//! {{ "Use the function '"|safe + name + "' to '"|safe + description }}
//! ```
//!
//! prints `name` and `description` escaped (`'` as `&#39;`, `"` as `&#34;`).
//! minijinja's safe strings concatenate as plain text. To render what the
//! model was trained on, [`rewrite`] turns each `{{ … }}` whose expression is
//! a top-level `+` chain with a `|safe` operand into a call of
//! [`MARKUP_JOIN`], which escapes the operands that are not marked safe. Any
//! other expression is left alone (a `Markup` kept in a variable and added
//! later is not tracked; no real template in the test corpus does that).

use minijinja::Value;

/// Name of the function the rewritten expressions call.
pub(crate) const MARKUP_JOIN: &str = "__wasmchord_markup_join";

/// markupsafe's `escape`.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The function behind [`MARKUP_JOIN`]: concatenates `items` as Python's
/// `str()` prints them, escaping those whose flag in `safe` is false.
pub(crate) fn markup_join(items: Vec<Value>, safe: Vec<bool>) -> Value {
    let mut out = String::new();
    for (i, v) in items.iter().enumerate() {
        let s = super::python_str::py_str(v);
        if safe.get(i).copied().unwrap_or(false) {
            out.push_str(&s);
        } else {
            out.push_str(&escape(&s));
        }
    }
    Value::from_safe_string(out)
}

/// Rewrites `{{ a|safe + b + … }}` expressions as described in the module
/// documentation; everything else is copied unchanged.
pub(crate) fn rewrite(source: &str) -> String {
    if !source.contains("safe") {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let body_start = open + 2;
        let Some(close) = find_close(&rest[body_start..]) else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &rest[body_start..body_start + close];
        out.push_str("{{");
        out.push_str(&rewrite_expression(inner).unwrap_or_else(|| inner.to_string()));
        out.push_str("}}");
        rest = &rest[body_start + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Offset of the `}}` that closes an expression, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote = None;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, b'\'' | b'"') => quote = Some(b[i]),
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The rewritten inside of `{{ … }}`, or `None` to keep it.
fn rewrite_expression(inner: &str) -> Option<String> {
    // Whitespace-control markers stay where they are.
    let lead = if inner.starts_with(['-', '+']) { 1 } else { 0 };
    let trail = if inner.len() > lead && inner.ends_with('-') {
        1
    } else {
        0
    };
    let expr = &inner[lead..inner.len() - trail];
    let operands = split_plus_chain(expr)?;
    if operands.len() < 2 {
        return None;
    }
    let safe: Vec<bool> = operands.iter().map(|o| is_safe(o)).collect();
    if !safe.contains(&true) {
        return None;
    }
    let items: Vec<&str> = operands.iter().map(|o| o.trim()).collect();
    let flags: Vec<&str> = safe
        .iter()
        .map(|&s| if s { "true" } else { "false" })
        .collect();
    Some(format!(
        "{} {MARKUP_JOIN}([{}], [{}]) {}",
        &inner[..lead],
        items.join(", "),
        flags.join(", "),
        &inner[inner.len() - trail..]
    ))
}

/// Splits `expr` at its top-level `+`; `None` when the top level holds any
/// other operator or keyword (then the expression is not a plain chain).
fn split_plus_chain(expr: &str) -> Option<Vec<&str>> {
    let b = expr.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start, mut i) = (0i32, None, 0usize, 0usize);
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b'+' if depth == 0 => {
                    parts.push(&expr[start..i]);
                    start = i + 1;
                }
                b'~' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'!' if depth == 0 => {
                    return None
                }
                _ if depth == 0 && c.is_ascii_alphabetic() => {
                    // A keyword operator at the top level (if/else/and/or/
                    // not/in/is) means this is not a plain chain.
                    let word_start = i;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                    let word = &expr[word_start..i];
                    let standalone = word_start == 0
                        || !matches!(b[word_start - 1], b'.' | b'|' | b'_')
                            && !b[word_start - 1].is_ascii_alphanumeric();
                    if standalone
                        && matches!(word, "if" | "else" | "and" | "or" | "not" | "in" | "is")
                    {
                        return None;
                    }
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    if quote.is_some() || depth != 0 {
        return None;
    }
    parts.push(&expr[start..]);
    Some(parts)
}

/// Whether an operand ends in a top-level `|safe` filter.
fn is_safe(operand: &str) -> bool {
    let t = operand.trim_end();
    let t = t.strip_suffix("()").map_or(t, str::trim_end);
    t.strip_suffix("safe")
        .map(str::trim_end)
        .is_some_and(|p| p.ends_with('|'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_markupsafe() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn rewrites_only_plain_chains_with_a_safe_operand() {
        let src = r#"{{ "a '"|safe + t["name"] + "'\n"|safe + t | tojson() }}"#;
        assert_eq!(
            rewrite(src),
            format!(
                r#"{{{{ {MARKUP_JOIN}(["a '"|safe, t["name"], "'\n"|safe, t | tojson()], [true, false, true, false]) }}}}"#
            )
        );
        for keep in [
            "{{ a + b }}",
            "{{ a|safe }}",
            "{{ a|safe + b if c else d }}",
            "{{ a|safe ~ b }}",
            "{{- a|unsafe + b -}}",
            "{{ f(a|safe + b) }}",
        ] {
            assert_eq!(rewrite(keep), keep, "{keep}");
        }
        assert_eq!(
            rewrite("x{{- '<'|safe + y -}}z"),
            format!("x{{{{- {MARKUP_JOIN}(['<'|safe, y], [true, false]) -}}}}z")
        );
    }

    #[test]
    fn strings_with_braces_and_operators_do_not_confuse_the_scanner() {
        let src = "{{ '}} + ~'|safe + x }} and {{ y }}";
        assert_eq!(
            rewrite(src),
            format!("{{{{ {MARKUP_JOIN}(['}}}} + ~'|safe, x], [true, false]) }}}} and {{{{ y }}}}")
        );
        // Unterminated blocks are copied as they are.
        assert_eq!(rewrite("{{ 'a'|safe + b"), "{{ 'a'|safe + b");
    }
}
