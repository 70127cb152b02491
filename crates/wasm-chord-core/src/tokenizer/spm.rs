//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): merge the
//! adjacent pair whose merged text is the highest-scoring token, until no
//! pair merges; pieces that are not tokens fall back to `<0xXX>` byte tokens.
//! A port of llama.cpp's `llm_tokenizer_spm_session`.

use super::unicode::utf8_len;
use super::vocab::Vocab;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    n: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on ties the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Splits `text` into UTF-8 characters as llama.cpp does (by lead byte).
pub(crate) fn char_symbols(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut offs = 0;
    while offs < b.len() {
        let len = utf8_len(b[offs]).min(b.len() - offs);
        out.push((offs, len));
        offs += len;
    }
    out
}

/// Appends the tokens of `text` (spaces already escaped to `▁`).
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let chars = char_symbols(text);
    let count = chars.len();
    let mut symbols: Vec<Symbol> = chars
        .into_iter()
        .enumerate()
        .map(|(i, (start, n))| Symbol {
            start,
            n,
            prev: i.checked_sub(1),
            next: if i + 1 < count { Some(i + 1) } else { None },
        })
        .collect();
    let mut queue = BinaryHeap::with_capacity(symbols.len());
    let try_add = |symbols: &[Symbol],
                   queue: &mut BinaryHeap<Bigram>,
                   left: Option<usize>,
                   right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (Some(ls), Some(rs)) = (symbols.get(l), symbols.get(r)) else {
            return;
        };
        let size = ls.n + rs.n;
        let Some(piece) = text.get(ls.start..ls.start + size) else {
            return;
        };
        let Some(id) = vocab.id_of(piece) else { return };
        let Some(&score) = vocab.scores.get(id as usize) else {
            return;
        };
        queue.push(Bigram {
            left: l,
            right: r,
            score,
            size,
        });
    };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, Some(i - 1), Some(i));
    }
    while let Some(bg) = queue.pop() {
        let (Some(&ls), Some(&rs)) = (symbols.get(bg.left), symbols.get(bg.right)) else {
            continue;
        };
        if ls.n == 0 || rs.n == 0 || ls.n + rs.n != bg.size {
            continue;
        }
        let new_left = Symbol {
            n: ls.n + rs.n,
            next: rs.next,
            ..ls
        };
        symbols[bg.left] = new_left;
        symbols[bg.right].n = 0;
        if let Some(nx) = rs.next {
            if let Some(s) = symbols.get_mut(nx) {
                s.prev = Some(bg.left);
            }
        }
        try_add(&symbols, &mut queue, new_left.prev, Some(bg.left));
        try_add(&symbols, &mut queue, Some(bg.left), new_left.next);
    }
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        let Some(&s) = symbols.get(k) else { break };
        let piece = text.get(s.start..s.start + s.n).unwrap_or_default();
        match vocab.id_of(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    if let Some(id) = vocab.byte_to_token(b) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
