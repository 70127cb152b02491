//! Little-endian field access for decoding and encoding blocks from byte
//! slices of any alignment, without `unsafe` and without panicking: reads past
//! the end yield zeros and writes past the end are dropped (callers pass
//! exactly one block, so neither happens in practice).

/// `N` bytes starting at `off` (zero-filled where `b` is too short).
#[inline]
pub(crate) fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(off..off.saturating_add(N)) {
        a.copy_from_slice(s);
    }
    a
}

/// The `i8` array of `N` bytes starting at `off`.
#[inline]
pub(crate) fn arr_i8<const N: usize>(b: &[u8], off: usize) -> [i8; N] {
    arr::<N>(b, off).map(|v| v as i8)
}

/// A little-endian `u16` at `off`.
#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(arr::<2>(b, off))
}

/// Copies `src` into `out` at `off` (truncated at the end of `out`).
#[inline]
pub(crate) fn put(out: &mut [u8], off: usize, src: &[u8]) {
    if let Some(dst) = out.get_mut(off..) {
        let n = dst.len().min(src.len());
        if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
    }
}

/// Writes a little-endian `u16` at `off`.
#[inline]
pub(crate) fn put_u16(out: &mut [u8], off: usize, v: u16) {
    put(out, off, &v.to_le_bytes());
}

/// Writes an `i8` array at `off`.
#[inline]
pub(crate) fn put_i8(out: &mut [u8], off: usize, v: &[i8]) {
    for (i, &x) in v.iter().enumerate() {
        put(out, off + i, &[x as u8]);
    }
}
