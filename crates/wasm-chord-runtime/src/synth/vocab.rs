//! Tokenizer metadata of a synthetic model: copied from a vocabulary GGUF,
//! or a small self-made SentencePiece (`llama`) vocabulary.

use super::SynthError;
use wasm_chord_core::gguf::{Array, Metadata, Value};

/// SentencePiece token types (llama.cpp's `llama_token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const BYTE: i32 = 6;

/// Frequent English pieces, so that text tokenizes into more than bytes.
const PIECES: &[&str] = &[
    "▁the",
    "▁of",
    "▁and",
    "▁to",
    "▁a",
    "▁in",
    "▁is",
    "▁that",
    "▁for",
    "▁it",
    "▁was",
    "▁on",
    "▁with",
    "▁as",
    "▁be",
    "▁at",
    "▁by",
    "▁this",
    "▁from",
    "▁or",
    "▁an",
    "▁are",
    "▁not",
    "▁have",
    "▁but",
    "▁one",
    "▁all",
    "▁were",
    "▁they",
    "▁which",
    "▁you",
    "▁he",
    "▁she",
    "▁we",
    "▁his",
    "▁her",
    "▁their",
    "▁time",
    "▁there",
    "▁can",
    "▁more",
    "▁will",
    "▁if",
    "▁no",
    "▁out",
    "▁so",
    "▁up",
    "▁about",
    "▁what",
    "▁when",
    "▁who",
    "▁would",
    "▁been",
    "▁has",
    "▁had",
    "▁than",
    "▁its",
    "▁into",
    "▁only",
    "▁other",
    "▁new",
    "▁some",
    "▁could",
    "▁these",
    "▁two",
    "▁may",
    "▁first",
    "▁then",
    "▁do",
    "▁any",
    "▁like",
    "▁my",
    "▁now",
    "▁over",
    "▁such",
    "▁our",
    "▁man",
    "▁me",
    "▁even",
    "▁most",
    "▁made",
    "▁after",
    "▁also",
    "▁did",
    "▁many",
    "▁before",
    "▁must",
    "▁through",
    "▁back",
    "▁years",
    "▁where",
    "▁much",
    "▁your",
    "▁way",
    "▁well",
    "▁down",
    "▁should",
    "▁because",
    "▁each",
    "▁just",
    "▁those",
    "▁people",
    "▁how",
    "▁too",
    "▁little",
    "▁state",
    "▁good",
    "▁very",
    "▁make",
    "▁world",
    "▁still",
    "▁own",
    "▁see",
    "▁men",
    "▁work",
    "▁long",
    "▁get",
    "▁here",
    "▁between",
    "▁both",
    "▁life",
    "▁being",
    "▁under",
    "▁never",
    "▁day",
    "▁same",
    "▁another",
    "▁know",
    "▁while",
    "▁last",
    "▁might",
    "▁us",
    "▁great",
    "▁old",
    "▁year",
    "▁off",
    "▁come",
    "▁since",
    "▁against",
    "▁go",
    "▁came",
    "▁right",
    "▁used",
    "▁take",
    "▁three",
    "▁upon",
    "▁once",
    "▁capital",
    "▁France",
    "▁Paris",
    "▁Once",
    "▁The",
    "▁In",
    "▁It",
    "▁He",
    "▁She",
    "▁They",
    "▁We",
    "▁I",
    "▁A",
    "▁This",
    "▁there",
    "▁story",
    "▁king",
    "▁city",
    "ing",
    "ed",
    "er",
    "es",
    "en",
    "al",
    "an",
    "re",
    "on",
    "in",
    "at",
    "or",
    "ly",
    "ion",
    "th",
    "he",
    "nd",
    "ou",
    "it",
    "is",
    "ar",
    "st",
    "te",
    "se",
    "le",
    "ve",
    "ch",
    "me",
    "ne",
    "de",
    "ri",
    "ro",
    "ll",
    "ma",
    "ce",
    "co",
    "ic",
    "ent",
    "ter",
    "ers",
    "est",
    "ation",
    "ment",
    "ness",
    "able",
    "ful",
    "less",
    "ous",
    "ive",
    "ity",
    "ight",
    "ould",
    "▁",
    ".",
    ",",
    "!",
    "?",
    ";",
    ":",
    "'",
    "\"",
    "-",
    "(",
    ")",
];

/// A self-made SentencePiece vocabulary of exactly `n` tokens: `<unk>`,
/// `<s>`, `</s>`, the 256 byte tokens, single letters and digits (bare and
/// after `▁`), common pieces, then numbered filler pieces. `n` must be at least 259.
pub fn self_made(n: usize) -> Result<Metadata, SynthError> {
    if n < 259 {
        return Err(SynthError::VocabTooSmall(n));
    }
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![UNKNOWN, CONTROL, CONTROL];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(BYTE);
    }
    let letters = ('a'..='z').chain('A'..='Z').chain('0'..='9');
    let singles = letters
        .clone()
        .map(|c| c.to_string())
        .chain(letters.map(|c| format!("▁{c}")));
    let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let mut filler = 0usize;
    let mut words = singles.chain(PIECES.iter().map(|s| (*s).to_owned()));
    while tokens.len() < n {
        let piece = match words.next() {
            Some(w) => w,
            None => {
                filler += 1;
                format!("▁w{filler}")
            }
        };
        if seen.insert(piece.clone()) {
            tokens.push(piece);
            types.push(NORMAL);
        }
    }
    // Scores: specials and bytes 0, pieces by decreasing "frequency", longer
    // pieces first so that merges prefer them.
    let scores: Vec<f32> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (t, &ty))| {
            if ty == NORMAL {
                t.chars().count() as f32 - i as f32 * 1e-3
            } else {
                0.0
            }
        })
        .collect();
    let mut md = Metadata::new();
    md.insert("tokenizer.ggml.model", Value::String("llama".into()));
    md.insert("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    md.insert("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
    md.insert("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    md.insert("tokenizer.ggml.unknown_token_id", Value::U32(0));
    md.insert("tokenizer.ggml.bos_token_id", Value::U32(1));
    md.insert("tokenizer.ggml.eos_token_id", Value::U32(2));
    md.insert("tokenizer.ggml.add_bos_token", Value::Bool(true));
    md.insert("tokenizer.ggml.add_eos_token", Value::Bool(false));
    Ok(md)
}

/// Every `tokenizer.*` key of `source`, and its vocabulary size.
pub fn copied(source: &Metadata) -> Result<(Metadata, usize), SynthError> {
    let mut md = Metadata::new();
    for (k, v) in source.iter() {
        if k.starts_with("tokenizer.") {
            md.insert(k, v.clone());
        }
    }
    let n = match source.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => return Err(SynthError::NoVocabulary),
    };
    if n == 0 {
        return Err(SynthError::NoVocabulary);
    }
    Ok((md, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_chord_core::tokenizer::Tokenizer;

    #[test]
    fn self_made_vocab_has_the_size_asked_and_tokenizes() {
        let md = self_made(512).unwrap();
        let (_, n) = copied(&md).unwrap();
        assert_eq!(n, 512);
        let big = self_made(1000).unwrap();
        assert_eq!(copied(&big).unwrap().1, 1000);
        assert!(self_made(100).is_err());
        let tok = Tokenizer::from_metadata(&md).unwrap();
        let ids = tok.encode("Once upon a time, the king of France", true, false);
        assert_eq!(ids.first(), Some(&1));
        // Pieces are used, not only bytes.
        assert!(ids.len() < 30, "{ids:?}");
        assert!(ids.iter().any(|&i| i > 258 && i < 512), "{ids:?}");
        assert!(ids.iter().all(|&i| i < 512));
    }
}
