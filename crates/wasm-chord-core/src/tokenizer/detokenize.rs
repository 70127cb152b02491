//! Token → text: the piece of each token (llama.cpp's `token_to_piece`) and
//! whole-sequence decoding (`detokenize`, with its space clean-up).

use super::unicode::char_to_byte;
use super::vocab::{attr, Vocab, VocabKind};

/// The byte of a `<0xXX>` token.
fn hex_byte(text: &str) -> Option<u8> {
    let h = text.get(3..5)?;
    u8::from_str_radix(h, 16).ok()
}

/// GPT-2 byte-level text back to bytes (llama.cpp's `llama_decode_text`,
/// including its `[UNK_BYTE_0x..]` marker for characters outside the map).
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The piece of `id` as llama.cpp renders it with `special = true`.
pub(crate) fn piece(vocab: &Vocab, id: u32) -> Vec<u8> {
    let Some(text) = vocab.texts.get(id as usize) else {
        return Vec::new();
    };
    let a = vocab.attr(id);
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match vocab.kind {
            VocabKind::Bpe if !vocab.escape_whitespaces => decode_byte_level(text),
            _ => text.replace('\u{2581}', " ").into_bytes(),
        };
    }
    if a & attr::BYTE != 0 {
        return hex_byte(text).map(|b| vec![b]).unwrap_or_default();
    }
    Vec::new()
}

/// llama.cpp's `clean_up_tokenization_spaces` passes, ported in place so
/// that their quirks (a skipped space reads as NUL) are kept.
pub(crate) fn clean_spaces(t: &mut Vec<u8>) {
    // first pass: " ?", " !", " .", " ,"
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total = total.saturating_sub(1);
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
    // second pass: strip the spaces around a lone apostrophe
    let n = t.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total = total.saturating_sub(1);
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    t.truncate(total);
    // third pass: " 's", " 'm", " 're", " 've"
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            if x1 == b's' || x1 == b'm' {
                total = total.saturating_sub(1);
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = t[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total = total.saturating_sub(1);
                }
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
}
