//! Hand-written splitters for the pre-tokenizer patterns that need
//! lookahead, ported from llama.cpp's `unicode_regex_split_custom_*`.
//!
//! All work on code points: `offsets` are the lengths of the pieces left by
//! the previous step; the result are the lengths of the new pieces.

use super::unicode::{self, CptFlags};

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

/// A view of one piece with llama.cpp's out-of-range conventions.
struct Piece<'a> {
    cpts: &'a [u32],
    ini: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Piece<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if self.ini <= pos && pos < self.end {
            self.cpts.get(pos).copied().unwrap_or(OUT_OF_RANGE)
        } else {
            OUT_OF_RANGE
        }
    }
    #[inline]
    fn flags(&self, pos: usize) -> CptFlags {
        if self.ini <= pos && pos < self.end {
            self.cpts
                .get(pos)
                .map_or(CptFlags(0), |&c| unicode::flags(c))
        } else {
            CptFlags(0)
        }
    }
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end.saturating_sub(self.prev_end);
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

fn for_each_piece(
    cpts: &[u32],
    offsets: &[usize],
    mut f: impl FnMut(&mut Piece<'_>),
) -> Vec<usize> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut start = 0;
    for &len in offsets {
        let end = (start + len).min(cpts.len());
        let mut p = Piece {
            cpts,
            ini: start,
            end,
            prev_end: start,
            out: &mut out,
        };
        f(&mut p);
        start = end;
    }
    out
}

/// Contractions: `'s 't 'm 'd` (2 code points) or `'re 've 'll` (3), with
/// `lower` applied to the letters. Returns the match length.
#[inline]
fn contraction(p: &Piece<'_>, pos: usize, lower: fn(u32) -> u32) -> usize {
    if p.cpt(pos) != '\'' as u32 || pos + 1 >= p.end {
        return 0;
    }
    let n = lower(p.cpt(pos + 1));
    if [b's', b't', b'm', b'd'].iter().any(|&c| n == c as u32) {
        return 2;
    }
    if pos + 2 < p.end {
        let nn = lower(p.cpt(pos + 2));
        let is = |a: u8, b: u8| n == a as u32 && nn == b as u32;
        if is(b'r', b'e') || is(b'v', b'e') || is(b'l', b'l') {
            return 3;
        }
    }
    0
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
pub(crate) fn gpt2(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    for_each_piece(cpts, offsets, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let cpt = p.cpt(pos);
            let flags = p.flags(pos);
            let c = contraction(p, pos, |c| c);
            if c > 0 {
                pos += p.add(pos + c);
                continue;
            }
            let space = usize::from(cpt == ' ' as u32);
            let mut f2 = if space == 1 { p.flags(pos + 1) } else { flags };
            if f2.is_letter() {
                pos += space;
                while f2.is_letter() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            if f2.is_number() {
                pos += space;
                while f2.is_number() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            let other =
                |f: CptFlags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any();
            if other(f2) {
                pos += space;
                while other(f2) {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            let mut n_ws = 0;
            while p.flags(pos + n_ws).is_whitespace() {
                n_ws += 1;
            }
            if n_ws > 1 && p.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                p.add(pos);
                continue;
            }
            if n_ws > 0 {
                pos += n_ws;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    })
}

/// Llama 3 (`max_digits` 3) and Qwen 2 (`max_digits` 1):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
pub(crate) fn llama3(cpts: &[u32], offsets: &[usize], max_digits: usize) -> Vec<usize> {
    split_llama3_like(cpts, offsets, max_digits, false)
}

/// Qwen 3.5: as Qwen 2, with combining marks (`\p{M}`) inside letter runs.
pub(crate) fn qwen35(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    split_llama3_like(cpts, offsets, 1, true)
}

fn split_llama3_like(
    cpts: &[u32],
    offsets: &[usize],
    max_digits: usize,
    marks: bool,
) -> Vec<usize> {
    let is_cr_lf = |c: u32| c == '\r' as u32 || c == '\n' as u32;
    let letterish = move |f: CptFlags| f.is_letter() || (marks && f.is_accent_mark());
    for_each_piece(cpts, offsets, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let cpt = p.cpt(pos);
            let flags = p.flags(pos);
            let c = contraction(p, pos, unicode::to_lower);
            if c > 0 {
                pos += p.add(pos + c);
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(is_cr_lf(cpt) || flags.is_number())
                && (letterish(flags) || letterish(p.flags(pos + 1)))
            {
                pos += 1;
                while letterish(p.flags(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if flags.is_number() {
                let mut ini = pos;
                while p.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= max_digits {
                        p.add(pos);
                        ini = pos;
                    }
                }
                p.add(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let mut f2 = if cpt == ' ' as u32 {
                p.flags(pos + 1)
            } else {
                flags
            };
            let other = |f: CptFlags| !(f.is_whitespace() || letterish(f) || f.is_number());
            if other(f2) && flags.any() {
                pos += usize::from(cpt == ' ' as u32);
                while other(f2) && f2.any() {
                    pos += 1;
                    f2 = p.flags(pos);
                }
                while is_cr_lf(p.cpt(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_crlf_end = 0;
            while p.flags(pos + n_ws).is_whitespace() {
                if is_cr_lf(p.cpt(pos + n_ws)) {
                    last_crlf_end = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            if last_crlf_end > 0 {
                pos = last_crlf_end;
                p.add(pos);
                continue;
            }
            if n_ws > 1 && p.cpt(pos + n_ws) != OUT_OF_RANGE {
                pos += n_ws - 1;
                p.add(pos);
                continue;
            }
            if n_ws > 0 {
                pos += n_ws;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    })
}

/// `[^\n]+|[\n]+`
pub(crate) fn newlines(cpts: &[u32], offsets: &[usize]) -> Vec<usize> {
    for_each_piece(cpts, offsets, |p| {
        let mut pos = p.ini;
        while pos < p.end {
            let nl = p.cpt(pos) == '\n' as u32;
            let run = pos;
            while pos < p.end && (p.cpt(pos) == '\n' as u32) == nl {
                pos += 1;
            }
            p.out.push(pos - run);
        }
    })
}
