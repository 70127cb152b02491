//! Tokenizing and detokenizing, with size negotiation.

use crate::boundary::call;
use crate::error::wasmchord_result;
use crate::model::wasmchord_model;
use crate::ptr;
use std::ffi::c_char;

/// Tokenizes `text_len` bytes of UTF-8 `text` (no NUL needed).
/// `add_special` adds the BOS/EOS the model asks for; `parse_special`
/// turns special-token text (`<|im_start|>`) into those tokens.
///
/// Writes the ids to `tokens` (capacity `capacity`) and their count to
/// `*n_tokens`. If `capacity` is too small, only `*n_tokens` is written
/// (with the count needed) and the call fails with
/// `WASMCHORD_BUFFER_TOO_SMALL`: call with `tokens = NULL, capacity = 0`
/// to ask for the size.
///
/// # Safety
/// `model` is a live model; `text` points to `text_len` bytes; `tokens` is
/// writable for `capacity` ids; `n_tokens` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_tokenize(
    model: *const wasmchord_model,
    text: *const c_char,
    text_len: usize,
    add_special: bool,
    parse_special: bool,
    tokens: *mut u32,
    capacity: usize,
    n_tokens: *mut usize,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let m = &unsafe { ptr::handle(model, "model") }?.inner;
        // SAFETY: as above.
        let text = unsafe { ptr::utf8(text, text_len, "text") }?;
        let ids = m.tokenizer.encode(text, add_special, parse_special);
        // SAFETY: as above.
        unsafe { ptr::write_array(&ids, tokens, capacity, n_tokens) }
    })
}

/// Turns token ids back into UTF-8 text (a character cut in half becomes
/// U+FFFD). `remove_special` drops a leading BOS / trailing EOS that the
/// model adds itself; `unparse_special` renders control tokens as text.
///
/// Writes the text and a NUL to `buf` (capacity `capacity` bytes) and its
/// length without the NUL to `*len_out`. If `capacity <= length`, only
/// `*len_out` is written and the call fails with
/// `WASMCHORD_BUFFER_TOO_SMALL`: retry with `*len_out + 1` bytes.
///
/// # Safety
/// `model` is a live model; `tokens` points to `n_tokens` ids; `buf` is
/// writable for `capacity` bytes; `len_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_detokenize(
    model: *const wasmchord_model,
    tokens: *const u32,
    n_tokens: usize,
    remove_special: bool,
    unparse_special: bool,
    buf: *mut c_char,
    capacity: usize,
    len_out: *mut usize,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let m = &unsafe { ptr::handle(model, "model") }?.inner;
        // SAFETY: as above.
        let ids = unsafe { ptr::slice(tokens, n_tokens, "tokens") }?;
        let text = m.tokenizer.decode(ids, remove_special, unparse_special)?;
        // SAFETY: as above.
        unsafe { ptr::write_text(text.as_bytes(), buf, capacity, len_out) }
    })
}

/// The raw bytes of one token (possibly not UTF-8 on its own: byte tokens
/// and pieces of multi-byte characters). With `special == false`, control
/// tokens render as nothing. Same buffer convention as
/// `wasmchord_detokenize` (a NUL is appended).
///
/// # Safety
/// As `wasmchord_detokenize`.
#[no_mangle]
pub unsafe extern "C" fn wasmchord_token_to_piece(
    model: *const wasmchord_model,
    token: u32,
    special: bool,
    buf: *mut c_char,
    capacity: usize,
    len_out: *mut usize,
) -> wasmchord_result {
    call(|| {
        // SAFETY: the header's contract for these arguments.
        let m = &unsafe { ptr::handle(model, "model") }?.inner;
        let piece = m.tokenizer.token_to_piece(token, special)?;
        // SAFETY: as above.
        unsafe { ptr::write_text(piece, buf, capacity, len_out) }
    })
}
