//! The `tojson` filter as Hugging Face defines it for chat templates:
//! Python's `json.dumps(x, ensure_ascii=False, indent=None,
//! separators=None, sort_keys=False)`, so `", "` between items and `": "`
//! after keys (`","` between items when indenting), no HTML escaping, and
//! Python's float formatting.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Formatting options, from the filter's keyword arguments.
struct Options {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// Nesting limit, so a self-referencing value cannot overflow the stack.
const MAX_DEPTH: usize = 128;

/// The filter: `{{ x | tojson }}`, `{{ x | tojson(indent=2) }}`, ...
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.kind() {
            ValueKind::Number => {
                Some(" ".repeat(usize::try_from(i64::try_from(v)?).unwrap_or(0).min(64)))
            }
            _ => Some(v.as_str().unwrap_or("").to_owned()),
        },
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let a = v.get_item_by_index(0)?;
            let b = v.get_item_by_index(1)?;
            match (a.as_str(), b.as_str()) {
                (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson separators must be two strings",
                    ))
                }
            }
        }
        _ => (
            if indent.is_some() { "," } else { ", " }.to_owned(),
            ": ".to_owned(),
        ),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let opts = Options {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    write_value(&mut out, value, &opts, 0)?;
    Ok(out)
}

fn newline(out: &mut String, opts: &Options, depth: usize) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn write_value(out: &mut String, v: &Value, opts: &Options, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v),
        ValueKind::String | ValueKind::Bytes => {
            write_str(out, v.as_str().unwrap_or(""), opts.ensure_ascii)
        }
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Plain | ValueKind::Invalid => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_seq(out, &items, opts, depth)?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                match k.as_str() {
                    Some(s) => write_str(out, s, opts.ensure_ascii),
                    None => {
                        // Python turns None/bool/number keys into strings.
                        let mut key = String::new();
                        write_value(&mut key, k, opts, depth + 1)?;
                        write_str(out, &key, opts.ensure_ascii);
                    }
                }
                out.push_str(&opts.key_sep);
                write_value(out, &v.get_item(k)?, opts, depth + 1)?;
            }
            newline(out, opts, depth);
            out.push('}');
        }
        _ => write_str(out, &v.to_string(), opts.ensure_ascii),
    }
    Ok(())
}

fn write_seq(out: &mut String, items: &[Value], opts: &Options, depth: usize) -> Result<(), Error> {
    if items.is_empty() {
        out.push_str("[]");
        return Ok(());
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&opts.item_sep);
        }
        newline(out, opts, depth + 1);
        write_value(out, item, opts, depth + 1)?;
    }
    newline(out, opts, depth);
    out.push(']');
    Ok(())
}

fn write_number(out: &mut String, v: &Value) {
    if let Ok(i) = i64::try_from(v.clone()) {
        if v.as_i64().is_some() || !v.to_string().contains(['.', 'e', 'E', 'i', 'N']) {
            out.push_str(&i.to_string());
            return;
        }
    }
    if let Some(i) = v.as_i64() {
        out.push_str(&i.to_string());
        return;
    }
    match f64::try_from(v.clone()) {
        Ok(f) => out.push_str(&python_float_repr(f)),
        Err(_) => out.push_str(&v.to_string()),
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, in positional
/// notation when the decimal exponent is in `-4..16`, else `1e+16` style;
/// integral values keep a `.0`.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let mut m = String::new();
        m.push_str(digits.get(..1).unwrap_or("0"));
        if digits.len() > 1 {
            m.push('.');
            m.push_str(digits.get(1..).unwrap_or(""));
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let s = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= n {
        format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{s}")
}

fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python_repr() {
        // python3: [repr(x) for x in ...]
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (1.5e300, "1.5e+300"),
        ] {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn strings_like_python_json() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\nd\u{1}é<>&'", false);
        assert_eq!(s, r#""a\"b\\c\nd\u0001é<>&'""#);
        let mut s = String::new();
        write_str(&mut s, "é😀", true);
        assert_eq!(s, r#""\u00e9\ud83d\ude00""#);
    }
}
