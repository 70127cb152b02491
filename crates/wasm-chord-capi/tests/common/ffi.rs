//! Helpers for calling the C API from Rust tests.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use wasmchord::wasmchord_result::*;
use wasmchord::*;

/// A pointer value that must survive a failed call untouched.
pub fn sentinel<T>() -> *mut T {
    std::ptr::NonNull::<T>::dangling().as_ptr()
}

pub fn last_error() -> String {
    // SAFETY: NULL/0 asks for the size; then a buffer of that size + 1.
    unsafe {
        let n = wasmchord_last_error_message(null_mut(), 0);
        let mut buf = vec![0u8; n + 1];
        assert_eq!(
            wasmchord_last_error_message(buf.as_mut_ptr().cast(), buf.len()),
            n
        );
        CStr::from_bytes_with_nul(&buf)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }
}

pub fn load(path: &std::path::Path) -> *mut wasmchord_model {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    // SAFETY: valid C string and out-pointer.
    let r = unsafe { wasmchord_model_load_file(c.as_ptr(), null(), &mut m) };
    assert_eq!(r, WASMCHORD_OK, "{}", last_error());
    m
}

pub fn session(model: *const wasmchord_model, n_ctx: u32) -> *mut wasmchord_session {
    let mut p = wasmchord_session_params_default();
    p.n_ctx = n_ctx;
    let mut s = null_mut();
    // SAFETY: live model, valid params and out-pointer.
    assert_eq!(
        unsafe { wasmchord_session_new(model, &p, &mut s) },
        WASMCHORD_OK
    );
    s
}

pub fn tokenize(model: *const wasmchord_model, text: &str, special: bool) -> Vec<u32> {
    let mut n = 0usize;
    // SAFETY: text and sizes from a Rust str; the first call asks the size.
    unsafe {
        let r = wasmchord_tokenize(
            model,
            text.as_ptr().cast(),
            text.len(),
            special,
            special,
            null_mut(),
            0,
            &mut n,
        );
        assert!(r == WASMCHORD_BUFFER_TOO_SMALL || (r == WASMCHORD_OK && n == 0));
        let mut ids = vec![0u32; n];
        let r = wasmchord_tokenize(
            model,
            text.as_ptr().cast(),
            text.len(),
            special,
            special,
            ids.as_mut_ptr(),
            n,
            &mut n,
        );
        assert_eq!(r, WASMCHORD_OK);
        ids
    }
}

pub unsafe extern "C" fn collect(text: *const c_char, len: usize, ud: *mut c_void) -> bool {
    // SAFETY: the library passes `len` bytes of UTF-8; `ud` is our String.
    unsafe {
        let s = std::str::from_utf8(std::slice::from_raw_parts(text.cast::<u8>(), len)).unwrap();
        (*ud.cast::<String>()).push_str(s);
    }
    true
}

pub fn run_generate(
    s: *mut wasmchord_session,
    prompt: &[u32],
    p: &wasmchord_generate_params,
) -> (wasmchord_result, String, wasmchord_generation) {
    let mut text = String::new();
    // SAFETY: plain-old-data with `size` set below.
    let mut stats: wasmchord_generation = unsafe { std::mem::zeroed() };
    stats.size = std::mem::size_of::<wasmchord_generation>();
    // SAFETY: live session, valid slices and callback state.
    let r = unsafe {
        wasmchord_generate(
            s,
            prompt.as_ptr(),
            prompt.len(),
            p,
            Some(collect),
            (&mut text as *mut String).cast(),
            &mut stats,
        )
    };
    (r, text, stats)
}
