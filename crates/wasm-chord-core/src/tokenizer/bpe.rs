//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): each pre-tokenized piece
//! is mapped byte by byte to GPT-2's printable characters, then the adjacent
//! pair with the lowest merge rank is merged until none is left. A port of
//! llama.cpp's `llm_tokenizer_bpe_session`.

use super::error::TokenizerError;
use super::spm::char_symbols;
use super::vocab::Vocab;
use crate::gguf::Metadata;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Merge ranks from `tokenizer.ggml.merges` (`"left right"`, rank = index).
#[derive(Debug, Clone, Default)]
pub(crate) struct Merges {
    /// Merges whose two halves are both tokens, by token id.
    by_id: HashMap<(u32, u32), u32>,
    /// The rest, by text (rare: halves that are not tokens themselves).
    by_text: HashMap<(String, String), u32>,
}

impl Merges {
    /// Reads the merges; llama.cpp keeps the first rank of a repeated pair.
    pub(crate) fn from_metadata(md: &Metadata, vocab: &Vocab) -> Result<Self, TokenizerError> {
        let list = md.get_str_array("tokenizer.ggml.merges")?;
        let mut m = Merges {
            by_id: HashMap::with_capacity(list.len()),
            by_text: HashMap::new(),
        };
        for (rank, word) in list.iter().enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            // llama.cpp: the first space after the first byte splits the pair
            let split = word
                .as_bytes()
                .iter()
                .skip(1)
                .position(|&b| b == b' ')
                .map(|p| p + 1);
            let (first, second) = match split {
                Some(p) => (
                    word.get(..p).unwrap_or_default(),
                    word.get(p + 1..).unwrap_or_default(),
                ),
                None => ("", ""),
            };
            match (vocab.id_of(first), vocab.id_of(second)) {
                (Some(a), Some(b)) => {
                    m.by_id.entry((a, b)).or_insert(rank);
                }
                _ => {
                    m.by_text
                        .entry((first.to_owned(), second.to_owned()))
                        .or_insert(rank);
                }
            }
        }
        Ok(m)
    }

    fn rank(&self, l: (&str, Option<u32>), r: (&str, Option<u32>)) -> Option<u32> {
        if let (Some(a), Some(b)) = (l.1, r.1) {
            return self.by_id.get(&(a, b)).copied();
        }
        if self.by_text.is_empty() {
            return None;
        }
        self.by_text.get(&(l.0.to_owned(), r.0.to_owned())).copied()
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    n: usize,
    id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Reusable buffers for one encode call.
#[derive(Default)]
pub(crate) struct BpeSession {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Reverse<(u32, usize, usize, usize)>>,
}

impl BpeSession {
    /// Appends the tokens of one pre-tokenized (and byte-encoded) `word`.
    pub(crate) fn word(
        &mut self,
        vocab: &Vocab,
        merges: &Merges,
        byte_encoded: bool,
        word: &str,
        out: &mut Vec<u32>,
    ) {
        self.symbols.clear();
        self.queue.clear();
        if vocab.ignore_merges {
            if let Some(id) = vocab.id_of(word) {
                out.push(id);
                return;
            }
        }
        let chars = char_symbols(word);
        let count = chars.len();
        for (i, (start, n)) in chars.into_iter().enumerate() {
            let id = word.get(start..start + n).and_then(|t| vocab.id_of(t));
            self.symbols.push(Symbol {
                start,
                n,
                id,
                prev: i.checked_sub(1),
                next: if i + 1 < count { Some(i + 1) } else { None },
            });
        }
        for i in 1..self.symbols.len() {
            self.add_bigram(merges, word, Some(i - 1), Some(i));
        }
        while let Some(Reverse((_, left, right, size))) = self.queue.pop() {
            let (Some(&ls), Some(&rs)) = (self.symbols.get(left), self.symbols.get(right)) else {
                continue;
            };
            if ls.n == 0 || rs.n == 0 || ls.n + rs.n != size {
                continue;
            }
            let merged = word
                .get(ls.start..ls.start + size)
                .and_then(|t| vocab.id_of(t));
            let new_left = Symbol {
                n: size,
                id: merged,
                next: rs.next,
                ..ls
            };
            self.symbols[left] = new_left;
            self.symbols[right].n = 0;
            if let Some(s) = rs.next.and_then(|nx| self.symbols.get_mut(nx)) {
                s.prev = Some(left);
            }
            self.add_bigram(merges, word, new_left.prev, Some(left));
            self.add_bigram(merges, word, Some(left), new_left.next);
        }
        for s in &self.symbols {
            if s.n == 0 {
                continue;
            }
            match s.id {
                Some(id) => out.push(id),
                None => {
                    let piece = word.get(s.start..s.start + s.n).unwrap_or_default();
                    for &b in piece.as_bytes() {
                        let id = if byte_encoded {
                            // llama.cpp looks the raw byte up as a one-byte text
                            let one = [b];
                            std::str::from_utf8(&one).ok().and_then(|t| vocab.id_of(t))
                        } else {
                            vocab.byte_to_token(b)
                        };
                        if let Some(id) = id {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    fn add_bigram(
        &mut self,
        merges: &Merges,
        word: &str,
        left: Option<usize>,
        right: Option<usize>,
    ) {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (Some(ls), Some(rs)) = (self.symbols.get(l), self.symbols.get(r)) else {
            return;
        };
        let lt = word.get(ls.start..ls.start + ls.n).unwrap_or_default();
        let rt = word.get(rs.start..rs.start + rs.n).unwrap_or_default();
        if let Some(rank) = merges.rank((lt, ls.id), (rt, rs.id)) {
            self.queue.push(Reverse((rank, l, r, ls.n + rs.n)));
        }
    }
}
