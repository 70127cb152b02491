//! The panic fallback. wasm32 builds abort on panic (no unwinding), and an
//! aborted call leaves the instance's memory in an unknown state, so every
//! input is validated and no path is meant to panic. Should one still
//! happen, the hook records its message first. The JavaScript wrapper
//! (bindings/js/src/index.js) turns the trap into an `Error` with code
//! `PANIC` and that message (read with `panicMessage()`), then replaces the
//! instance by a fresh one (a new copy of the glue module, instantiated from
//! the same compiled module): the models
//! of the dead instance throw `MODEL_LOST` there, and new ones load again.
//! This instance's own entry points fail with code `POISONED` from then on,
//! for a caller of the raw bindings that goes on calling it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

static POISONED: AtomicBool = AtomicBool::new(false);
static MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Installs the hook (once; later calls do nothing).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info.to_string();
            if let Ok(mut m) = MESSAGE.lock() {
                m.get_or_insert(msg.clone());
            }
            POISONED.store(true, Ordering::SeqCst);
            #[cfg(target_arch = "wasm32")]
            {
                web_console_error(&format!("wasm-chord panicked: {msg}"));
                notify_listener(&msg);
            }
        }));
    });
}

#[cfg(target_arch = "wasm32")]
thread_local! {
    static LISTENER: std::cell::RefCell<Option<js_sys::Function>> =
        const { std::cell::RefCell::new(None) };
}

/// Sets the JavaScript function the hook calls with the panic's message,
/// before the instance traps. A panic inside a future (an async step that
/// wasm-bindgen-futures polls from a JavaScript callback) traps in that
/// callback, where no caller sees it; the wrapper's listener rejects the
/// pending calls instead, so they end with `PANIC` rather than never. The
/// listener must not call back into this instance.
#[cfg(target_arch = "wasm32")]
pub fn set_listener(f: js_sys::Function) {
    LISTENER.with(|l| *l.borrow_mut() = Some(f));
}

#[cfg(target_arch = "wasm32")]
fn notify_listener(msg: &str) {
    let f = LISTENER.with(|l| l.try_borrow().ok().and_then(|l| l.clone()));
    if let Some(f) = f {
        let _ = f.call1(&wasm_bindgen::JsValue::NULL, &msg.into());
    }
}

#[cfg(target_arch = "wasm32")]
fn web_console_error(msg: &str) {
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into());
    if let Ok(console) = console {
        if let Ok(f) = js_sys::Reflect::get(&console, &"error".into()) {
            if let Some(f) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&f) {
                let _ = f.call1(&console, &msg.into());
            }
        }
    }
}

/// The panic message once the instance is poisoned.
pub fn message() -> Option<String> {
    if !POISONED.load(Ordering::SeqCst) {
        return None;
    }
    Some(
        MESSAGE
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .unwrap_or_else(|| "a panic".into()),
    )
}

/// `Ok` while no panic happened; afterwards the [`WebError::Poisoned`]
/// error every entry point returns.
///
/// [`WebError::Poisoned`]: crate::WebError::Poisoned
pub fn check() -> crate::WebResult<()> {
    match message() {
        Some(m) => Err(crate::WebError::Poisoned(m)),
        None => Ok(()),
    }
}
