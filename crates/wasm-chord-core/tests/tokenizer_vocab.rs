//! llama.cpp's own tokenizer test vectors (`models/ggml-vocab-*.gguf` with
//! `.inp`/`.out`, tokenized without BOS), plus round-trip and no-panic
//! checks on random input for every vocabulary.
//!
//! The vocabularies come from `scripts/fetch-vocab.sh` (cached), or from the
//! folder in `WASMCHORD_VOCAB_DIR`. When they cannot be had the tests fail
//! under `CI=true` and are skipped (with a message) otherwise.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::{Tokenizer, VocabKind};

fn vocab_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("WASMCHORD_VOCAB_DIR") {
            return Some(PathBuf::from(d));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/fetch-vocab.sh"))
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let s = String::from_utf8_lossy(&o.stdout);
                s.lines().last().map(|l| PathBuf::from(l.trim()))
            }
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI: llama.cpp vocabularies cannot be fetched: {why}"
                );
                eprintln!("skipping: llama.cpp vocabularies not available ({why})");
                None
            }
        }
    })
    .as_deref()
}

fn load(name: &str) -> Option<(Tokenizer, PathBuf)> {
    let dir = vocab_dir()?;
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tok = Tokenizer::from_metadata(f.metadata()).unwrap_or_else(|e| panic!("{name}: {e}"));
    Some((tok, path))
}

/// Reads `.inp`/`.out` as llama.cpp's `test-tokenizer-0` does.
fn read_tests(path: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).expect("read .inp");
    let out = std::fs::read_to_string(path.with_extension("gguf.out")).expect("read .out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(n) => {
                texts.push(inp[pos..pos + n].to_owned());
                pos += n + sep.len();
            }
            None => {
                texts.push(inp[pos..].to_owned());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{}: .inp and .out disagree",
        path.display()
    );
    texts.into_iter().zip(ids).collect()
}

fn check_vectors(name: &str) {
    let Some((tok, path)) = load(name) else {
        return;
    };
    let tests = read_tests(&path);
    assert!(tests.len() > 20);
    let mut failures = Vec::new();
    for (text, want) in &tests {
        let got = tok.encode(text, false, false);
        if &got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} differ:\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n")
    );
}

macro_rules! vectors {
    ($($test:ident => $name:literal),* $(,)?) => {
        $( #[test] fn $test() { check_vectors($name); } )*
    };
}

vectors! {
    vectors_llama_spm => "llama-spm",
    vectors_llama_bpe => "llama-bpe",
    vectors_qwen2 => "qwen2",
    vectors_qwen35 => "qwen35",
    vectors_gpt_2 => "gpt-2",
    vectors_falcon => "falcon",
    vectors_starcoder => "starcoder",
    vectors_deepseek_llm => "deepseek-llm",
    vectors_deepseek_coder => "deepseek-coder",
    vectors_command_r => "command-r",
    vectors_refact => "refact",
    vectors_mpt => "mpt",
    vectors_phi_3 => "phi-3",
    vectors_bert_bge => "bert-bge",
}

/// A seeded generator of text mixing scripts, whitespace, digits and emoji.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn char(&mut self) -> char {
        let ranges: &[(u32, u32)] = &[
            (0x20, 0x7E),
            (0x20, 0x7E),
            (0x30, 0x39),
            (0x09, 0x0D),
            (0xA0, 0x24F),
            (0x300, 0x36F),
            (0x391, 0x3C9),
            (0x400, 0x4FF),
            (0x600, 0x6FF),
            (0x900, 0x97F),
            (0x3040, 0x30FF),
            (0x4E00, 0x9FFF),
            (0xAC00, 0xD7A3),
            (0x1F300, 0x1F64F),
            (0x2000, 0x206F),
            (0x1, 0x10FFFF),
        ];
        loop {
            let (a, b) = ranges[self.below(ranges.len() as u64) as usize];
            let c = a + self.below(u64::from(b - a + 1)) as u32;
            if let Some(ch) = char::from_u32(c) {
                if ch != '\u{2581}' {
                    return ch;
                }
            }
        }
    }
    fn text(&mut self, max: u64) -> String {
        let n = self.below(max + 1);
        let mut s = String::new();
        for _ in 0..n {
            if self.below(6) == 0 {
                s.push(' ');
            }
            s.push(self.char());
        }
        s
    }
}

/// GPT-2's byte-to-unicode map (an independent copy for the test).
fn gpt2_byte_char(b: u8) -> char {
    let direct = |c: u32| {
        (0x21..=0x7E).contains(&c) || (0xA1..=0xAC).contains(&c) || (0xAE..=0xFF).contains(&c)
    };
    if direct(u32::from(b)) {
        return char::from(b);
    }
    let n = (0..u32::from(b)).filter(|&c| !direct(c)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// Whether the vocabulary can represent every byte of `text` (byte-level
/// BPE vocabularies without all 256 byte symbols drop the others, as
/// llama.cpp does).
fn covered(tok: &Tokenizer, text: &str) -> bool {
    match tok.kind() {
        VocabKind::Bpe => text
            .bytes()
            .all(|b| tok.token_id(&gpt2_byte_char(b).to_string()).is_some()),
        _ => true,
    }
}

/// Decoding the pieces of `encode(x)` gives `x` back, byte for byte.
fn check_round_trip(name: &str) {
    let Some((tok, _)) = load(name) else { return };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut checked = 0;
    for _ in 0..300 {
        let text = rng.text(60);
        if !covered(&tok, &text) {
            continue;
        }
        checked += 1;
        let ids = tok.encode(&text, false, false);
        let mut bytes = Vec::new();
        for &id in &ids {
            bytes.extend_from_slice(tok.token_to_piece(id, true).unwrap());
        }
        // SentencePiece adds one space in front; decoding drops it again
        let expect = match tok.kind() {
            VocabKind::Spm
                if tok
                    .token_to_piece(tok.encode(" ", false, false)[0], true)
                    .unwrap()
                    == b" " =>
            {
                format!(" {text}")
            }
            _ => text.clone(),
        };
        let got = String::from_utf8_lossy(&bytes);
        assert!(
            got == expect || got.strip_prefix(' ') == Some(&text),
            "{name}: {text:?} -> {ids:?} -> {got:?}"
        );
        // the streaming decoder yields the same text, in whole characters
        let mut stream = tok.stream_decoder(true);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.push(id).unwrap());
        }
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, got, "{name}: stream");
    }
    assert!(
        checked > 100,
        "{name}: only {checked} samples representable"
    );
}

/// Any input bytes (made valid UTF-8 as callers must) tokenize and decode
/// without panicking, with and without special-token parsing.
fn check_no_panic(name: &str) {
    let Some((tok, _)) = load(name) else { return };
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    for i in 0..200 {
        let n = rng.below(80) as usize;
        let raw: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
        let text = String::from_utf8_lossy(&raw);
        let ids = tok.encode(&text, i % 2 == 0, i % 3 == 0);
        assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
        tok.decode(&ids, true, true).unwrap();
        let mut s = tok.stream_decoder(false);
        for &id in &ids {
            s.push(id).unwrap();
        }
        s.finish();
    }
    assert!(tok.decode(&[u32::MAX], false, false).is_err());
}

macro_rules! random_checks {
    ($($rt:ident, $np:ident => $name:literal),* $(,)?) => {
        $(
            #[test] fn $rt() { check_round_trip($name); }
            #[test] fn $np() { check_no_panic($name); }
        )*
    };
}

random_checks! {
    round_trip_llama_spm, no_panic_llama_spm => "llama-spm",
    round_trip_llama_bpe, no_panic_llama_bpe => "llama-bpe",
    round_trip_qwen2, no_panic_qwen2 => "qwen2",
    round_trip_gpt_2, no_panic_gpt_2 => "gpt-2",
    round_trip_falcon, no_panic_falcon => "falcon",
    round_trip_starcoder, no_panic_starcoder => "starcoder",
    round_trip_deepseek_llm, no_panic_deepseek_llm => "deepseek-llm",
    round_trip_deepseek_coder, no_panic_deepseek_coder => "deepseek-coder",
    round_trip_command_r, no_panic_command_r => "command-r",
    round_trip_mpt, no_panic_mpt => "mpt",
}
