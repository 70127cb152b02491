//! A bounds-checked little-endian reader over a prefix of a file.

use super::GgufError;

/// Reads from `buf`, a prefix of a file of `file_len` bytes.
///
/// A read past `file_len` is [`GgufError::UnexpectedEof`] (the file is
/// damaged); a read inside the file but past the prefix is
/// [`GgufError::Truncated`] (the caller may retry with a longer prefix).
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: u64,
}

impl<'a> Cursor<'a> {
    /// A cursor at offset 0. A prefix longer than `file_len` is cut to it.
    pub(crate) fn new(prefix: &'a [u8], file_len: u64) -> Self {
        let keep = usize::try_from(file_len).map_or(prefix.len(), |n| n.min(prefix.len()));
        Self {
            buf: prefix.get(..keep).unwrap_or(prefix),
            pos: 0,
            file_len,
        }
    }

    /// Current offset from the start of the file.
    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left in the file (not just the prefix) after the current offset.
    pub(crate) fn remaining_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.pos())
    }

    /// Bytes left in the prefix after the current offset.
    pub(crate) fn remaining_in_prefix(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: u64) -> Result<&'a [u8], GgufError> {
        let offset = self.pos();
        let end = offset.checked_add(len);
        match end {
            Some(end) if end <= self.file_len => {}
            _ => {
                return Err(GgufError::UnexpectedEof {
                    offset,
                    len,
                    file_len: self.file_len,
                })
            }
        }
        let slice = usize::try_from(len)
            .ok()
            .and_then(|n| Some((n, self.pos.checked_add(n)?)))
            .and_then(|(n, end)| Some((n, self.buf.get(self.pos..end)?)));
        match slice {
            Some((n, s)) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                offset,
                needed: offset.saturating_add(len),
                available: self.buf.len() as u64,
            }),
        }
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A little-endian `u8`.
    pub(crate) fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, GgufError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, GgufError> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_prefix_and_eof_differ() {
        let bytes = [1u8, 0, 0, 0, 2, 0, 0, 0];
        let mut c = Cursor::new(&bytes[..4], 8);
        assert_eq!(c.u32().unwrap(), 1);
        assert!(matches!(
            c.u32(),
            Err(GgufError::Truncated {
                offset: 4,
                needed: 8,
                available: 4
            })
        ));
        let mut c = Cursor::new(&bytes, 8);
        assert_eq!(c.u64().unwrap(), 0x0000_0002_0000_0001);
        assert!(matches!(
            c.u8(),
            Err(GgufError::UnexpectedEof {
                offset: 8,
                len: 1,
                file_len: 8
            })
        ));
        let mut c = Cursor::new(&bytes, 8);
        assert!(matches!(
            c.take(u64::MAX),
            Err(GgufError::UnexpectedEof { .. })
        ));
    }
}
