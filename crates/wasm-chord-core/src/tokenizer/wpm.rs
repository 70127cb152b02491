//! WordPiece (`tokenizer.ggml.model = bert`): BERT's basic normalization
//! (optional lower-casing and accent stripping, punctuation and CJK split
//! into single-character words), then greedy longest-match per word with a
//! `▁` word prefix. A port of llama.cpp's `llm_tokenizer_wpm_session`.

use super::unicode::{flags, nfd_first, to_lower};
use super::vocab::Vocab;

fn is_chinese_char(c: u32) -> bool {
    (0x4E00..=0x9FFF).contains(&c)
        || (0x3400..=0x4DBF).contains(&c)
        || (0x20000..=0x2A6DF).contains(&c)
        || (0x2A700..=0x2B73F).contains(&c)
        || (0x2B740..=0x2B81F).contains(&c)
        || (0x2B920..=0x2CEAF).contains(&c)
        || (0xF900..=0xFAFF).contains(&c)
        || (0x2F800..=0x2FA1F).contains(&c)
}

/// BERT's basic pre-tokenization into words.
fn preprocess(text: &str, lowercase: bool, strip_accents: bool) -> Vec<String> {
    let mut words = vec![String::new()];
    for ch in text.chars() {
        let mut cpt = u32::from(ch);
        if strip_accents {
            cpt = nfd_first(cpt);
        }
        let f = flags(cpt);
        let last_nonempty = words.last().is_some_and(|w| !w.is_empty());
        if f.is_whitespace() {
            if last_nonempty {
                words.push(String::new());
            }
            continue;
        }
        if cpt == 0 || cpt == 0xFFFD || f.is_control() {
            continue;
        }
        if strip_accents && f.is_accent_mark() {
            continue;
        }
        let c = if lowercase { to_lower(cpt) } else { cpt };
        let c = char::from_u32(c).unwrap_or('\u{FFFD}');
        if f.is_punctuation() || (cpt < 0x7F && f.is_symbol()) || is_chinese_char(cpt) {
            if last_nonempty {
                words.push(String::new());
            }
            if let Some(w) = words.last_mut() {
                *w = c.to_string();
            }
            words.push(String::new());
        } else if let Some(w) = words.last_mut() {
            w.push(c);
        }
    }
    if words.last().is_some_and(String::is_empty) {
        words.pop();
    }
    words
}

/// Appends the tokens of `text`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    for word in preprocess(text, vocab.lowercase, vocab.strip_accents) {
        if word.is_empty() {
            continue;
        }
        let word1 = format!("\u{2581}{word}");
        let n = word1.len();
        let before = out.len();
        let mut i = 0;
        while i < n {
            let mut matched = None;
            let mut j = n.min(i + vocab.max_token_len + 1);
            while j > i {
                if let Some(id) = word1.get(i..j).and_then(|s| vocab.id_of(s)) {
                    matched = Some((id, j));
                    break;
                }
                j -= 1;
            }
            match matched {
                Some((id, j)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    out.truncate(before);
                    break;
                }
            }
        }
        if out.len() == before {
            out.extend(vocab.special.unk);
        }
    }
}
