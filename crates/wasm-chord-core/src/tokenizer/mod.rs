//! The tokenizer, built from GGUF metadata alone (`tokenizer.ggml.*`) and
//! exact against llama.cpp's `llama-vocab.cpp`.
//!
//! - SentencePiece-style BPE (`model = llama`: Llama 2, Gemma): score-driven
//!   merges, `<0xXX>` byte fallback, `▁` for spaces, `add_space_prefix`.
//! - GPT-2 byte-level BPE (`model = gpt2`): merge ranks, the byte-to-unicode
//!   map, and the pre-tokenizer cascade chosen by `tokenizer.ggml.pre`
//!   (an unknown name is an error, [`TokenizerError::UnknownPreTokenizer`]).
//! - WordPiece (`model = bert`) and Unigram (`model = t5`).
//!
//! Special tokens are cut out of the text first (control tokens only with
//! `parse_special`); BOS/EOS are added per `add_bos_token`/`add_eos_token`.
//! Decoding goes token → piece ([`Tokenizer::token_to_piece`]), whole
//! sequences ([`Tokenizer::decode`]) or streams ([`StreamDecoder`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wasm_chord_core::gguf::GgufFile;
//! use wasm_chord_core::tokenizer::Tokenizer;
//! let f = GgufFile::open("model.gguf")?;
//! let tok = Tokenizer::from_metadata(f.metadata())?;
//! let ids = tok.encode("Hello world", true, false);
//! assert_eq!(tok.decode(&ids, true, false)?, "Hello world");
//! # Ok(()) }
//! ```

mod bpe;
mod detokenize;
mod error;
mod pretokenize;
mod special;
mod splitters;
mod spm;
mod stream;
mod ugm;
mod unicode;
mod unicode_data;
mod vocab;
mod wpm;

pub use error::TokenizerError;
pub use stream::{StreamDecoder, Utf8Stream};
pub use vocab::{attr, SpecialIds, VocabKind};

use crate::gguf::Metadata;
use special::Fragment;
use vocab::Vocab;

/// A tokenizer for one vocabulary. Cheap to share (`&Tokenizer` is all that
/// encoding and decoding need); holds no file handles, so it works in wasm.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: Vocab,
    pre: Option<pretokenize::PreTokenizer>,
    merges: Option<bpe::Merges>,
    ugm: Option<ugm::Ugm>,
    /// Piece of every token as rendered with `special = true`.
    pieces: Vec<Vec<u8>>,
}

impl Tokenizer {
    /// Builds the tokenizer from a model's metadata.
    pub fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let vocab = Vocab::from_metadata(md)?;
        let (mut pre, mut merges, mut ugm) = (None, None, None);
        match vocab.kind {
            VocabKind::Bpe => {
                let spec = pretokenize::PreSpec::from_name(&vocab.pre)?;
                pre = Some(pretokenize::PreTokenizer::new(&spec)?);
                merges = Some(bpe::Merges::from_metadata(md, &vocab)?);
            }
            VocabKind::Ugm => ugm = Some(ugm::Ugm::from_metadata(md, &vocab)?),
            VocabKind::Spm | VocabKind::Wpm => {}
        }
        if vocab.add_bos && vocab.special.bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken("BOS"));
        }
        if vocab.add_eos && vocab.special.eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken("EOS"));
        }
        let pieces = (0..vocab.n_tokens() as u32)
            .map(|id| detokenize::piece(&vocab, id))
            .collect();
        Ok(Self {
            vocab,
            pre,
            merges,
            ugm,
            pieces,
        })
    }

    /// Tokenizes `text` like `llama_tokenize`: with `add_special`, BOS/EOS
    /// are added where the model asks for them (`add_bos_token`,
    /// `add_eos_token`); with `parse_special`, control-token texts such as
    /// `<start_of_turn>` in `text` become those tokens (user-defined tokens
    /// always do).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let frags = special::partition(v, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let bos = if v.kind == VocabKind::Wpm {
            true
        } else {
            v.add_bos
        };
        if add_special && bos {
            out.extend(v.special.bos);
        }
        match v.kind {
            VocabKind::Spm => self.encode_spm(text, &frags, &mut out),
            VocabKind::Bpe => self.encode_bpe(text, &frags, &mut out),
            VocabKind::Wpm | VocabKind::Ugm => {
                for f in &frags {
                    match *f {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text { start, len } => {
                            let t = text.get(start..start + len).unwrap_or_default();
                            match &self.ugm {
                                Some(u) => u.tokenize(v, t, &mut out),
                                None => wpm::tokenize(v, t, &mut out),
                            }
                        }
                    }
                }
            }
        }
        if add_special {
            match v.kind {
                VocabKind::Wpm => out.extend(v.special.sep),
                _ if v.add_eos => out.extend(v.special.eos),
                _ => {}
            }
        }
        out
    }

    fn encode_spm(&self, text: &str, frags: &[Fragment], out: &mut Vec<u32>) {
        let v = &self.vocab;
        let mut prev_special = true;
        let mut buf = String::new();
        for f in frags {
            match *f {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text { start, len } => {
                    buf.clear();
                    if v.add_space_prefix && prev_special {
                        buf.push('\u{2581}');
                    }
                    for c in text.get(start..start + len).unwrap_or_default().chars() {
                        buf.push(if c == ' ' { '\u{2581}' } else { c });
                    }
                    spm::tokenize(v, &buf, out);
                    prev_special = false;
                }
            }
        }
    }

    fn encode_bpe(&self, text: &str, frags: &[Fragment], out: &mut Vec<u32>) {
        let (Some(pre), Some(merges)) = (&self.pre, &self.merges) else {
            return;
        };
        let v = &self.vocab;
        let table = unicode::byte_to_char_table();
        let mut session = bpe::BpeSession::default();
        let mut word = String::new();
        let mut utf8 = [0u8; 4];
        for f in frags {
            let Fragment::Text { start, len } = *f else {
                if let Fragment::Token(id) = *f {
                    out.push(id);
                }
                continue;
            };
            let frag = text.get(start..start + len).unwrap_or_default();
            let cpts: Vec<u32> = frag.chars().map(u32::from).collect();
            let mut pos = 0;
            for n in pre.split_lengths(&cpts) {
                word.clear();
                for &c in cpts.get(pos..pos + n).unwrap_or_default() {
                    let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
                    for &b in ch.encode_utf8(&mut utf8).as_bytes() {
                        word.push(table[b as usize]);
                    }
                }
                pos += n;
                session.word(v, merges, true, &word, out);
            }
        }
    }

    /// The bytes of token `id`. With `special == false`, control and unknown
    /// tokens render as nothing (as in llama.cpp).
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<&[u8], TokenizerError> {
        let p = self
            .pieces
            .get(id as usize)
            .ok_or(TokenizerError::InvalidTokenId(id))?;
        if !special && self.vocab.attr(id) & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Ok(&[]);
        }
        Ok(p)
    }

    /// Decodes `ids` to bytes like `llama_detokenize`: `remove_special`
    /// drops a leading BOS / trailing EOS the model adds itself;
    /// `unparse_special` renders control tokens as their text.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>, TokenizerError> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), v.special.bos) {
                if first == bos {
                    remove_space = false;
                    ids = ids.get(1..).unwrap_or_default();
                }
            }
        }
        if remove_special && v.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), v.special.eos) {
                if last == eos {
                    ids = ids.get(..ids.len() - 1).unwrap_or_default();
                }
            }
        }
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let mut p = self.token_to_piece(id, unparse_special)?;
            if remove_space {
                if let Some(rest) = p.strip_prefix(b" ") {
                    p = rest;
                }
            }
            remove_space = false;
            out.extend_from_slice(p);
        }
        if v.clean_spaces {
            detokenize::clean_spaces(&mut out);
        }
        Ok(out)
    }

    /// [`decode_bytes`](Self::decode_bytes) as text; invalid UTF-8 (a
    /// sequence cut in the middle of a character) becomes U+FFFD.
    pub fn decode(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<String, TokenizerError> {
        let b = self.decode_bytes(ids, remove_special, unparse_special)?;
        Ok(match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A streaming decoder (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, special)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.n_tokens()
    }
    /// The algorithm (`tokenizer.ggml.model`).
    pub fn kind(&self) -> VocabKind {
        self.vocab.kind
    }
    /// The pre-tokenizer name (`tokenizer.ggml.pre`; empty if absent).
    pub fn pre(&self) -> &str {
        &self.vocab.pre
    }
    /// All special ids.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.vocab.special
    }
    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.special.bos
    }
    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.special.eos
    }
    /// End-of-turn token.
    pub fn eot(&self) -> Option<u32> {
        self.vocab.special.eot
    }
    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.vocab.special.pad
    }
    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.special.unk
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }
    /// Whether the model asks for a separator token after the text
    /// (`add_sep_token`; used by embedding models, not added by [`encode`](Self::encode)
    /// except for WordPiece vocabularies).
    pub fn add_sep(&self) -> bool {
        self.vocab.add_sep
    }
    /// Whether generation ends at `id` (EOS, EOT, EOM and the end-of-turn
    /// tokens llama.cpp recognises by text).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }
    /// The end-of-generation tokens, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }
    /// The stored text of token `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }
    /// The id of a token text, if it is one.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id_of(text)
    }
    /// The attribute bits of `id` (see [`attr`]; 0 if out of range).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.vocab.attr(id)
    }
    /// The score of `id` (0 if out of range).
    pub fn score(&self, id: u32) -> f32 {
        self.vocab.scores.get(id as usize).copied().unwrap_or(0.0)
    }
}
