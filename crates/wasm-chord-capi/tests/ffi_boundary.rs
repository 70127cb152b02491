//! The C API from Rust: every entry point with NULL arguments, the panic
//! boundary, versions and fixed result numbers.

mod common;

use common::ffi::*;
use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};
use wasmchord::wasmchord_result::*;
use wasmchord::*;

#[test]
fn every_entry_point_rejects_null() {
    let (_, path) = common::tiny();
    let model = load(path);
    let s = session(model, 64);
    let mut n = 7usize;
    let mut b = false;
    let mut out_model = sentinel::<wasmchord_model>();
    let mut out_session = sentinel::<wasmchord_session>();
    let mut out_tmpl = sentinel::<wasmchord_chat_template>();
    let gp = wasmchord_generate_params_default();
    let msg = wasmchord_chat_message {
        role: null(),
        content: c"x".as_ptr(),
    };
    let path_c = CString::new(path.to_str().unwrap()).unwrap();
    let mut tmpl = null_mut();
    // SAFETY: every pointer is NULL or valid; that is the point of the test.
    unsafe {
        assert_eq!(
            wasmchord_chat_template_new(null(), c"chatml".as_ptr(), &mut tmpl),
            WASMCHORD_OK
        );
        let checks: Vec<(&str, wasmchord_result)> = vec![
            (
                "wasmchord_model_load_file",
                wasmchord_model_load_file(null(), null(), &mut out_model),
            ),
            (
                "wasmchord_model_load_file/out",
                wasmchord_model_load_file(path_c.as_ptr(), null(), null_mut()),
            ),
            (
                "wasmchord_model_load_memory",
                wasmchord_model_load_memory(null(), 10, null(), &mut out_model),
            ),
            (
                "wasmchord_model_load_memory/out",
                wasmchord_model_load_memory([0u8; 4].as_ptr(), 4, null(), null_mut()),
            ),
            (
                "wasmchord_model_get_info",
                wasmchord_model_get_info(null(), null_mut()),
            ),
            (
                "wasmchord_model_get_info/info",
                wasmchord_model_get_info(model, null_mut()),
            ),
            (
                "wasmchord_model_token_is_eog",
                wasmchord_model_token_is_eog(null(), 0, &mut b),
            ),
            (
                "wasmchord_model_token_is_eog/out",
                wasmchord_model_token_is_eog(model, 0, null_mut()),
            ),
            (
                "wasmchord_backend_available",
                wasmchord_backend_available(null()),
            ),
            (
                "wasmchord_session_new",
                wasmchord_session_new(null(), null(), &mut out_session),
            ),
            (
                "wasmchord_session_new/out",
                wasmchord_session_new(model, null(), null_mut()),
            ),
            (
                "wasmchord_session_clear",
                wasmchord_session_clear(null_mut()),
            ),
            (
                "wasmchord_session_n_past",
                wasmchord_session_n_past(null(), &mut n),
            ),
            (
                "wasmchord_session_n_past/out",
                wasmchord_session_n_past(s, null_mut()),
            ),
            ("wasmchord_session_abort", wasmchord_session_abort(null())),
            (
                "wasmchord_generate",
                wasmchord_generate(
                    null_mut(),
                    [1u32].as_ptr(),
                    1,
                    &gp,
                    None,
                    null_mut(),
                    null_mut(),
                ),
            ),
            (
                "wasmchord_generate/prompt",
                wasmchord_generate(s, null(), 3, &gp, None, null_mut(), null_mut()),
            ),
            (
                "wasmchord_tokenize",
                wasmchord_tokenize(null(), c"a".as_ptr(), 1, true, false, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_tokenize/text",
                wasmchord_tokenize(model, null(), 5, true, false, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_tokenize/n",
                wasmchord_tokenize(
                    model,
                    c"a".as_ptr(),
                    1,
                    true,
                    false,
                    null_mut(),
                    0,
                    null_mut(),
                ),
            ),
            (
                "wasmchord_tokenize/tokens",
                wasmchord_tokenize(
                    model,
                    c"a".as_ptr(),
                    1,
                    true,
                    false,
                    null_mut(),
                    100,
                    &mut n,
                ),
            ),
            (
                "wasmchord_detokenize",
                wasmchord_detokenize(
                    null(),
                    [1u32].as_ptr(),
                    1,
                    false,
                    false,
                    null_mut(),
                    0,
                    &mut n,
                ),
            ),
            (
                "wasmchord_detokenize/tokens",
                wasmchord_detokenize(model, null(), 2, false, false, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_detokenize/len",
                wasmchord_detokenize(
                    model,
                    [1u32].as_ptr(),
                    1,
                    false,
                    false,
                    null_mut(),
                    0,
                    null_mut(),
                ),
            ),
            (
                "wasmchord_detokenize/buf",
                wasmchord_detokenize(
                    model,
                    [300u32].as_ptr(),
                    1,
                    false,
                    false,
                    null_mut(),
                    100,
                    &mut n,
                ),
            ),
            (
                "wasmchord_token_to_piece",
                wasmchord_token_to_piece(null(), 1, false, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_token_to_piece/len",
                wasmchord_token_to_piece(model, 1, false, null_mut(), 0, null_mut()),
            ),
            (
                "wasmchord_chat_template_new",
                wasmchord_chat_template_new(null(), null(), &mut out_tmpl),
            ),
            (
                "wasmchord_chat_template_new/out",
                wasmchord_chat_template_new(null(), c"chatml".as_ptr(), null_mut()),
            ),
            (
                "wasmchord_chat_template_from_source",
                wasmchord_chat_template_from_source(null(), null(), null(), &mut out_tmpl),
            ),
            (
                "wasmchord_chat_template_from_source/out",
                wasmchord_chat_template_from_source(c"x".as_ptr(), null(), null(), null_mut()),
            ),
            (
                "wasmchord_chat_template_render",
                wasmchord_chat_template_render(null(), &msg, 1, true, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_chat_template_render/messages",
                wasmchord_chat_template_render(tmpl, null(), 1, true, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_chat_template_render/role",
                wasmchord_chat_template_render(tmpl, &msg, 1, true, null_mut(), 0, &mut n),
            ),
            (
                "wasmchord_chat_template_render/len",
                wasmchord_chat_template_render(tmpl, null(), 0, true, null_mut(), 0, null_mut()),
            ),
        ];
        for (name, r) in &checks {
            assert_eq!(*r, WASMCHORD_NULL_ARGUMENT, "{name}: {}", last_error());
        }
        // Out-parameters are untouched by failed calls.
        assert_eq!(out_model, sentinel());
        assert_eq!(out_session, sentinel());
        assert_eq!(out_tmpl, sentinel());
        assert_eq!(n, 7);
        assert!(last_error().contains("NULL"), "{}", last_error());

        // Every function of the header is exercised above or below.
        let header = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../include/wasmchord.h"
        ))
        .unwrap();
        let no_pointer_args = [
            "wasmchord_version",
            "wasmchord_abi_version",
            "wasmchord_last_error_message",
            "wasmchord_result_name",
            "wasmchord_model_params_default",
            "wasmchord_set_threads",
            "wasmchord_session_params_default",
            "wasmchord_generate_params_default",
            "wasmchord_model_free",
            "wasmchord_session_free",
            "wasmchord_chat_template_free",
        ];
        let decls = header.lines().filter(|l| {
            l.ends_with(");")
                && l.contains("wasmchord_")
                && !l.starts_with("typedef")
                && !l.starts_with("//")
        });
        let mut n_decls = 0;
        for line in decls {
            n_decls += 1;
            let name = line
                .split('(')
                .next()
                .unwrap()
                .rsplit([' ', '*'])
                .next()
                .unwrap();
            let covered = checks
                .iter()
                .any(|(c, _)| c.split('/').next() == Some(name))
                || no_pointer_args.contains(&name);
            assert!(covered, "{name} has no NULL test");
        }
        assert!(n_decls >= 25, "parsed only {n_decls} functions");

        // NULL-tolerant frees and pointer-free functions.
        wasmchord_model_free(null_mut());
        wasmchord_session_free(null_mut());
        wasmchord_chat_template_free(null_mut());
        assert_eq!(
            wasmchord_last_error_message(null_mut(), 0),
            last_error().len()
        );
        assert!(!wasmchord_version().is_null());
        assert_eq!(wasmchord_set_threads(0), WASMCHORD_INVALID_PARAMS);
        wasmchord_chat_template_free(tmpl);
        wasmchord_session_free(s);
        wasmchord_model_free(model);
    }
}

#[test]
fn panics_become_error_codes() {
    assert_eq!(wasmchord_debug_panic(), WASMCHORD_PANIC);
    let msg = last_error();
    assert!(
        msg.contains("panic") && msg.contains("wasmchord_debug_panic"),
        "{msg}"
    );
    // The library still works afterwards.
    assert_eq!(
        wasmchord_abi_version(),
        WASMCHORD_ABI_VERSION_MAJOR << 16 | WASMCHORD_ABI_VERSION_MINOR
    );
}

#[test]
fn version_and_result_names() {
    // SAFETY: static strings.
    unsafe {
        assert_eq!(
            CStr::from_ptr(wasmchord_version()).to_str().unwrap(),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            CStr::from_ptr(wasmchord_result_name(7)).to_str().unwrap(),
            "WASMCHORD_CONTEXT_FULL"
        );
        assert_eq!(
            CStr::from_ptr(wasmchord_result_name(-3)).to_str().unwrap(),
            "WASMCHORD_UNKNOWN"
        );
        assert_eq!(
            CStr::from_ptr(wasmchord_result_name(9999))
                .to_str()
                .unwrap(),
            "WASMCHORD_UNKNOWN"
        );
    }
    // Numbers are ABI: never renumbered.
    let fixed = [
        (WASMCHORD_OK, 0),
        (WASMCHORD_NULL_ARGUMENT, 1),
        (WASMCHORD_INVALID_UTF8, 2),
        (WASMCHORD_IO, 3),
        (WASMCHORD_INVALID_GGUF, 4),
        (WASMCHORD_UNSUPPORTED_ARCHITECTURE, 5),
        (WASMCHORD_INVALID_TOKEN, 6),
        (WASMCHORD_CONTEXT_FULL, 7),
        (WASMCHORD_BUFFER_TOO_SMALL, 8),
        (WASMCHORD_CANCELLED, 9),
        (WASMCHORD_PANIC, 10),
        (WASMCHORD_INVALID_PARAMS, 11),
        (WASMCHORD_UNSUPPORTED_BACKEND, 12),
        (WASMCHORD_INVALID_MODEL, 13),
        (WASMCHORD_TOKENIZER, 14),
        (WASMCHORD_BACKEND, 15),
        (WASMCHORD_NO_CHAT_TEMPLATE, 16),
        (WASMCHORD_CHAT_TEMPLATE, 17),
        (WASMCHORD_SESSION_BUSY, 18),
        (WASMCHORD_INTERNAL, 19),
    ];
    for (code, n) in fixed {
        assert_eq!(code as i32, n);
    }
}
