//! The one panic boundary every export runs inside.

use crate::error::{set_last_error, wasmchord_result, CapiError};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `on_panic` (and a last-error message)
/// instead of unwinding into C. Every `extern "C"` function of this crate
/// has its whole body inside a call to this function, directly or through
/// [`call`].
pub(crate) fn boundary<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: after a panic the caller only gets an error code;
    // the documented contract says the handles involved may then only be
    // freed, so no broken invariant is observed.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_owned());
            set_last_error(format!("panic in libwasmchord: {msg}"));
            on_panic
        }
    }
}

/// [`boundary`] for the usual shape: a body returning `Result<(), CapiError>`
/// becomes a [`wasmchord_result`], recording the message of an error as this
/// thread's last error.
pub(crate) fn call(f: impl FnOnce() -> Result<(), CapiError>) -> wasmchord_result {
    boundary(wasmchord_result::WASMCHORD_PANIC, || match f() {
        Ok(()) => wasmchord_result::WASMCHORD_OK,
        Err(e) => {
            set_last_error(e.to_string());
            e.code()
        }
    })
}
