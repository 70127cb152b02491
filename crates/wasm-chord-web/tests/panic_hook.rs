//! The panic fallback: after a panic (here caught natively; in wasm it
//! aborts the call) the instance is marked failed, and every entry point's
//! check reports `POISONED` with the panic's message (the JavaScript wrapper
//! reads it, then replaces the instance: bindings/js/test/panic.test.mjs).
//! Its own test binary, because the hook is process-wide.

use wasm_chord_web::panic;

#[test]
fn a_panic_poisons_the_instance_with_its_message() {
    panic::install();
    assert!(panic::check().is_ok());
    assert_eq!(panic::message(), None);
    let r = std::panic::catch_unwind(|| {
        let v: Vec<u32> = Vec::new();
        let i = std::hint::black_box(3);
        v[i]
    });
    assert!(r.is_err());
    let msg = panic::message().expect("poisoned");
    assert!(msg.contains("index out of bounds"), "{msg}");
    let e = panic::check().unwrap_err();
    assert_eq!(e.code(), "POISONED");
    assert!(e.to_string().contains("index out of bounds"), "{e}");
    // The first panic's message is kept.
    let _ = std::panic::catch_unwind(|| panic!("second"));
    assert!(panic::message().unwrap().contains("index out of bounds"));
}
