//! Every read and write through a pointer that came from C, in small
//! helpers. Each turns NULL into [`CapiError::Null`] instead of touching it.
//! The callers' `// SAFETY:` comments point at the header's contract
//! (valid pointers of the documented sizes, for the duration of the call).

use crate::error::CapiError;
use std::ffi::{c_char, CStr};
use std::mem::size_of;

/// A shared reference to a handle.
///
/// # Safety
/// `p` is NULL or a pointer returned by this library's `_new`/`_load`
/// function for this type and not yet freed.
pub(crate) unsafe fn handle<'a, T>(p: *const T, name: &'static str) -> Result<&'a T, CapiError> {
    // SAFETY: non-NULL handles are live boxes by the function's contract.
    unsafe { p.as_ref() }.ok_or(CapiError::Null(name))
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, name: &'static str) -> Result<&'a str, CapiError> {
    if p.is_null() {
        return Err(CapiError::Null(name));
    }
    // SAFETY: non-NULL and NUL-terminated by the function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| CapiError::Utf8(name))
}

/// A NUL-terminated UTF-8 string that may be NULL (`None`).
///
/// # Safety
/// As [`c_str`].
pub(crate) unsafe fn opt_c_str<'a>(
    p: *const c_char,
    name: &'static str,
) -> Result<Option<&'a str>, CapiError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { c_str(p, name) }.map(Some)
}

/// `len` elements at `p`; NULL is allowed only when `len == 0`.
///
/// # Safety
/// `p` is NULL or points to `len` initialized elements valid for the call.
pub(crate) unsafe fn slice<'a, T>(
    p: *const T,
    len: usize,
    name: &'static str,
) -> Result<&'a [T], CapiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(CapiError::Null(name));
    }
    let too_large = match len.checked_mul(size_of::<T>()) {
        Some(bytes) => bytes > isize::MAX as usize,
        None => true,
    };
    if too_large {
        return Err(CapiError::Params(format!(
            "`{name}` length {len} is too large"
        )));
    }
    // SAFETY: non-NULL, `len` elements by the function's contract; the byte
    // size fits in isize (checked above).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// UTF-8 text given as pointer and byte length (no NUL needed).
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn utf8<'a>(
    p: *const c_char,
    len: usize,
    name: &'static str,
) -> Result<&'a str, CapiError> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(p.cast::<u8>(), len, name) }?;
    std::str::from_utf8(bytes).map_err(|_| CapiError::Utf8(name))
}

/// Writes `value` to an out-parameter.
///
/// # Safety
/// `p` is NULL or valid for writing one `T`.
pub(crate) unsafe fn write<T>(p: *mut T, value: T, name: &'static str) -> Result<(), CapiError> {
    if p.is_null() {
        return Err(CapiError::Null(name));
    }
    // SAFETY: non-NULL and writable by the function's contract.
    unsafe { p.write(value) };
    Ok(())
}

/// A struct whose first field is its `size` in bytes, set by the caller
/// (`sizeof(struct)` of the header it compiled against).
pub(crate) trait Versioned: Copy {
    /// The smallest `size` this version accepts: the size of the first
    /// published layout. Later versions append fields and keep this value,
    /// filling the missing tail from defaults.
    const MIN_SIZE: usize;
}

/// Reads the caller's `size` field of a sized struct.
///
/// # Safety
/// `p` is non-NULL and points to at least a `size_t`.
unsafe fn size_field<T>(p: *const T) -> usize {
    // SAFETY: every sized struct starts with a `size_t` by the ABI.
    unsafe { p.cast::<usize>().read_unaligned() }
}

/// Reads a params struct, `default` when `p` is NULL. A `size` smaller than
/// the first published layout is rejected; a larger one (a newer header)
/// is accepted and its unknown tail ignored.
///
/// # Safety
/// `p` is NULL or points to a struct of at least its own `size` bytes that
/// starts like `T`.
pub(crate) unsafe fn read_params<T: Versioned>(
    p: *const T,
    default: T,
    name: &'static str,
) -> Result<T, CapiError> {
    if p.is_null() {
        return Ok(default);
    }
    // SAFETY: non-NULL; starts with size_t by the contract.
    let size = unsafe { size_field(p) };
    if size < T::MIN_SIZE {
        return Err(CapiError::Params(format!(
            "`{name}->size` is {size}, expected at least {} (set it to sizeof the struct)",
            T::MIN_SIZE
        )));
    }
    // SAFETY: at least MIN_SIZE == size_of::<T>() readable bytes (checked).
    Ok(unsafe { p.read_unaligned() })
}

/// Checks the `size` the caller set in an out-struct.
///
/// # Safety
/// `p` is non-NULL and points to at least a `size_t`.
pub(crate) unsafe fn check_size<T: Versioned>(
    p: *mut T,
    name: &'static str,
) -> Result<(), CapiError> {
    // SAFETY: forwarded contract.
    let size = unsafe { size_field(p.cast_const()) };
    if size < T::MIN_SIZE {
        return Err(CapiError::Params(format!(
            "`{name}->size` is {size}, expected at least {} (set it to sizeof the struct)",
            T::MIN_SIZE
        )));
    }
    Ok(())
}

/// Fills an out-struct whose `size` the caller set.
///
/// # Safety
/// `p` is NULL or points to a writable struct of at least its own `size`
/// bytes.
pub(crate) unsafe fn write_sized<T: Versioned>(
    p: *mut T,
    value: T,
    name: &'static str,
) -> Result<(), CapiError> {
    if p.is_null() {
        return Err(CapiError::Null(name));
    }
    // SAFETY: non-NULL; starts with size_t by the contract.
    unsafe { check_size(p, name) }?;
    // SAFETY: at least size_of::<T>() writable bytes (checked).
    unsafe { p.write_unaligned(value) };
    Ok(())
}

/// Copies `bytes` plus a NUL into `buf` (capacity `cap`) and writes the
/// length without the NUL to `*len_out`. When the buffer is too small,
/// writes only `*len_out` and fails with [`CapiError::BufferTooSmall`].
///
/// # Safety
/// `buf` is NULL (with `cap == 0`) or writable for `cap` bytes; `len_out`
/// is NULL or writable.
pub(crate) unsafe fn write_text(
    bytes: &[u8],
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> Result<(), CapiError> {
    if len_out.is_null() {
        return Err(CapiError::Null("len_out"));
    }
    let needed = bytes.len();
    if cap <= needed {
        // SAFETY: non-NULL and writable by the contract.
        unsafe { len_out.write(needed) };
        return Err(CapiError::BufferTooSmall {
            name: "buf",
            capacity: cap,
            needed: needed + 1,
        });
    }
    if buf.is_null() {
        return Err(CapiError::Null("buf"));
    }
    // SAFETY: `buf` has `cap > needed` writable bytes; the source is a Rust
    // slice that cannot overlap memory the caller hands us for writing.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), needed);
        buf.add(needed).write(0);
        len_out.write(needed);
    }
    Ok(())
}

/// Copies `items` into `buf` (capacity `cap`) and writes the count to
/// `*n_out`; when too small, writes only `*n_out` and fails.
///
/// # Safety
/// `buf` is NULL (with `cap == 0`) or writable for `cap` elements; `n_out`
/// is NULL or writable.
pub(crate) unsafe fn write_array<T: Copy>(
    items: &[T],
    buf: *mut T,
    cap: usize,
    n_out: *mut usize,
) -> Result<(), CapiError> {
    if n_out.is_null() {
        return Err(CapiError::Null("n_out"));
    }
    let needed = items.len();
    if cap < needed {
        // SAFETY: non-NULL and writable by the contract.
        unsafe { n_out.write(needed) };
        return Err(CapiError::BufferTooSmall {
            name: "buf",
            capacity: cap,
            needed,
        });
    }
    if buf.is_null() && needed > 0 {
        return Err(CapiError::Null("buf"));
    }
    // SAFETY: `buf` has `cap >= needed` writable elements (or needed == 0).
    unsafe {
        if needed > 0 {
            std::ptr::copy_nonoverlapping(items.as_ptr(), buf, needed);
        }
        n_out.write(needed);
    }
    Ok(())
}

/// Frees a box made by `Box::into_raw`; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or came from `Box::into_raw` for this `T` and is not used
/// again.
pub(crate) unsafe fn free_box<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: by the contract, a live box that is given up here.
        drop(unsafe { Box::from_raw(p) });
    }
}
