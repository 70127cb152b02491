//! Chat templates: a conversation rendered into prompt text.

use crate::boundary::call;
use crate::error::{wasmchord_result, CapiError};
use crate::model::wasmchord_model;
use crate::ptr;
use std::ffi::c_char;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};

/// A chat template, ready to render. Immutable and thread-safe.
#[allow(non_camel_case_types)]
pub struct wasmchord_chat_template {
    inner: ChatTemplate,
}

/// One message of a conversation.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct wasmchord_chat_message {
    /// `"system"`, `"user"`, `"assistant"`, ... (NUL-terminated UTF-8).
    pub role: *const c_char,
    /// The text (NUL-terminated UTF-8).
    pub content: *const c_char,
}

fn boxed(t: ChatTemplate) -> *mut wasmchord_chat_template {
    Box::into_raw(Box::new(wasmchord_chat_template { inner: t }))
}

/// A chat template: with `name == NULL`, the model's own
/// (`tokenizer.chat_template`, rendered with its BOS/EOS text; fails with
/// `WASMCHORD_NO_CHAT_TEMPLATE` when the file has none); otherwise the
/// built-in template of that name (`"chatml"`, `"llama2"`, `"llama3"`,
/// `"gemma"`, `"mistral"`, `"phi3"`, ...), for which `model` may be NULL.
///
/// # Safety
/// `model` is NULL or a live model; `name` is NULL or a NUL-terminated
/// string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_chat_template_new(
    model: *const wasmchord_model,
    name: *const c_char,
    out: *mut *mut wasmchord_chat_template,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let name = unsafe { ptr::opt_c_str(name, "name") }?;
        if out.is_null() {
            return Err(CapiError::Null("out"));
        }
        let t = match name {
            Some(name) => ChatTemplate::builtin(name)?,
            None => {
                // SAFETY: as above.
                let m = &unsafe { ptr::handle(model, "model") }?.inner;
                let tok = &m.tokenizer;
                let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("");
                ChatTemplate::from_metadata(m.file.metadata(), text(tok.bos()), text(tok.eos()))?
            }
        };
        // SAFETY: checked non-NULL; writable by the contract.
        unsafe { ptr::write(out, boxed(t), "out") }
    })
}

/// A chat template from Jinja source, with the text `bos_token` and
/// `eos_token` render as. The source is parsed now (syntax errors fail
/// with `WASMCHORD_CHAT_TEMPLATE`). Templates are sandboxed: no file
/// access, and each render has a step and output-size limit.
///
/// # Safety
/// `source`, `bos` and `eos` are NUL-terminated strings (`bos`/`eos` may
/// be NULL for empty); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_chat_template_from_source(
    source: *const c_char,
    bos: *const c_char,
    eos: *const c_char,
    out: *mut *mut wasmchord_chat_template,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let source = unsafe { ptr::c_str(source, "source") }?;
        // SAFETY: as above.
        let bos = unsafe { ptr::opt_c_str(bos, "bos") }?.unwrap_or("");
        // SAFETY: as above.
        let eos = unsafe { ptr::opt_c_str(eos, "eos") }?.unwrap_or("");
        if out.is_null() {
            return Err(CapiError::Null("out"));
        }
        let t = ChatTemplate::new(source, bos, eos)?;
        // SAFETY: checked non-NULL; writable by the contract.
        unsafe { ptr::write(out, boxed(t), "out") }
    })
}

/// Releases a chat template. NULL is a no-op.
///
/// # Safety
/// `tmpl` is NULL or a live template, not used after this call.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_chat_template_free(tmpl: *mut wasmchord_chat_template) {
    crate::boundary::boundary((), || {
        // SAFETY: the header's contract.
        unsafe { ptr::free_box(tmpl) }
    })
}

/// Renders `n_messages` messages into a prompt (with
/// `add_generation_prompt`, ending with the opening of an assistant
/// turn). Same buffer convention as `wasmchord_detokenize`: the text and a
/// NUL go to `buf`, the length without NUL to `*len_out`; when `capacity`
/// is too small only `*len_out` is written, with
/// `WASMCHORD_BUFFER_TOO_SMALL`. Tokenize the result with
/// `parse_special = true`.
///
/// # Safety
/// `tmpl` is a live template; `messages` points to `n_messages` messages
/// of NUL-terminated strings; `buf` is writable for `capacity` bytes;
/// `len_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_chat_template_render(
    tmpl: *const wasmchord_chat_template,
    messages: *const wasmchord_chat_message,
    n_messages: usize,
    add_generation_prompt: bool,
    buf: *mut c_char,
    capacity: usize,
    len_out: *mut usize,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let t = &unsafe { ptr::handle(tmpl, "tmpl") }?.inner;
        // SAFETY: as above.
        let raw = unsafe { ptr::slice(messages, n_messages, "messages") }?;
        let mut msgs = Vec::with_capacity(raw.len());
        for m in raw {
            // SAFETY: as above (each message holds two C strings).
            let role = unsafe { ptr::c_str(m.role, "messages[i].role") }?;
            // SAFETY: as above.
            let content = unsafe { ptr::c_str(m.content, "messages[i].content") }?;
            msgs.push(Message::new(role, content));
        }
        let text = t.render(&msgs, add_generation_prompt, None)?;
        // SAFETY: as above.
        unsafe { ptr::write_text(text.as_bytes(), buf, capacity, len_out) }
    })
}
