//! Pre-tokenizers of byte-level BPE vocabularies: the regex cascade that
//! llama.cpp selects from `tokenizer.ggml.pre` (`llm_tokenizer_bpe`), and the
//! splitting engine of its `unicode_regex_split`.
//!
//! Each pattern of a cascade splits every piece left by the previous one;
//! both the matches and the text between them become pieces. The patterns
//! with lookahead that llama.cpp hand-codes (GPT-2, Llama 3, Qwen 2) are
//! hand-coded here the same way ([`super::splitters`]); the others run on the
//! `regex` crate over the same "collapsed" text llama.cpp feeds `std::regex`:
//! one byte per code point, with every non-ASCII code point replaced by a
//! byte that stands for its category.

use super::error::TokenizerError;
use super::splitters;
use super::unicode::{self, CptFlags};

const GPT2: &str = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const NEWLINES: &str = "[^\\n]+|[\\n]+";

const P_DEFAULT: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    GPT2,
    "\\p{N}+",
    "[0-9][0-9][0-9]",
];
const P_LLAMA3: &[&str] = &[LLAMA3];
const P_QWEN2: &[&str] = &[QWEN2];
const P_QWEN35: &[&str] = &[QWEN35];
const P_GPT2: &[&str] = &[GPT2];
const P_STARCODER: &[&str] = &["\\p{N}", GPT2];
const P_FALCON: &[&str] = &["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"];
const P_DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    "\\p{N}+",
];
const P_DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    "\\p{N}",
];
const P_PORO: &[&str] = &[" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+"];
const P_VIKING: &[&str] = &[
    " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+",
    "\\p{N}",
];
const P_LAGUNA: &[&str] = &[NEWLINES, QWEN2];

/// What `tokenizer.ggml.pre` selects: the pattern cascade and the flags
/// llama.cpp sets along with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreSpec {
    patterns: &'static [&'static str],
    clean_spaces: bool,
    ignore_merges: bool,
    add_bos: bool,
    add_sep: bool,
    no_bos: bool,
}

impl PreSpec {
    /// The spec for a `tokenizer.ggml.pre` name (empty: `default`).
    pub(crate) fn from_name(name: &str) -> Result<Self, TokenizerError> {
        let spec = |patterns, clean_spaces| PreSpec {
            patterns,
            clean_spaces,
            ignore_merges: false,
            add_bos: false,
            add_sep: false,
            no_bos: false,
        };
        Ok(match name {
            "" | "default" => spec(P_DEFAULT, true),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => PreSpec {
                ignore_merges: true,
                add_bos: true,
                ..spec(P_LLAMA3, true)
            },
            "dbrx" | "smaug-bpe" => spec(P_LLAMA3, true),
            "chatglm-bpe" => PreSpec {
                no_bos: true,
                ..spec(P_LLAMA3, true)
            },
            "glm4" | "glm5" => PreSpec {
                no_bos: true,
                ignore_merges: true,
                ..spec(P_LLAMA3, true)
            },
            "deepseek-llm" => spec(P_DEEPSEEK_LLM, false),
            "deepseek-coder" => spec(P_DEEPSEEK_CODER, false),
            "falcon" => spec(P_FALCON, true),
            "mpt" | "olmo" | "jais" | "exaone4" | "gpt-2" | "phi-2" | "jina-es" | "jina-de"
            | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" => {
                spec(P_GPT2, true)
            }
            "trillion" | "granite-docling" => spec(P_GPT2, false),
            "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => PreSpec {
                add_sep: true,
                ..spec(P_GPT2, true)
            },
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                spec(P_STARCODER, true)
            }
            "command-r" | "smollm" => spec(P_STARCODER, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open"
            | "grok-2" => spec(P_QWEN2, false),
            "stablelm2" | "megrez" => spec(P_QWEN2, true),
            "qwen35" => spec(P_QWEN35, false),
            "laguna" => spec(P_LAGUNA, false),
            "poro-chat" => spec(P_PORO, false),
            "bloom" | "gpt3-finnish" => spec(P_PORO, true),
            "viking" => spec(P_VIKING, false),
            other => return Err(TokenizerError::UnknownPreTokenizer(other.to_owned())),
        })
    }

    /// Whether decoding cleans up spaces before punctuation (`clean_spaces`).
    pub(crate) fn clean_spaces(&self) -> bool {
        self.clean_spaces
    }
    /// Whether a whole piece that is a token skips the merges.
    pub(crate) fn ignore_merges(&self) -> bool {
        self.ignore_merges
    }
    /// Whether the family adds BOS by default.
    pub(crate) fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether the family adds SEP by default.
    pub(crate) fn add_sep(&self) -> bool {
        self.add_sep
    }
    /// Whether the family has no BOS token by default.
    pub(crate) fn no_bos(&self) -> bool {
        self.no_bos
    }
}

/// One step of a cascade.
#[derive(Debug, Clone)]
enum Step {
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    Newlines,
    /// A pattern with `\p{..}` classes, over the collapsed bytes.
    Collapsed(regex::bytes::Regex),
    /// A pattern without classes, over the code points (non-ASCII
    /// whitespace replaced by U+000B, as llama.cpp does for `std::wregex`).
    Wide(regex::Regex),
}

/// A compiled pre-tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

const UCATS: &[(&str, u16)] = &[
    ("\\p{N}", CptFlags::NUMBER),
    ("\\p{L}", CptFlags::LETTER),
    ("\\p{P}", CptFlags::PUNCTUATION),
    ("\\p{M}", CptFlags::ACCENT_MARK),
    ("\\p{S}", CptFlags::SYMBOL),
    ("\\p{Lu}", CptFlags::LETTER),
    ("\\p{Ll}", CptFlags::LETTER),
    ("\\p{Lt}", CptFlags::LETTER),
    ("\\p{Lm}", CptFlags::LETTER),
    ("\\p{Lo}", CptFlags::LETTER),
];

/// The collapsed byte of a category, and the ASCII members of the class.
fn ucat_collapsed(cat: u16) -> Option<(u8, &'static str)> {
    Some(match cat {
        CptFlags::NUMBER => (0xD1, "0-9"),
        CptFlags::LETTER => (0xD2, "A-Za-z"),
        CptFlags::PUNCTUATION => (0xD3, "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"),
        CptFlags::ACCENT_MARK => (0xD4, ""),
        CptFlags::SYMBOL => (0xD5, "\\$\\+<->\\^`\\|~"),
        _ => return None,
    })
}

/// llama.cpp's rewrite of a pattern for the collapsed text.
fn collapse_pattern(re: &str) -> String {
    let b = re.as_bytes();
    let mut out = String::from("(?-u)");
    let mut inside = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'[' && (i == 0 || b[i - 1] != b'\\') {
            out.push('[');
            inside = true;
            i += 1;
            continue;
        }
        if inside && c == b']' && i > 0 && b[i - 1] != b'\\' {
            out.push(']');
            inside = false;
            i += 1;
            continue;
        }
        if c == b'\\' && i + 3 < b.len() && b[i + 1] == b'p' && b[i + 2] == b'{' {
            if let Some(close) = re[i + 3..].find('}').map(|k| k + i + 3) {
                if close <= i + 10 {
                    let pat = &re[i..=close];
                    if let Some((_, cat)) = UCATS.iter().find(|(p, _)| *p == pat) {
                        if let Some((byte, ascii)) = ucat_collapsed(*cat) {
                            if !inside {
                                out.push('[');
                            }
                            out.push_str(&format!("\\x{byte:02X}{ascii}"));
                            if !inside {
                                out.push(']');
                            }
                            i = close + 1;
                            continue;
                        }
                    }
                }
            }
        }
        // patterns that reach here are ASCII (checked by the caller)
        out.push(c as char);
        i += 1;
    }
    out
}

fn compile_err(pattern: &str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Regex {
        pattern: pattern.to_owned(),
        message: e.to_string(),
    }
}

impl PreTokenizer {
    /// Compiles the cascade of `spec`.
    pub(crate) fn new(spec: &PreSpec) -> Result<Self, TokenizerError> {
        let mut steps = Vec::with_capacity(spec.patterns.len());
        for &p in spec.patterns {
            let step = match p {
                GPT2 => Step::Gpt2,
                LLAMA3 => Step::Llama3,
                QWEN2 => Step::Qwen2,
                QWEN35 => Step::Qwen35,
                NEWLINES => Step::Newlines,
                _ if UCATS.iter().any(|(u, _)| p.contains(u)) && p.is_ascii() => {
                    let c = collapse_pattern(p);
                    Step::Collapsed(regex::bytes::Regex::new(&c).map_err(|e| compile_err(p, e))?)
                }
                _ => Step::Wide(regex::Regex::new(p).map_err(|e| compile_err(p, e))?),
            };
            steps.push(step);
        }
        Ok(Self { steps })
    }

    /// Splits `text` into pieces (as code-point counts, in order).
    pub(crate) fn split_lengths(&self, cpts: &[u32]) -> Vec<usize> {
        let mut offsets = vec![cpts.len()];
        let mut collapsed: Option<Vec<u8>> = None;
        let mut wide: Option<(String, Vec<usize>)> = None;
        for step in &self.steps {
            offsets = match step {
                Step::Gpt2 => splitters::gpt2(cpts, &offsets),
                Step::Llama3 => splitters::llama3(cpts, &offsets, 3),
                Step::Qwen2 => splitters::llama3(cpts, &offsets, 1),
                Step::Qwen35 => splitters::qwen35(cpts, &offsets),
                Step::Newlines => splitters::newlines(cpts, &offsets),
                Step::Collapsed(re) => {
                    let hay = collapsed.get_or_insert_with(|| collapse_text(cpts));
                    regex_split(&offsets, |s, e| {
                        let sub = hay.get(s..e).unwrap_or_default();
                        re.find_iter(sub)
                            .map(|m| (s + m.start(), s + m.end()))
                            .collect()
                    })
                }
                Step::Wide(re) => {
                    let (hay, byte_at) = wide.get_or_insert_with(|| wide_text(cpts));
                    let byte_at: &[usize] = byte_at;
                    regex_split(&offsets, |s, e| {
                        let (bs, be) = (
                            byte_at.get(s).copied().unwrap_or(0),
                            byte_at.get(e).copied().unwrap_or(0),
                        );
                        let sub = hay.get(bs..be).unwrap_or_default();
                        re.find_iter(sub)
                            .map(|m| {
                                (
                                    cpt_index(byte_at, bs + m.start()),
                                    cpt_index(byte_at, bs + m.end()),
                                )
                            })
                            .collect()
                    })
                }
            };
        }
        offsets
    }
}

/// Code-point index of a byte offset that starts a code point.
fn cpt_index(byte_at: &[usize], byte: usize) -> usize {
    byte_at.partition_point(|&b| b < byte)
}

/// Splits each chunk by the matches `find(start, end)` returns (absolute
/// code-point ranges), keeping the text between matches as pieces.
fn regex_split(
    offsets: &[usize],
    mut find: impl FnMut(usize, usize) -> Vec<(usize, usize)>,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0;
    for &len in offsets {
        let end = start + len;
        let mut prev = start;
        for (ms, me) in find(start, end) {
            if ms > prev {
                out.push(ms - prev);
            }
            if me > ms {
                out.push(me - ms);
            }
            prev = me.max(prev);
        }
        if end > prev {
            out.push(end - prev);
        }
        start = end;
    }
    out
}

fn collapse_text(cpts: &[u32]) -> Vec<u8> {
    cpts.iter()
        .map(|&c| {
            if c < 128 {
                return c as u8;
            }
            let f = unicode::flags(c);
            if f.is_whitespace() {
                0x0B
            } else {
                ucat_collapsed(f.category()).map_or(0xD0, |(b, _)| b)
            }
        })
        .collect()
}

fn wide_text(cpts: &[u32]) -> (String, Vec<usize>) {
    let mut s = String::with_capacity(cpts.len());
    let mut byte_at = Vec::with_capacity(cpts.len() + 1);
    for &c in cpts {
        byte_at.push(s.len());
        let ch = if c > 0x7F && unicode::flags(c).is_whitespace() {
            '\u{0B}'
        } else {
            char::from_u32(c).unwrap_or('\u{FFFD}')
        };
        s.push(ch);
    }
    byte_at.push(s.len());
    (s, byte_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, text: &str) -> Vec<String> {
        let p = PreTokenizer::new(&PreSpec::from_name(name).unwrap()).unwrap();
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let mut pos = 0;
        p.split_lengths(&cpts)
            .into_iter()
            .map(|n| {
                let s: String = cpts[pos..pos + n]
                    .iter()
                    .map(|&c| char::from_u32(c).unwrap())
                    .collect();
                pos += n;
                s
            })
            .collect()
    }

    #[test]
    fn gpt2_and_llama3_pieces() {
        assert_eq!(
            split("gpt-2", "Hello world's  end"),
            ["Hello", " world", "'s", " ", " end"]
        );
        assert_eq!(
            split("llama3", "abc 12345\n\n x"),
            ["abc", " ", "123", "45", "\n\n", " x"]
        );
        assert_eq!(split("qwen2", "a123"), ["a", "1", "2", "3"]);
    }

    #[test]
    fn regex_cascades() {
        assert_eq!(
            split("default", "a,b 1234"),
            ["a", ",", "b", " ", "123", "4"]
        );
        assert_eq!(split("deepseek-coder", "ab\ncd1"), ["ab", "\n", "cd", "1"]);
        assert_eq!(split("falcon", "x=1234"), ["x", "=", "123", "4"]);
    }

    #[test]
    fn collapse_rewrites_classes() {
        assert_eq!(collapse_pattern("[^\\s\\p{L}]"), "(?-u)[^\\s\\xD2A-Za-z]");
        assert_eq!(collapse_pattern("\\p{N}+"), "(?-u)[\\xD10-9]+");
    }

    #[test]
    fn unknown_name_is_an_error() {
        assert!(
            matches!(PreSpec::from_name("no-such"), Err(TokenizerError::UnknownPreTokenizer(n)) if n == "no-such")
        );
    }
}
