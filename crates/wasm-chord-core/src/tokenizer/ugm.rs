//! Unigram (`tokenizer.ggml.model = t5`): SentencePiece normalization through
//! the precompiled character map, then Viterbi over the token scores. A port
//! of llama.cpp's `llm_tokenizer_ugm`.

use super::error::TokenizerError;
use super::unicode::utf8_len;
use super::vocab::{attr, Vocab};
use crate::gguf::{Array, Metadata, Value};

/// One trie node: sorted `(byte, child)` edges and the value.
type Node = (Vec<(u8, u32)>, Option<u32>);

/// A byte trie (llama.cpp's `naive_trie`).
#[derive(Debug, Clone, Default)]
struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    fn new() -> Self {
        Self {
            nodes: vec![(Vec::new(), None)],
        }
    }
    fn insert(&mut self, key: &[u8], value: u32) {
        let mut node = 0usize;
        for &b in key {
            let next = match self
                .nodes
                .get(node)
                .map(|n| n.0.binary_search_by_key(&b, |e| e.0))
            {
                Some(Ok(i)) => self
                    .nodes
                    .get(node)
                    .and_then(|n| n.0.get(i))
                    .map_or(0, |e| e.1 as usize),
                Some(Err(i)) => {
                    let id = self.nodes.len();
                    self.nodes.push((Vec::new(), None));
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.0.insert(i, (b, id as u32));
                    }
                    id
                }
                None => return,
            };
            node = next;
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.1 = Some(value);
        }
    }
    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let edges = &self.nodes.get(node)?.0;
        let i = edges.binary_search_by_key(&b, |e| e.0).ok()?;
        edges.get(i).map(|e| e.1 as usize)
    }
    fn value(&self, node: usize) -> Option<u32> {
        self.nodes.get(node).and_then(|n| n.1)
    }
    /// Length of the longest key that is a prefix of `s` (0 if none).
    fn longest_prefix(&self, s: &[u8]) -> usize {
        // llama.cpp's get_longest_prefix: how far the walk goes, value or not
        let mut node = 0;
        let mut len = 0;
        for &b in s {
            match self.child(node, b) {
                Some(c) => {
                    node = c;
                    len += 1;
                }
                None => break,
            }
        }
        len
    }
}

/// Unigram state built once per vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct Ugm {
    xcda: Vec<u32>,
    replacements: Vec<u8>,
    tokens: Trie,
    user_defined: Trie,
    unknown_score: f64,
}

impl Ugm {
    /// Reads the character map and builds the token tries.
    pub(crate) fn from_metadata(md: &Metadata, vocab: &Vocab) -> Result<Self, TokenizerError> {
        let (mut xcda, mut replacements) = (Vec::new(), Vec::new());
        let map: Option<Vec<u8>> = match md.get("tokenizer.ggml.precompiled_charsmap") {
            None => None,
            Some(Value::Array(Array::U8(v))) => Some(v.clone()),
            Some(Value::Array(Array::I8(v))) => Some(v.iter().map(|&b| b as u8).collect()),
            Some(_) => return Err(TokenizerError::BadCharsMap("not a byte array")),
        };
        if let Some(map) = map {
            let head: [u8; 4] = map
                .get(..4)
                .and_then(|h| h.try_into().ok())
                .ok_or(TokenizerError::BadCharsMap("too small"))?;
            let blob = u32::from_le_bytes(head) as usize;
            if !matches!(blob.checked_add(4), Some(end) if end < map.len()) {
                return Err(TokenizerError::BadCharsMap("XCDA size past the end"));
            }
            xcda = map
                .get(4..4 + blob)
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            replacements = map.get(4 + blob..).unwrap_or_default().to_vec();
        }
        let (mut tokens, mut user_defined) = (Trie::new(), Trie::new());
        let mut min_score = f32::MAX;
        for (id, text) in vocab.texts.iter().enumerate() {
            let id = id as u32;
            let a = vocab.attr(id);
            if a & attr::NORMAL != 0 {
                min_score = min_score.min(vocab.scores.get(id as usize).copied().unwrap_or(0.0));
            }
            if a & (attr::NORMAL | attr::USER_DEFINED | attr::UNUSED) != 0 {
                tokens.insert(text.as_bytes(), id);
            }
            if a & attr::USER_DEFINED != 0 {
                user_defined.insert(text.as_bytes(), 0);
            }
        }
        Ok(Self {
            xcda,
            replacements,
            tokens,
            user_defined,
            unknown_score: f64::from(min_score - 10.0),
        })
    }

    fn node(&self, i: usize) -> Option<u32> {
        self.xcda.get(i).copied()
    }

    /// The normalized text and input bytes consumed at `off`.
    fn normalize_prefix<'a>(&'a self, input: &'a [u8], off: usize) -> (&'a [u8], usize) {
        let rest = input.get(off..).unwrap_or_default();
        let ud = self.user_defined.longest_prefix(rest);
        if ud > 0 {
            return (rest.get(..ud).unwrap_or_default(), ud);
        }
        let (mut best_len, mut best_off) = (0, 0);
        if let Some(root) = self.node(0) {
            let base = |p: u32| (p >> 10) << ((p & (1 << 9)) >> 6);
            let mut idx = base(root) as usize;
            for (k, &c) in rest.iter().enumerate() {
                if c == 0 {
                    break;
                }
                idx ^= c as usize;
                let Some(p) = self.node(idx) else { break };
                if p & ((1 << 31) | 0xFF) != u32::from(c) {
                    break;
                }
                let leaf = (p >> 8) & 1 == 1;
                idx ^= base(p) as usize;
                if leaf {
                    let Some(v) = self.node(idx) else { break };
                    best_len = k + 1;
                    best_off = (v & ((1 << 31) - 1)) as usize;
                }
            }
        }
        if best_len > 0 {
            if let Some(r) = self.replacements.get(best_off..) {
                if let Some(n) = r.iter().position(|&b| b == 0) {
                    return (r.get(..n).unwrap_or_default(), best_len);
                }
            }
        }
        let n = rest.first().map_or(0, |&b| utf8_len(b)).min(rest.len());
        (rest.get(..n).unwrap_or_default(), n.max(1))
    }

    fn normalize(&self, vocab: &Vocab, input: &str) -> Vec<u8> {
        let space: &[u8] = if vocab.escape_whitespaces {
            "\u{2581}".as_bytes()
        } else {
            b" "
        };
        let prepend = !vocab.treat_whitespace_as_suffix && vocab.add_space_prefix;
        let append = vocab.treat_whitespace_as_suffix && vocab.add_space_prefix;
        let merge = vocab.remove_extra_whitespaces;
        let (mut prepended, mut in_word) = (false, false);
        let bytes = input.as_bytes();
        let mut out = Vec::with_capacity(bytes.len() * 3);
        let mut off = 0;
        while off < bytes.len() {
            let (norm, consumed) = self.normalize_prefix(bytes, off);
            for &c in norm {
                if c != b' ' {
                    if !in_word {
                        in_word = true;
                        if (prepend && !prepended) || merge {
                            out.extend_from_slice(space);
                            prepended = true;
                        }
                    }
                    out.push(c);
                } else {
                    in_word = false;
                    if !merge {
                        out.extend_from_slice(space);
                    }
                }
            }
            off += consumed;
        }
        if append {
            out.extend_from_slice(space);
        }
        out
    }

    /// Appends the tokens of `text`.
    pub(crate) fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let norm = self.normalize(vocab, text);
        let len = norm.len();
        if len == 0 {
            return;
        }
        let unk = vocab.special.unk.unwrap_or(u32::MAX);
        // (token, start offset, score) of the best tokenization ending here
        let mut best = vec![(unk, 0usize, -f64::MAX); len + 1];
        best[0] = (unk, 0, 0.0);
        let mut off = 0;
        while off < len {
            let n = norm.get(off).map_or(1, |&b| utf8_len(b)).min(len - off);
            let cur = best.get(off).map_or(0.0, |b| b.2);
            let mut single = false;
            let mut node = norm.get(off).and_then(|&b| self.tokens.child(0, b));
            let mut p = off + 1;
            while let Some(nd) = node {
                if p > len {
                    break;
                }
                if let Some(id) = self.tokens.value(nd) {
                    if p - off == n {
                        single = true;
                    }
                    let s = if vocab.attr(id) & attr::USER_DEFINED != 0 {
                        0.0
                    } else {
                        f64::from(vocab.scores.get(id as usize).copied().unwrap_or(0.0))
                    };
                    if let Some(slot) = best.get_mut(p) {
                        if cur + s > slot.2 {
                            *slot = (id, off, cur + s);
                        }
                    }
                }
                node = norm.get(p).and_then(|&b| self.tokens.child(nd, b));
                p += 1;
            }
            if !single {
                if let Some(slot) = best.get_mut(off + n) {
                    if cur + self.unknown_score > slot.2 {
                        *slot = (unk, off, cur + self.unknown_score);
                    }
                }
            }
            off += n;
        }
        let start = out.len();
        let mut prev_unknown = false;
        let mut at = len;
        while let Some(&(id, from, _)) = best.get(at) {
            let is_unknown = id == unk;
            if !(prev_unknown && is_unknown) && id != u32::MAX {
                out.push(id);
            }
            if from == 0 || from >= at {
                break;
            }
            prev_unknown = is_unknown;
            at = from;
        }
        if let Some(tail) = out.get_mut(start..) {
            tail.reverse();
        }
    }
}
