//! Streamed text: whole UTF-8 characters only, and nothing that could
//! still become a stop text. These follow `wasm_chord_core`'s
//! `StreamDecoder` and the runtime's stop handling exactly; they own their
//! state (no borrow of the tokenizer) so that a generation can live in a
//! JavaScript object between calls.

/// Bytes of token pieces in, complete UTF-8 out.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds the bytes of one token; returns the text now complete. Bytes
    /// that can never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
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
        self.pending = rest.to_vec();
        out
    }

    /// What is left (an incomplete tail becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Holds back text that could still turn into a stop text.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    /// A filter for `stops` (empty texts are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds text; returns what can be emitted now and whether a stop text
    /// was found (then the text is everything before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held.get(..at).unwrap_or_default().to_owned();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a prefix of some stop text.
        let held = &self.held;
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(held.len() + 1))
                    .rev()
                    .find(|&k| {
                        held.is_char_boundary(held.len() - k)
                            && s.starts_with(&held[held.len() - k..])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let cut = held.len() - keep;
        let out = held[..cut].to_owned();
        self.held.drain(..cut);
        (out, false)
    }

    /// The text still held.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_over_tokens_come_out_whole() {
        let mut u = Utf8Stream::default();
        let bytes = "日本".as_bytes();
        assert_eq!(u.push(&bytes[..2]), "");
        assert_eq!(u.push(&bytes[2..4]), "日");
        assert_eq!(u.push(&bytes[4..]), "本");
        assert_eq!(u.push(&[0xFF, b'a']), "\u{FFFD}a");
        assert_eq!(u.push(&[0xE6]), "");
        assert_eq!(u.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_text_split_over_pieces_is_never_emitted() {
        let mut f = StopFilter::new(vec!["</s>".into(), String::new()]);
        let mut out = String::new();
        for p in ["Hello", " wor", "ld<", "/"] {
            let (t, stop) = f.push(p);
            assert!(!stop);
            out.push_str(&t);
        }
        assert_eq!(out, "Hello world");
        assert_eq!(f.push("s>tail"), (String::new(), true));
        let mut f = StopFilter::new(vec!["STOP".into()]);
        assert_eq!(f.push("a S").0, "a ");
        assert_eq!(f.push("Tx").0, "STx");
        assert_eq!(f.finish(), "");
        let mut f = StopFilter::new(vec!["é!".into()]);
        assert_eq!(f.push("aé"), ("a".into(), false));
        assert_eq!(f.push("?"), ("é?".into(), false));
    }
}
