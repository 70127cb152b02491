//! Code point classes, lower-casing, NFD and the GPT-2 byte map, following
//! llama.cpp's `unicode.cpp` over its own tables (see [`super::unicode_data`]).

use super::unicode_data::{LOWERCASE, NFD_RANGES, RANGES_FLAGS, WHITESPACE};
use std::sync::OnceLock;

/// Number of Unicode code points.
const MAX_CODEPOINTS: u32 = 0x11_0000;

/// The flags of one code point (llama.cpp's `unicode_cpt_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CptFlags(pub(crate) u16);

impl CptFlags {
    pub(crate) const UNDEFINED: u16 = 0x0001;
    pub(crate) const NUMBER: u16 = 0x0002;
    pub(crate) const LETTER: u16 = 0x0004;
    pub(crate) const ACCENT_MARK: u16 = 0x0010;
    pub(crate) const PUNCTUATION: u16 = 0x0020;
    pub(crate) const SYMBOL: u16 = 0x0040;
    pub(crate) const CONTROL: u16 = 0x0080;
    pub(crate) const CATEGORIES: u16 = 0x00FF;
    pub(crate) const WHITESPACE: u16 = 0x0100;

    #[inline]
    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    #[inline]
    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    #[inline]
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    #[inline]
    pub(crate) fn is_accent_mark(self) -> bool {
        self.0 & Self::ACCENT_MARK != 0
    }
    #[inline]
    pub(crate) fn is_punctuation(self) -> bool {
        self.0 & Self::PUNCTUATION != 0
    }
    #[inline]
    pub(crate) fn is_symbol(self) -> bool {
        self.0 & Self::SYMBOL != 0
    }
    #[inline]
    pub(crate) fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }
    /// Any bit set (llama.cpp's `as_uint() != 0`); false only for positions
    /// outside the current word.
    #[inline]
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }
    /// The category bits alone.
    #[inline]
    pub(crate) fn category(self) -> u16 {
        self.0 & Self::CATEGORIES
    }
}

fn flags_slow(cpt: u32) -> u16 {
    if cpt >= MAX_CODEPOINTS {
        return CptFlags::UNDEFINED;
    }
    let i = RANGES_FLAGS.partition_point(|&(start, _)| start <= cpt);
    let mut f = match i.checked_sub(1).and_then(|i| RANGES_FLAGS.get(i)) {
        Some(&(_, f)) => f,
        None => CptFlags::UNDEFINED,
    };
    if WHITESPACE.binary_search(&cpt).is_ok() {
        f |= CptFlags::WHITESPACE;
    }
    f
}

fn bmp_table() -> &'static [u16] {
    static TABLE: OnceLock<Box<[u16]>> = OnceLock::new();
    TABLE.get_or_init(|| (0..0x1_0000u32).map(flags_slow).collect())
}

/// The flags of `cpt` (undefined beyond U+10FFFF).
#[inline]
pub(crate) fn flags(cpt: u32) -> CptFlags {
    match bmp_table().get(cpt as usize) {
        Some(&f) => CptFlags(f),
        None => CptFlags(flags_slow(cpt)),
    }
}

/// llama.cpp's `unicode_tolower`: its simple lower-case map.
pub(crate) fn to_lower(cpt: u32) -> u32 {
    match LOWERCASE.binary_search_by_key(&cpt, |&(c, _)| c) {
        Ok(i) => LOWERCASE.get(i).map_or(cpt, |&(_, l)| l),
        Err(_) => cpt,
    }
}

/// llama.cpp's `unicode_cpts_normalize_nfd`: first code point of the NFD
/// decomposition (what its WordPiece accent stripping uses).
pub(crate) fn nfd_first(cpt: u32) -> u32 {
    let i = NFD_RANGES.partition_point(|&(first, _, _)| first <= cpt);
    match i.checked_sub(1).and_then(|i| NFD_RANGES.get(i)) {
        Some(&(first, last, nfd)) if first <= cpt && cpt <= last => nfd,
        _ => cpt,
    }
}

/// GPT-2's byte-to-unicode map: each byte as the `char` that stands for it
/// in byte-level BPE vocabularies.
pub(crate) fn byte_to_char_table() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut n = 0u32;
        for (b, slot) in t.iter_mut().enumerate() {
            let b = b as u32;
            let direct = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let cpt = if direct {
                b
            } else {
                n += 1;
                255 + n
            };
            *slot = char::from_u32(cpt).unwrap_or('\u{FFFD}');
        }
        t
    })
}

/// The byte a byte-level BPE `char` stands for, if any.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    static REMAPPED: OnceLock<[u8; 68]> = OnceLock::new();
    let cpt = c as u32;
    if cpt < 256 {
        let direct = (0x21..=0x7E).contains(&cpt)
            || (0xA1..=0xAC).contains(&cpt)
            || (0xAE..=0xFF).contains(&cpt);
        return if direct { u8::try_from(cpt).ok() } else { None };
    }
    let table = REMAPPED.get_or_init(|| {
        let mut r = [0u8; 68];
        let mut n = 0;
        for (b, &ch) in byte_to_char_table().iter().enumerate() {
            if ch as u32 >= 256 {
                if let Some(slot) = r.get_mut(n) {
                    *slot = b as u8;
                }
                n += 1;
            }
        }
        r
    });
    let k = usize::try_from(cpt - 256).ok()?;
    table.get(k).copied()
}

/// Length of the UTF-8 sequence that starts with byte `b`, as llama.cpp's
/// `unicode_len_utf8` (1 for continuation bytes).
#[inline]
pub(crate) fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_llama_cpp_tables() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags(' ' as u32).is_whitespace());
        assert!(flags(0x3000).is_whitespace());
        assert!(flags('!' as u32).is_punctuation());
        assert!(flags('$' as u32).is_symbol());
        assert!(flags(0x0301).is_accent_mark());
        assert!(flags('中' as u32).is_letter());
        assert!(flags(0x1F600).is_symbol());
        assert_eq!(flags(0x11_0000).0, CptFlags::UNDEFINED);
        assert_eq!(to_lower('Q' as u32), 'q' as u32);
        assert_eq!(to_lower('Σ' as u32), 'σ' as u32);
        assert_eq!(nfd_first('é' as u32), 'e' as u32);
    }

    #[test]
    fn byte_map_round_trips() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('中'), None);
    }
}
