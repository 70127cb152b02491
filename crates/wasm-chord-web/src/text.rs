//! Streamed text: whole UTF-8 characters only, and nothing that could
//! still become a stop text. Both are the shared pieces (core's
//! `Utf8Stream`, the runtime's `StopFilter`), which own their state (no
//! borrow of the tokenizer) so that a generation can live in a JavaScript
//! object between calls.

pub use wasm_chord_core::tokenizer::Utf8Stream;
pub use wasm_chord_runtime::StopFilter;

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
