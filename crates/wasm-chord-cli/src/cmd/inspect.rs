//! `wasmchord inspect`: metadata and tensor table of a GGUF file.

use super::{model_arg, CmdResult};
use std::fmt::Write as _;
use wasm_chord_core::gguf::{Array, GgufFile, Value};

/// Show a GGUF file's metadata (arrays summarized) and its tensor table
/// (name, type, shape, bytes), like llama.cpp's gguf-dump.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// GGUF file, or a known model name (default: the default model).
    model: Option<String>,
    /// How many elements of each array to show.
    #[arg(long, default_value_t = 5)]
    array_items: usize,
    /// Show only the metadata, not the tensor table.
    #[arg(long)]
    no_tensors: bool,
}

/// Runs the subcommand.
pub fn run(args: InspectArgs) -> CmdResult {
    let path = model_arg::resolve(args.model.as_deref())?;
    let file = GgufFile::open(&path)?;
    let h = file.header();
    let mut out = String::new();
    writeln!(out, "file:      {}", path.display())?;
    writeln!(out, "size:      {} bytes", file.file_len())?;
    writeln!(out, "gguf:      v{}", h.version)?;
    writeln!(out, "alignment: {}", h.alignment)?;
    writeln!(out, "data at:   {}", h.data_offset)?;
    writeln!(out, "\nmetadata ({} keys):", h.metadata.len())?;
    for (key, value) in h.metadata.iter() {
        writeln!(
            out,
            "  {key:<44} {:<8} {}",
            value.value_type().name(),
            summarize(value, args.array_items)
        )?;
    }
    if !args.no_tensors {
        let total: u64 = h.tensors.iter().map(|t| t.n_bytes()).sum();
        writeln!(out, "\ntensors ({}, {} bytes):", h.tensors.len(), total)?;
        writeln!(
            out,
            "  {:>4}  {:<40} {:<8} {:<24} {:>12}",
            "#", "name", "type", "shape", "bytes"
        )?;
        for (i, t) in h.tensors.iter().enumerate() {
            let shape = t
                .dims
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" x ");
            writeln!(
                out,
                "  {i:>4}  {:<40} {:<8} {:<24} {:>12}",
                t.name,
                t.ggml_type.name(),
                shape,
                t.n_bytes()
            )?;
        }
    }
    print!("{out}");
    Ok(())
}

/// One line for a value: scalars in full, strings quoted and cut at 80
/// characters, arrays as `[N × TYPE] first, items, ...`.
pub fn summarize(v: &Value, items: usize) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Array(a) => summarize_array(a, items),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}

fn quote(s: &str) -> String {
    const MAX: usize = 80;
    let cut: String = s.chars().take(MAX).collect();
    let more = if s.chars().nth(MAX).is_some() {
        "…"
    } else {
        ""
    };
    format!("{:?}{more}", cut)
}

fn summarize_array(a: &Array, items: usize) -> String {
    fn list<T>(v: &[T], items: usize, f: impl Fn(&T) -> String) -> String {
        let mut parts: Vec<String> = v.iter().take(items).map(f).collect();
        if v.len() > items {
            parts.push("...".into());
        }
        parts.join(", ")
    }
    let body = match a {
        Array::U8(v) => list(v, items, u8::to_string),
        Array::I8(v) => list(v, items, i8::to_string),
        Array::U16(v) => list(v, items, u16::to_string),
        Array::I16(v) => list(v, items, i16::to_string),
        Array::U32(v) => list(v, items, u32::to_string),
        Array::I32(v) => list(v, items, i32::to_string),
        Array::U64(v) => list(v, items, u64::to_string),
        Array::I64(v) => list(v, items, i64::to_string),
        Array::F32(v) => list(v, items, f32::to_string),
        Array::F64(v) => list(v, items, f64::to_string),
        Array::Bool(v) => list(v, items, bool::to_string),
        Array::String(v) => list(v, items, |s| quote(s)),
        Array::Array(v) => list(v, items, |x| format!("[{}]", summarize_array(x, items))),
    };
    format!("[{} × {}] {body}", a.len(), a.element_type().name())
}
