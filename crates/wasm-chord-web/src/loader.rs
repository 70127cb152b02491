//! Receiving a model file in chunks (a streamed download, a `Blob` read
//! piece by piece, or one `Uint8Array`) straight into wasm memory, hashing
//! it on the way and checking the GGUF header as soon as enough has arrived.

use crate::error::{WebError, WebResult};
use sha2::{Digest, Sha256};
use wasm_chord_core::gguf::{parse_header, GgufError};

/// Largest file the CPU path accepts. The file is one `Vec<u8>`, and no
/// Rust allocation may exceed `isize::MAX` bytes: 2 GiB - 1 on wasm32 (whose
/// linear memory is 4 GiB in all, shared with the KV cache, activations and
/// code). On 64-bit targets (native tests) the same 3.75 GiB budget as a
/// 4 GiB memory would allow applies.
pub const MAX_MODEL_BYTES: u64 = {
    let four_gib_budget: u64 = (4 << 30) - (256 << 20);
    let max_alloc = isize::MAX as u64;
    if max_alloc < four_gib_budget {
        max_alloc
    } else {
        four_gib_budget
    }
};

/// The first header check happens at this many bytes, then at twice as many
/// each time the prefix was too short.
const FIRST_HEADER_TRY: usize = 64 << 10;

/// What the header check found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// Not enough bytes yet.
    Pending,
    /// The header parsed and every tensor lies inside the announced size.
    Valid,
}

/// A model file arriving in chunks.
pub struct Receiver {
    buf: Vec<u8>,
    total: Option<u64>,
    /// `None` when the caller needs no digest (hashing costs about as much
    /// as copying the bytes in).
    hasher: Option<Sha256>,
    header: HeaderState,
    next_try: usize,
}

impl Receiver {
    /// Expects `total` bytes when the size is known (the space is reserved
    /// at once, so a file that cannot fit fails before any download).
    pub fn new(total: Option<u64>) -> WebResult<Self> {
        let mut buf = Vec::new();
        if let Some(n) = total {
            if n > MAX_MODEL_BYTES {
                return Err(too_large(n));
            }
            let n = usize::try_from(n).map_err(|_| too_large(n))?;
            buf.try_reserve_exact(n).map_err(|_| too_large(n as u64))?;
        }
        Ok(Self {
            buf,
            total,
            hasher: Some(Sha256::new()),
            header: HeaderState::Pending,
            next_try: FIRST_HEADER_TRY,
        })
    }

    /// Stops computing the sha256 (only before the first byte arrives).
    pub fn skip_hash(&mut self) -> WebResult<()> {
        if !self.buf.is_empty() {
            return Err(WebError::invalid("hash", "bytes were already received"));
        }
        self.hasher = None;
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    /// The announced size, if any.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Whether the header was checked already.
    pub fn header(&self) -> HeaderState {
        self.header
    }

    /// Room for `n` more bytes, or an error when they cannot fit. Returns
    /// the writable tail for exactly `n` bytes (zero-filled), to be
    /// overwritten by the caller.
    pub fn extend(&mut self, n: usize) -> WebResult<&mut [u8]> {
        let new_len = self
            .buf
            .len()
            .checked_add(n)
            .ok_or_else(|| too_large(u64::MAX))?;
        if let Some(t) = self.total {
            if new_len as u64 > t {
                return Err(WebError::Integrity(format!(
                    "received more than the announced {t} bytes"
                )));
            }
        }
        if new_len as u64 > MAX_MODEL_BYTES {
            return Err(too_large(new_len as u64));
        }
        self.buf
            .try_reserve(n)
            .map_err(|_| too_large(new_len as u64))?;
        let start = self.buf.len();
        self.buf.resize(new_len, 0);
        Ok(&mut self.buf[start..])
    }

    /// Call after the bytes from [`Receiver::extend`] were written: hashes
    /// them and checks the header once enough of it is here.
    pub fn commit(&mut self, n: usize) -> WebResult<()> {
        let start = self.buf.len().saturating_sub(n);
        if let (Some(h), Some(new)) = (self.hasher.as_mut(), self.buf.get(start..)) {
            h.update(new);
        }
        if self.header == HeaderState::Pending && self.buf.len() >= self.next_try {
            self.check_header(false)?;
        }
        Ok(())
    }

    /// Adds a chunk (copying it).
    pub fn push(&mut self, chunk: &[u8]) -> WebResult<()> {
        self.extend(chunk.len())?.copy_from_slice(chunk);
        self.commit(chunk.len())
    }

    fn check_header(&mut self, complete: bool) -> WebResult<()> {
        let file_len = if complete {
            self.buf.len() as u64
        } else {
            // Unknown size: tensor bounds are checked when the file is complete.
            self.total.unwrap_or(u64::MAX)
        };
        match parse_header(&self.buf, file_len) {
            Ok(_) => {
                self.header = HeaderState::Valid;
                Ok(())
            }
            Err(GgufError::Truncated { needed, .. }) if !complete => {
                let needed = usize::try_from(needed).unwrap_or(usize::MAX);
                self.next_try = needed.max(self.next_try.saturating_mul(2));
                Ok(())
            }
            Err(e) => Err(WebError::BadModel(e)),
        }
    }

    /// The lowercase hex sha256 of everything received so far (`None`
    /// after [`Receiver::skip_hash`]).
    pub fn sha256_hex(&self) -> Option<String> {
        digest_hex(self.hasher.as_ref())
    }

    /// All bytes, after checking the size, the header and, when given, the
    /// sha256 (lowercase or uppercase hex).
    pub fn finish(mut self, expected_sha256: Option<&str>) -> WebResult<Vec<u8>> {
        check_size(self.buf.len() as u64, self.total)?;
        self.check_header(true)?;
        check_sha256(self.hasher.as_ref(), expected_sha256)?;
        Ok(self.buf)
    }
}

fn too_large(n: u64) -> WebError {
    WebError::ModelTooLarge(format!(
        "{n} bytes do not fit: the CPU path holds the whole file in wasm32 linear memory \
         (at most {MAX_MODEL_BYTES} bytes for the file)"
    ))
}

/// Lowercase hex of the digest so far (`None` when not hashing).
pub(crate) fn digest_hex(hasher: Option<&Sha256>) -> Option<String> {
    hasher.map(|h| hex(&h.clone().finalize()))
}

/// Every announced byte arrived (when a size was announced); both
/// receivers check this at the end.
pub(crate) fn check_size(received: u64, total: Option<u64>) -> WebResult<()> {
    match total {
        Some(t) if t != received => Err(WebError::Integrity(format!(
            "received {received} of {t} bytes"
        ))),
        _ => Ok(()),
    }
}

/// The digest equals `expected` (hex, either case) when one is expected.
pub(crate) fn check_sha256(hasher: Option<&Sha256>, expected: Option<&str>) -> WebResult<()> {
    let Some(want) = expected else {
        return Ok(());
    };
    let got = digest_hex(hasher)
        .ok_or_else(|| WebError::invalid("sha256", "the loader was told not to hash"))?;
    if !want.eq_ignore_ascii_case(&got) {
        return Err(WebError::Integrity(format!(
            "sha256 is {got}, expected {want}"
        )));
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_chord_runtime::synth::{generate, SynthSpec};

    fn tiny() -> Vec<u8> {
        let spec = SynthSpec::new(Some("llama"), "tiny", "q8_0", 3).unwrap();
        generate(&spec).unwrap()
    }

    #[test]
    fn chunks_hash_and_header_check_match_the_whole_file() {
        let bytes = tiny();
        let want = hex(&Sha256::digest(&bytes));
        for total in [Some(bytes.len() as u64), None] {
            let mut r = Receiver::new(total).unwrap();
            for c in bytes.chunks(10_007) {
                r.push(c).unwrap();
            }
            assert_eq!(r.header(), HeaderState::Valid);
            assert_eq!(r.sha256_hex(), Some(want.clone()));
            assert_eq!(r.finish(Some(&want.to_uppercase())).unwrap(), bytes);
        }
    }

    #[test]
    fn damage_is_found_early_or_at_the_end() {
        let bytes = tiny();
        // Not GGUF: rejected at the first header check, long before the end.
        let mut junk = bytes.clone();
        junk[0] = b'X';
        let mut r = Receiver::new(Some(junk.len() as u64)).unwrap();
        let e = junk
            .chunks(4096)
            .map(|c| r.push(c))
            .find_map(Result::err)
            .unwrap();
        assert_eq!(e.code(), "BAD_MODEL");
        assert!(r.received() < junk.len() as u64);
        // Truncated: the size check fails.
        let mut r = Receiver::new(Some(bytes.len() as u64)).unwrap();
        r.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(r.finish(None).unwrap_err().code(), "INTEGRITY");
        // Truncated with no announced size: the tensors do not fit.
        let mut r = Receiver::new(None).unwrap();
        r.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(r.finish(None).unwrap_err().code(), "BAD_MODEL");
        // One flipped byte in the tensor data: only the digest tells.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut r = Receiver::new(None).unwrap();
        r.push(&flipped).unwrap();
        let want = hex(&Sha256::digest(&bytes));
        assert_eq!(r.finish(Some(&want)).unwrap_err().code(), "INTEGRITY");
        // More than announced, and more than wasm memory can hold.
        let mut r = Receiver::new(Some(4)).unwrap();
        assert_eq!(r.push(&bytes[..5]).unwrap_err().code(), "INTEGRITY");
        let e = Receiver::new(Some(5 << 30)).err().unwrap();
        assert_eq!(e.code(), "MODEL_TOO_LARGE");
        // Without hashing the size and header checks still run.
        let mut r = Receiver::new(None).unwrap();
        r.skip_hash().unwrap();
        r.push(&bytes).unwrap();
        assert_eq!(r.sha256_hex(), None);
        assert!(r.skip_hash().is_err());
        assert_eq!(r.finish(None).unwrap(), bytes);
    }
}
