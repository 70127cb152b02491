//! Streaming detokenization: text as tokens arrive, never splitting a UTF-8
//! sequence between two tokens.

use super::error::TokenizerError;
use super::Tokenizer;

/// Turns a stream of token ids into text chunks that are always whole UTF-8.
///
/// Byte-fallback tokens (`<0xE4>`, `<0xB8>`, `<0xAD>`) and byte-level BPE
/// tokens can each hold part of one character; the decoder keeps such an
/// incomplete tail until the tokens that complete it arrive. Bytes that can
/// never become valid UTF-8 come out as U+FFFD at once, and [`finish`]
/// flushes a tail that was never completed the same way.
///
/// Pieces are rendered as [`Tokenizer::token_to_piece`] does; unlike
/// [`Tokenizer::decode`] no leading space is stripped and no space clean-up
/// is applied, as fits text generated after a prompt.
///
/// [`finish`]: StreamDecoder::finish
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    special: bool,
    bytes: Utf8Stream,
}

/// Bytes in, whole UTF-8 text out: the state of [`StreamDecoder`] without
/// the tokenizer, for callers that keep a generation alive between calls
/// (the browser package) and cannot hold a borrow.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder over `tok`; `special` renders control tokens as their text.
    pub fn new(tok: &'a Tokenizer, special: bool) -> Self {
        Self {
            tok,
            special,
            bytes: Utf8Stream::default(),
        }
    }

    /// Adds one token; returns the text that is now complete (maybe empty).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let piece = self.tok.token_to_piece(id, self.special)?;
        Ok(self.bytes.push(piece))
    }

    /// Flushes what is left (an incomplete tail becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        self.bytes.finish()
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        self.bytes.pending()
    }
}

impl Utf8Stream {
    /// Adds the bytes of one token; returns the text now complete (maybe
    /// empty). Bytes that can never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        self.take_complete()
    }

    /// Flushes what is left (an incomplete tail becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // an incomplete sequence at the end: wait for more
                        None => {
                            rest = bad;
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = bad.get(n..).unwrap_or_default();
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        out
    }
}
