//! The vocabulary read from `tokenizer.ggml.*`: token texts, scores, types,
//! special ids and the flags that steer encoding, as llama.cpp's
//! `llama_vocab::impl::load` derives them.

use super::error::TokenizerError;
use crate::gguf::{Array, Metadata, Value};
use std::collections::HashMap;

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub mod attr {
    /// Unknown-token marker (`<unk>`).
    pub const UNKNOWN: u16 = 1 << 0;
    /// Declared unused, or a control token whose text says "unused".
    pub const UNUSED: u16 = 1 << 1;
    /// An ordinary piece of text.
    pub const NORMAL: u16 = 1 << 2;
    /// A control token (`<s>`, `<|eot_id|>`): never produced from plain text.
    pub const CONTROL: u16 = 1 << 3;
    /// A user-defined token: always split out of text before tokenizing.
    pub const USER_DEFINED: u16 = 1 << 4;
    /// A byte-fallback token (`<0x0A>`).
    pub const BYTE: u16 = 1 << 5;
    /// Strip whitespace to the left when splitting it out of text.
    pub const LSTRIP: u16 = 1 << 7;
    /// Strip whitespace to the right when splitting it out of text.
    pub const RSTRIP: u16 = 1 << 8;
}

/// Which tokenization algorithm the vocabulary uses (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// SentencePiece BPE with byte fallback (`llama`): Llama 2, Gemma.
    Spm,
    /// GPT-2 byte-level BPE (`gpt2`): Llama 3, Qwen, GPT-2, Falcon, ...
    Bpe,
    /// WordPiece (`bert`).
    Wpm,
    /// Unigram (`t5`).
    Ugm,
}

/// Special token ids; `None` where the model has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn.
    pub eot: Option<u32>,
    /// End of message (tool calls).
    pub eom: Option<u32>,
    /// Unknown token.
    pub unk: Option<u32>,
    /// Separator.
    pub sep: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Mask.
    pub mask: Option<u32>,
    /// Fill-in-the-middle: prefix.
    pub fim_pre: Option<u32>,
    /// Fill-in-the-middle: suffix.
    pub fim_suf: Option<u32>,
    /// Fill-in-the-middle: middle.
    pub fim_mid: Option<u32>,
    /// Fill-in-the-middle: padding.
    pub fim_pad: Option<u32>,
    /// Fill-in-the-middle: repository.
    pub fim_rep: Option<u32>,
    /// Fill-in-the-middle: file separator.
    pub fim_sep: Option<u32>,
}

/// Everything the encoders and decoders read.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    pub(crate) kind: VocabKind,
    pub(crate) pre: String,
    pub(crate) texts: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u16>,
    pub(crate) token_to_id: HashMap<String, u32>,
    pub(crate) max_token_len: usize,
    pub(crate) special: SpecialIds,
    pub(crate) eog: Vec<u32>,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_sep: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) remove_extra_whitespaces: bool,
    pub(crate) escape_whitespaces: bool,
    pub(crate) treat_whitespace_as_suffix: bool,
    pub(crate) clean_spaces: bool,
    pub(crate) ignore_merges: bool,
    pub(crate) lowercase: bool,
    pub(crate) strip_accents: bool,
    /// Control, user-defined and unknown tokens, longest text first.
    pub(crate) special_by_len: Vec<u32>,
}

const TEXT_EOT: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const TEXT_EOM: &[&str] = &["<|eom_id|>"];
const TEXT_FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const TEXT_FIM_REP: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const TEXT_FIM_SEP: &[&str] = &["<|file_sep|>"];
const TEXT_EOG: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn opt_bool(md: &Metadata, key: &str) -> Result<Option<bool>, TokenizerError> {
    if md.contains(key) {
        Ok(Some(md.get_bool(key)?))
    } else {
        Ok(None)
    }
}

fn opt_count(md: &Metadata, key: &str) -> Result<Option<u64>, TokenizerError> {
    if md.contains(key) {
        Ok(Some(md.get_count(key)?))
    } else {
        Ok(None)
    }
}

fn scores_of(md: &Metadata, n: usize) -> Result<Vec<f32>, TokenizerError> {
    const KEY: &str = "tokenizer.ggml.scores";
    let scores: Vec<f32> = match md.get(KEY) {
        None => return Ok(vec![0.0; n]),
        Some(Value::Array(Array::I32(v))) => v.iter().map(|&s| s as f32).collect(),
        Some(_) => md.get_f32_array(KEY)?.to_vec(),
    };
    if scores.len() < n {
        return Err(TokenizerError::ArrayTooShort {
            key: KEY,
            expected: n,
            found: scores.len(),
        });
    }
    Ok(scores)
}

fn attrs_of(md: &Metadata, n: usize) -> Result<Vec<u16>, TokenizerError> {
    const KEY: &str = "tokenizer.ggml.token_type";
    if !md.contains(KEY) {
        return Ok(vec![attr::NORMAL; n]);
    }
    let types = md.get_i32_array(KEY)?;
    if types.len() < n {
        return Err(TokenizerError::ArrayTooShort {
            key: KEY,
            expected: n,
            found: types.len(),
        });
    }
    Ok(types
        .iter()
        .take(n)
        .map(|&t| match t {
            1 => attr::NORMAL,
            2 => attr::UNKNOWN,
            3 => attr::CONTROL,
            4 => attr::USER_DEFINED,
            5 => attr::UNUSED,
            6 => attr::BYTE,
            _ => 0,
        })
        .collect())
}

impl Vocab {
    /// Reads the vocabulary; `kind`-specific defaults as in llama.cpp.
    pub(crate) fn from_metadata(md: &Metadata) -> Result<Self, TokenizerError> {
        let model = md.get_str("tokenizer.ggml.model")?;
        let pre = match md.get("tokenizer.ggml.pre") {
            Some(_) => md.get_str("tokenizer.ggml.pre")?.to_owned(),
            None => String::new(),
        };
        let kind = match model {
            "llama" => VocabKind::Spm,
            "gpt2" => VocabKind::Bpe,
            "bert" => VocabKind::Wpm,
            "t5" => VocabKind::Ugm,
            other => return Err(TokenizerError::UnknownModel(other.to_owned())),
        };
        let raw = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = raw.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::VocabTooLarge(n));
        }
        let scores = scores_of(md, n)?;
        let mut attrs = attrs_of(md, n)?;
        let mut texts = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        let mut max_token_len = 0;
        for (i, t) in raw.iter().enumerate() {
            let t = if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            };
            max_token_len = max_token_len.max(t.len());
            token_to_id.insert(t.clone(), i as u32);
            texts.push(t);
        }

        // defaults per kind (llama.cpp `load`)
        let mut s = SpecialIds::default();
        let (mut add_bos, mut add_eos, mut add_sep) = (false, false, false);
        let mut add_space_prefix = false;
        let mut clean_spaces = false;
        let mut ignore_merges = false;
        match kind {
            VocabKind::Spm => {
                (s.bos, s.eos, s.unk) = (Some(1), Some(2), Some(0));
                add_bos = true;
                add_space_prefix = true;
            }
            VocabKind::Wpm => {
                (s.bos, s.unk, s.sep, s.pad, s.mask) =
                    (Some(101), Some(100), Some(102), Some(0), Some(103));
                add_bos = true;
                add_sep = true;
                clean_spaces = true;
            }
            VocabKind::Bpe => {
                (s.bos, s.eos) = (Some(11), Some(11));
                let p = super::pretokenize::PreSpec::from_name(&pre)?;
                if p.no_bos() {
                    s.bos = None;
                }
                clean_spaces = p.clean_spaces();
                ignore_merges = p.ignore_merges();
                add_bos = p.add_bos();
                add_sep = p.add_sep();
            }
            VocabKind::Ugm => {
                (s.eos, s.unk, s.pad) = (Some(1), Some(2), Some(0));
                add_eos = true;
            }
        }
        if let Some(v) = opt_bool(md, "tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }
        let remove_extra_whitespaces =
            opt_bool(md, "tokenizer.ggml.remove_extra_whitespaces")?.unwrap_or(false);

        // default ids outside the vocabulary are disabled; explicit ones are errors
        let n_vocab = n;
        let slots: [(&'static str, &mut Option<u32>); 17] = [
            ("tokenizer.ggml.bos_token_id", &mut s.bos),
            ("tokenizer.ggml.eos_token_id", &mut s.eos),
            ("tokenizer.ggml.eot_token_id", &mut s.eot),
            ("tokenizer.ggml.eom_token_id", &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", &mut s.sep),
            ("tokenizer.ggml.padding_token_id", &mut s.pad),
            ("tokenizer.ggml.mask_token_id", &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", &mut s.fim_sep),
            ("tokenizer.ggml.prefix_token_id", &mut None),
            ("tokenizer.ggml.suffix_token_id", &mut None),
            ("tokenizer.ggml.middle_token_id", &mut None),
        ];
        let mut deprecated_fim = [None; 3];
        for (i, (key, slot)) in slots.into_iter().enumerate() {
            if slot.is_some_and(|id| id as usize >= n_vocab) {
                *slot = None;
            }
            if let Some(id) = opt_count(md, key)? {
                if id >= n_vocab as u64 {
                    return Err(TokenizerError::SpecialIdOutOfRange { key, id, n_vocab });
                }
                match i {
                    14..=16 => deprecated_fim[i - 14] = Some(id as u32),
                    _ => *slot = Some(id as u32),
                }
            }
        }
        // deprecated keys override, as they come later in llama.cpp's list
        s.fim_pre = deprecated_fim[0].or(s.fim_pre);
        s.fim_suf = deprecated_fim[1].or(s.fim_suf);
        s.fim_mid = deprecated_fim[2].or(s.fim_mid);

        if let Some(v) = opt_bool(md, "tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = opt_bool(md, "tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if let Some(v) = opt_bool(md, "tokenizer.ggml.add_sep_token")? {
            add_sep = v;
        }
        let lowercase = opt_bool(md, "tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
        let strip_accents =
            opt_bool(md, "tokenizer.ggml.normalizer.strip_accents")?.unwrap_or(lowercase);

        // auto-detect special tokens by text, lowest id first (deterministic)
        let find = |list: &[&str]| -> Option<u32> {
            list.iter()
                .filter_map(|t| token_to_id.get(*t).copied())
                .min()
        };
        for (slot, list) in [
            (&mut s.eot, TEXT_EOT),
            (&mut s.eom, TEXT_EOM),
            (&mut s.fim_pad, TEXT_FIM_PAD),
            (&mut s.fim_rep, TEXT_FIM_REP),
            (&mut s.fim_sep, TEXT_FIM_SEP),
        ] {
            if slot.is_none() {
                *slot = find(list);
                if let Some(a) = slot.and_then(|id| attrs.get_mut(id as usize)) {
                    *a |= attr::CONTROL;
                }
            }
        }
        // control tokens whose text says "unused"
        for (a, t) in attrs.iter_mut().zip(&texts) {
            if *a & attr::CONTROL != 0 && t.contains("unused") {
                *a |= attr::UNUSED;
            }
        }
        let mut eog: Vec<u32> = [s.fim_pad, s.fim_rep, s.fim_sep]
            .into_iter()
            .flatten()
            .collect();
        for t in TEXT_EOG {
            if let Some(&id) = token_to_id.get(*t) {
                eog.push(id);
                if let Some(a) = attrs.get_mut(id as usize) {
                    *a |= attr::CONTROL;
                }
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(a) = token_to_id
                .get(t)
                .and_then(|&id| attrs.get_mut(id as usize))
            {
                *a = attr::USER_DEFINED;
            }
        }
        eog.extend([s.eos, s.eot, s.eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let text_of = |id: u32| texts.get(id as usize).map(String::as_str);
        let has = |eog: &[u32], t: &str| eog.iter().copied().find(|&id| text_of(id) == Some(t));
        if let Some(end) = has(&eog, "<|end|>") {
            let ret_call = has(&eog, "<|return|>").is_some()
                && (has(&eog, "<|call|>").is_some() || has(&eog, "<|calls|>").is_some());
            let call_flush = (has(&eog, "<|call|>").is_some() || has(&eog, "<|calls|>").is_some())
                && has(&eog, "<|flush|>").is_some();
            if ret_call || call_flush {
                eog.retain(|&id| id != end);
                if let Some(a) = attrs.get_mut(end as usize) {
                    *a = attr::USER_DEFINED;
                }
            }
        }
        if let Some(s_id) = has(&eog, "</s>") {
            if has(&eog, "<|tool_response>").is_some() || has(&eog, "<|plamo:eos|>").is_some() {
                eog.retain(|&id| id != s_id);
                if let Some(a) = attrs.get_mut(s_id as usize) {
                    *a = attr::NORMAL;
                }
            }
        }

        let mut special_by_len: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs
                    .get(id as usize)
                    .is_some_and(|a| a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            })
            .collect();
        special_by_len
            .sort_by_key(|&id| std::cmp::Reverse(texts.get(id as usize).map_or(0, String::len)));

        // per-model attributes llama.cpp sets by name
        let model_name = match md.get("general.name") {
            Some(Value::String(s)) => s.to_lowercase(),
            _ => String::new(),
        };
        if model_name.contains("phi-3") || model_name.contains("phi3") {
            for &id in &special_by_len {
                if let Some(a) = attrs.get_mut(id as usize) {
                    *a |= attr::RSTRIP;
                }
            }
            for (t, on) in [
                ("</s>", true),
                ("<unk>", false),
                ("<s>", false),
                ("<|endoftext|>", false),
            ] {
                if let Some(a) = token_to_id
                    .get(t)
                    .and_then(|&id| attrs.get_mut(id as usize))
                {
                    *a = if on {
                        *a | attr::RSTRIP
                    } else {
                        *a & !attr::RSTRIP
                    };
                }
            }
        }

        Ok(Self {
            kind,
            pre,
            texts,
            scores,
            attrs,
            token_to_id,
            max_token_len,
            special: s,
            eog,
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            remove_extra_whitespaces,
            escape_whitespaces: kind != VocabKind::Bpe,
            treat_whitespace_as_suffix: false,
            clean_spaces,
            ignore_merges,
            lowercase,
            strip_accents,
            special_by_len,
        })
    }

    /// Number of tokens.
    pub(crate) fn n_tokens(&self) -> usize {
        self.texts.len()
    }

    /// The id of a token text.
    #[inline]
    pub(crate) fn id_of(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Attribute bits of `id` (0 when out of range).
    #[inline]
    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    /// The byte-fallback token for byte `b` (`<0xXX>`, or the byte itself as
    /// a one-character token), as llama.cpp's `byte_to_token`.
    pub(crate) fn byte_to_token(&self, b: u8) -> Option<u32> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let buf = [
            b'<',
            b'0',
            b'x',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
            b'>',
        ];
        let hex = std::str::from_utf8(&buf).ok()?;
        if let Some(id) = self.id_of(hex) {
            return Some(id);
        }
        // vocabularies without byte tokens: the byte as text
        let c = [b];
        std::str::from_utf8(&c).ok().and_then(|s| self.id_of(s))
    }
}
