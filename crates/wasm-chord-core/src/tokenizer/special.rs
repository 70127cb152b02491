//! Splitting special tokens out of raw text before tokenizing, as llama.cpp's
//! `tokenizer_st_partition`: every special token (longest text first) is cut
//! out of every text fragment still left. Control and unknown tokens take
//! part only with `parse_special`; user-defined tokens always do.

use super::vocab::{attr, Vocab};

/// A piece of the input: raw text still to tokenize, or a special token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// `text[start..start + len]`.
    Text { start: usize, len: usize },
    /// A special token found in the text.
    Token(u32),
}

fn is_space(b: u8) -> bool {
    // C `isspace` in the "C" locale
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Partitions `text` into fragments.
pub(crate) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text {
        start: 0,
        len: text.len(),
    });
    let bytes = text.as_bytes();
    let mut next = Vec::new();
    for &id in &vocab.special_by_len {
        let a = vocab.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let Some(tok) = vocab.texts.get(id as usize) else {
            continue;
        };
        if tok.is_empty() || !frags.iter().any(|f| matches!(f, Fragment::Text { .. })) {
            continue;
        }
        next.clear();
        let mut changed = false;
        for &f in &frags {
            let Fragment::Text { start, len } = f else {
                next.push(f);
                continue;
            };
            let mut base = start;
            let mut base_len = len;
            loop {
                let hay = text.get(base..base + base_len).unwrap_or_default();
                let Some(rel) = hay.find(tok.as_str()) else {
                    if base_len > 0 {
                        next.push(Fragment::Text {
                            start: base,
                            len: base_len,
                        });
                    }
                    break;
                };
                changed = true;
                let m = base + rel;
                if m > base {
                    let mut left_len = m - base;
                    if a & attr::LSTRIP != 0 {
                        while left_len > 0
                            && bytes.get(base + left_len - 1).is_some_and(|&b| is_space(b))
                        {
                            left_len -= 1;
                        }
                    }
                    if left_len > 0 {
                        next.push(Fragment::Text {
                            start: base,
                            len: left_len,
                        });
                    }
                }
                next.push(Fragment::Token(id));
                let after = m + tok.len();
                let end = base + base_len;
                if after >= end {
                    break;
                }
                let mut r_off = after;
                let mut r_len = end - after;
                if a & attr::RSTRIP != 0 {
                    while r_len > 0 && bytes.get(r_off).is_some_and(|&b| is_space(b)) {
                        r_off += 1;
                        r_len -= 1;
                    }
                }
                if r_len == 0 {
                    break;
                }
                base = r_off;
                base_len = r_len;
            }
        }
        if changed {
            std::mem::swap(&mut frags, &mut next);
        }
    }
    frags
}
