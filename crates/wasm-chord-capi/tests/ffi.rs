//! The C API called directly from Rust: every entry point with NULL
//! arguments, the panic boundary, size negotiation, and results checked
//! against the Rust API on a tiny random-weight model.

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
use wasm_chord_runtime::sampler::SamplerConfig;
use wasmchord::wasmchord_result::*;
use wasmchord::*;

/// A pointer value that must survive a failed call untouched.
fn sentinel<T>() -> *mut T {
    std::ptr::NonNull::<T>::dangling().as_ptr()
}

fn last_error() -> String {
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

fn load(path: &std::path::Path) -> *mut wasmchord_model {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    // SAFETY: valid C string and out-pointer.
    let r = unsafe { wasmchord_model_load_file(c.as_ptr(), null(), &mut m) };
    assert_eq!(r, WASMCHORD_OK, "{}", last_error());
    m
}

fn session(model: *const wasmchord_model, n_ctx: u32) -> *mut wasmchord_session {
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

fn tokenize(model: *const wasmchord_model, text: &str, special: bool) -> Vec<u32> {
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

unsafe extern "C" fn collect(text: *const c_char, len: usize, ud: *mut c_void) -> bool {
    // SAFETY: the library passes `len` bytes of UTF-8; `ud` is our String.
    unsafe {
        let s = std::str::from_utf8(std::slice::from_raw_parts(text.cast::<u8>(), len)).unwrap();
        (*ud.cast::<String>()).push_str(s);
    }
    true
}

fn run_generate(
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

unsafe extern "C" fn record_progress(p: f32, ud: *mut c_void) -> bool {
    // SAFETY: `ud` is the test's (Vec, stop-after) pair.
    let (seen, stop_after) = unsafe { &mut *ud.cast::<(Vec<f32>, usize)>() };
    seen.push(p);
    seen.len() < *stop_after
}

#[test]
fn loading_from_file_and_memory_with_progress_and_cancel() {
    let (bytes, path) = common::tiny();
    let file = GgufFile::open(path).unwrap();
    let n_layer = file.metadata().get_u32("llama.block_count").unwrap();
    let path_c = CString::new(path.to_str().unwrap()).unwrap();
    let mut state: (Vec<f32>, usize) = (Vec::new(), usize::MAX);
    let mut p = wasmchord_model_params_default();
    p.backend = c"cpu".as_ptr();
    p.progress = Some(record_progress);
    p.progress_user_data = (&mut state as *mut (Vec<f32>, usize)).cast();
    // SAFETY: valid arguments throughout.
    unsafe {
        let mut a = null_mut();
        assert_eq!(
            wasmchord_model_load_file(path_c.as_ptr(), &p, &mut a),
            WASMCHORD_OK
        );
        // One call after the embeddings, one per block, ending at 1.
        assert_eq!(state.0.len(), n_layer as usize + 1);
        assert!(state.0.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*state.0.last().unwrap(), 1.0);

        let mut b = null_mut();
        assert_eq!(
            wasmchord_model_load_memory(bytes.as_ptr(), bytes.len(), null(), &mut b),
            WASMCHORD_OK
        );
        let mut ia: wasmchord_model_info = std::mem::zeroed();
        let mut ib: wasmchord_model_info = std::mem::zeroed();
        ia.size = std::mem::size_of::<wasmchord_model_info>();
        ib.size = ia.size;
        assert_eq!(wasmchord_model_get_info(a, &mut ia), WASMCHORD_OK);
        assert_eq!(wasmchord_model_get_info(b, &mut ib), WASMCHORD_OK);
        assert_eq!(CStr::from_ptr(ia.arch).to_str().unwrap(), "llama");
        assert_eq!(CStr::from_ptr(ia.backend).to_str().unwrap(), "cpu");
        assert_eq!(ia.n_layer, n_layer);
        let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
        assert_eq!(ia.n_vocab as usize, tok.n_vocab());
        assert_eq!(ia.bos, tok.bos().map_or(-1, |b| b as i32));
        assert_eq!(ia.eos, tok.eos().map_or(-1, |b| b as i32));
        assert_eq!(
            ia.n_ctx_train,
            file.metadata().get_u32("llama.context_length").unwrap()
        );
        assert_eq!(
            (ia.n_vocab, ia.n_embd, ia.n_head, ia.n_head_kv),
            (ib.n_vocab, ib.n_embd, ib.n_head, ib.n_head_kv)
        );
        let mut eog = false;
        assert_eq!(
            wasmchord_model_token_is_eog(a, ia.eos as u32, &mut eog),
            WASMCHORD_OK
        );
        assert!(eog);

        // A too-small `size` is refused and nothing is written.
        let mut small: wasmchord_model_info = std::mem::zeroed();
        small.size = 8;
        assert_eq!(
            wasmchord_model_get_info(a, &mut small),
            WASMCHORD_INVALID_PARAMS
        );
        assert!(small.arch.is_null());
        let mut bad = p;
        bad.size = 4;
        let mut c = sentinel();
        assert_eq!(
            wasmchord_model_load_file(path_c.as_ptr(), &bad, &mut c),
            WASMCHORD_INVALID_PARAMS
        );

        // Cancelling from the progress callback.
        state = (Vec::new(), 2);
        p.progress_user_data = (&mut state as *mut (Vec<f32>, usize)).cast();
        assert_eq!(
            wasmchord_model_load_file(path_c.as_ptr(), &p, &mut c),
            WASMCHORD_CANCELLED
        );
        assert_eq!(state.0.len(), 2);
        assert_eq!(c, sentinel());

        // Backends, bad files.
        p.progress = None;
        p.backend = c"cuda".as_ptr();
        assert_eq!(
            wasmchord_model_load_file(path_c.as_ptr(), &p, &mut c),
            WASMCHORD_UNSUPPORTED_BACKEND
        );
        assert!(last_error().contains("cuda"));
        assert_eq!(wasmchord_backend_available(c"cpu".as_ptr()), WASMCHORD_OK);
        assert_eq!(wasmchord_backend_available(c"auto".as_ptr()), WASMCHORD_OK);
        assert_eq!(
            wasmchord_backend_available(c"webgpu".as_ptr()),
            WASMCHORD_UNSUPPORTED_BACKEND
        );
        let missing =
            CString::new(common::scratch().join("missing.gguf").to_str().unwrap()).unwrap();
        assert_eq!(
            wasmchord_model_load_file(missing.as_ptr(), null(), &mut c),
            WASMCHORD_IO
        );
        let junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(
            wasmchord_model_load_memory(junk.as_ptr(), junk.len(), null(), &mut c),
            WASMCHORD_INVALID_GGUF
        );
        let truncated = &bytes[..bytes.len() / 2];
        assert_eq!(
            wasmchord_model_load_memory(truncated.as_ptr(), truncated.len(), null(), &mut c),
            WASMCHORD_INVALID_GGUF
        );
        assert_eq!(
            wasmchord_model_load_file(c"\xff.gguf".as_ptr(), null(), &mut c),
            WASMCHORD_INVALID_UTF8
        );
        assert_eq!(c, sentinel());

        wasmchord_model_free(a);
        wasmchord_model_free(b);
    }
}

#[test]
fn tokenize_and_detokenize_negotiate_sizes_and_match_rust() {
    let (_, path) = common::tiny();
    let file = GgufFile::open(path).unwrap();
    let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
    let model = load(path);
    let text = "Hello wörld, 1234 <|im_start|> tabs\tand ünïcødé ✓";
    for special in [false, true] {
        let ids = tokenize(model, text, special);
        assert_eq!(ids, tok.encode(text, special, special));
        assert!(ids.len() > 5);
    }
    let ids = tokenize(model, text, false);
    let expected = tok.decode(&ids, false, false).unwrap();
    // SAFETY: valid buffers and sizes.
    unsafe {
        let mut n = 0usize;
        // One slot too few: only the count is written.
        let mut short = vec![u32::MAX; ids.len() - 1];
        let r = wasmchord_tokenize(
            model,
            text.as_ptr().cast(),
            text.len(),
            false,
            false,
            short.as_mut_ptr(),
            short.len(),
            &mut n,
        );
        assert_eq!(r, WASMCHORD_BUFFER_TOO_SMALL);
        assert_eq!(n, ids.len());
        assert!(short.iter().all(|&t| t == u32::MAX));

        let mut len = 0usize;
        assert_eq!(
            wasmchord_detokenize(
                model,
                ids.as_ptr(),
                ids.len(),
                false,
                false,
                null_mut(),
                0,
                &mut len
            ),
            WASMCHORD_BUFFER_TOO_SMALL
        );
        assert_eq!(len, expected.len());
        // Room for the text but not the NUL is still too small.
        let mut buf = vec![b'#'; len];
        assert_eq!(
            wasmchord_detokenize(
                model,
                ids.as_ptr(),
                ids.len(),
                false,
                false,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut len
            ),
            WASMCHORD_BUFFER_TOO_SMALL
        );
        assert!(buf.iter().all(|&c| c == b'#'));
        let mut buf = vec![b'#'; len + 1];
        assert_eq!(
            wasmchord_detokenize(
                model,
                ids.as_ptr(),
                ids.len(),
                false,
                false,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut len
            ),
            WASMCHORD_OK
        );
        assert_eq!(&buf[..len], expected.as_bytes());
        assert_eq!(buf[len], 0);

        let mut piece = [0 as c_char; 64];
        let id = ids[3];
        assert_eq!(
            wasmchord_token_to_piece(model, id, false, piece.as_mut_ptr(), piece.len(), &mut len),
            WASMCHORD_OK
        );
        assert_eq!(
            std::slice::from_raw_parts(piece.as_ptr().cast::<u8>(), len),
            tok.token_to_piece(id, false).unwrap()
        );

        let bad = [0xffu8, 0xfe];
        assert_eq!(
            wasmchord_tokenize(
                model,
                bad.as_ptr().cast(),
                2,
                false,
                false,
                null_mut(),
                0,
                &mut n
            ),
            WASMCHORD_INVALID_UTF8
        );
        let huge = [tok.n_vocab() as u32 + 5];
        assert_eq!(
            wasmchord_detokenize(
                model,
                huge.as_ptr(),
                1,
                false,
                false,
                null_mut(),
                0,
                &mut len
            ),
            WASMCHORD_INVALID_TOKEN
        );
        assert_eq!(
            wasmchord_token_to_piece(model, huge[0], false, null_mut(), 0, &mut len),
            WASMCHORD_INVALID_TOKEN
        );
        wasmchord_model_free(model);
    }
}

#[test]
fn generation_streams_what_the_rust_api_generates() {
    let (_, path) = common::tiny();
    let file = Arc::new(GgufFile::open(path).unwrap());
    let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
    let rmodel = wasm_chord_runtime::Model::load(file, Arc::new(CpuBackend::new())).unwrap();
    let prompt = tok.encode("Once upon a time, in a land far away", true, false);

    let model = load(path);
    let s = session(model, 256);
    let stop = [c"zz".as_ptr()];
    let bias = [wasmchord_logit_bias {
        token: 5,
        bias: 2.5,
    }];
    let mut p = wasmchord_generate_params_default();
    p.max_tokens = 24;
    p.seed = 42;
    p.temperature = 0.9;
    p.repeat_penalty = 1.1;
    p.stop = stop.as_ptr();
    p.n_stop = 1;
    p.logit_bias = bias.as_ptr();
    p.n_logit_bias = 1;
    // The model handle may go first: the session shares the weights.
    // SAFETY: freed once, not used again.
    let tokenizer_model = load(path);
    unsafe { wasmchord_model_free(model) };

    let (r, text, stats) = run_generate(s, &prompt, &p);
    assert_eq!(r, WASMCHORD_OK, "{}", last_error());

    let mut rs = wasm_chord_runtime::Session::new(&rmodel, Default::default()).unwrap();
    let params = wasm_chord_runtime::GenerateParams {
        max_tokens: 24,
        stop: vec!["zz".into()],
        sampler: SamplerConfig {
            seed: 42,
            temperature: 0.9,
            repeat_penalty: 1.1,
            logit_bias: vec![(5, 2.5)],
            ..SamplerConfig::default()
        },
    };
    let g =
        wasm_chord_runtime::generate(&mut rs, &tok, &prompt, &params, None, &mut |_| true).unwrap();
    assert_eq!(text, g.text);
    assert!(!text.is_empty());
    assert_eq!(stats.n_tokens as usize, g.tokens.len());
    assert_eq!(stats.n_prompt_eval as usize, prompt.len());
    let stop_matches = matches!(
        (stats.stop, g.stop),
        (
            wasmchord_stop_reason::WASMCHORD_STOP_MAX_TOKENS,
            wasm_chord_runtime::StopReason::MaxTokens
        ) | (
            wasmchord_stop_reason::WASMCHORD_STOP_EOG,
            wasm_chord_runtime::StopReason::EndOfGeneration
        ) | (
            wasmchord_stop_reason::WASMCHORD_STOP_TEXT,
            wasm_chord_runtime::StopReason::StopText
        )
    );
    assert!(stop_matches, "{:?} vs {:?}", stats.stop, g.stop);

    // SAFETY: valid arguments.
    unsafe {
        let mut n_past = 0usize;
        assert_eq!(wasmchord_session_n_past(s, &mut n_past), WASMCHORD_OK);
        assert_eq!(n_past, rs.n_past());
        // Re-sending the same prompt reuses the cache: one token re-run.
        let (r, again, stats) = run_generate(s, &prompt, &p);
        assert_eq!(r, WASMCHORD_OK);
        assert_eq!(stats.n_prompt_eval, 1);
        assert_eq!(again, text);
        assert_eq!(wasmchord_session_clear(s), WASMCHORD_OK);
        assert_eq!(wasmchord_session_n_past(s, &mut n_past), WASMCHORD_OK);
        assert_eq!(n_past, 0);
    }

    // Errors: bad tokens, a prompt over the context, bad sampling settings.
    let vocab = tok.n_vocab() as u32;
    assert_eq!(run_generate(s, &[1, vocab], &p).0, WASMCHORD_INVALID_TOKEN);
    let small = session(tokenizer_model, 4);
    assert_eq!(run_generate(small, &prompt, &p).0, WASMCHORD_CONTEXT_FULL);
    let mut bad = p;
    bad.top_p = f32::NAN;
    assert_eq!(run_generate(s, &prompt, &bad).0, WASMCHORD_INVALID_PARAMS);
    bad = p;
    bad.size = 16;
    assert_eq!(run_generate(s, &prompt, &bad).0, WASMCHORD_INVALID_PARAMS);
    assert_eq!(run_generate(s, &[], &p).0, WASMCHORD_INVALID_PARAMS);
    bad = p;
    bad.stop = null();
    assert_eq!(run_generate(s, &prompt, &bad).0, WASMCHORD_NULL_ARGUMENT);
    let mut sp = wasmchord_session_params_default();
    sp.n_ctx = 0;
    let mut out = sentinel();
    // SAFETY: valid arguments.
    unsafe {
        assert_eq!(
            wasmchord_session_new(tokenizer_model, &sp, &mut out),
            WASMCHORD_INVALID_PARAMS
        );
        assert_eq!(out, sentinel());
        wasmchord_session_free(small);
        wasmchord_session_free(s);
        wasmchord_model_free(tokenizer_model);
    }
}

struct Reentry {
    session: *mut wasmchord_session,
    pieces: usize,
    busy: Option<wasmchord_result>,
}

unsafe extern "C" fn stop_after_first(_: *const c_char, _: usize, ud: *mut c_void) -> bool {
    // SAFETY: `ud` is the test's Reentry.
    let st = unsafe { &mut *ud.cast::<Reentry>() };
    st.pieces += 1;
    // SAFETY: the session is live; re-entering it must be refused, not race.
    st.busy = Some(unsafe { wasmchord_session_clear(st.session) });
    false
}

#[test]
fn callback_stops_and_reentry_is_refused() {
    let (_, path) = common::tiny();
    let model = load(path);
    let s = session(model, 256);
    let prompt = tokenize(model, "The quick brown fox", true);
    let mut p = wasmchord_generate_params_default();
    p.max_tokens = 50;
    p.temperature = 0.0;
    let mut st = Reentry {
        session: s,
        pieces: 0,
        busy: None,
    };
    // SAFETY: valid arguments; `st` outlives the call.
    unsafe {
        let mut stats: wasmchord_generation = std::mem::zeroed();
        stats.size = std::mem::size_of::<wasmchord_generation>();
        let r = wasmchord_generate(
            s,
            prompt.as_ptr(),
            prompt.len(),
            &p,
            Some(stop_after_first),
            (&mut st as *mut Reentry).cast(),
            &mut stats,
        );
        assert_eq!(r, WASMCHORD_OK);
        assert_eq!(stats.stop, wasmchord_stop_reason::WASMCHORD_STOP_CANCELLED);
        assert_eq!(st.pieces, 1);
        assert_eq!(st.busy, Some(WASMCHORD_SESSION_BUSY));
        wasmchord_session_free(s);
        wasmchord_model_free(model);
    }
}

struct AbortState {
    started: AtomicBool,
    aborted: AtomicBool,
    pieces: usize,
}

unsafe extern "C" fn wait_for_abort(_: *const c_char, _: usize, ud: *mut c_void) -> bool {
    // SAFETY: `ud` is the test's AbortState, shared by reference only.
    let st = unsafe { &mut *ud.cast::<AbortState>() };
    st.pieces += 1;
    st.started.store(true, Ordering::SeqCst);
    // Keep generating until the other thread has aborted.
    while !st.aborted.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    true
}

#[test]
fn abort_from_another_thread() {
    let (_, path) = common::tiny();
    let model = load(path);
    let s = session(model, 512);
    let prompt = tokenize(model, "Count to one thousand:", true);
    let mut p = wasmchord_generate_params_default();
    p.max_tokens = 400;
    p.temperature = 0.0;
    let banned: Vec<wasmchord_logit_bias> = (0..1000u32)
        .filter(|&t| {
            let mut eog = false;
            // SAFETY: valid arguments.
            unsafe { wasmchord_model_token_is_eog(model, t, &mut eog) };
            eog
        })
        .map(|token| wasmchord_logit_bias {
            token,
            bias: f32::NEG_INFINITY,
        })
        .collect();
    p.logit_bias = banned.as_ptr();
    p.n_logit_bias = banned.len();
    let st = AbortState {
        started: AtomicBool::new(false),
        aborted: AtomicBool::new(false),
        pieces: 0,
    };
    struct Send_<T>(T);
    // SAFETY: the session and state are used by the two threads as the
    // header allows (abort is callable from any thread).
    unsafe impl<T> Send for Send_<T> {}
    let session_ptr = Send_(s);
    let st_ptr = Send_(&st as *const AbortState);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let (s, st) = (session_ptr, st_ptr);
            // SAFETY: the state outlives the scope.
            let st = unsafe { &*st.0 };
            while !st.started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            // SAFETY: abort may be called concurrently with generate.
            assert_eq!(unsafe { wasmchord_session_abort(s.0) }, WASMCHORD_OK);
            st.aborted.store(true, Ordering::SeqCst);
        });
        // SAFETY: valid arguments; `st` outlives the call.
        unsafe {
            let mut stats: wasmchord_generation = std::mem::zeroed();
            stats.size = std::mem::size_of::<wasmchord_generation>();
            let r = wasmchord_generate(
                s,
                prompt.as_ptr(),
                prompt.len(),
                &p,
                Some(wait_for_abort),
                (&st as *const AbortState).cast_mut().cast(),
                &mut stats,
            );
            assert_eq!(r, WASMCHORD_OK);
            assert_eq!(stats.stop, wasmchord_stop_reason::WASMCHORD_STOP_CANCELLED);
            assert!(stats.n_tokens < 400);
        }
    });
    // The abort was consumed: the next generation runs to max_tokens.
    p.max_tokens = 5;
    let (r, _, stats) = run_generate(s, &prompt, &p);
    assert_eq!(r, WASMCHORD_OK);
    assert_eq!(stats.stop, wasmchord_stop_reason::WASMCHORD_STOP_MAX_TOKENS);
    // SAFETY: freed once.
    unsafe {
        wasmchord_session_free(s);
        wasmchord_model_free(model);
    }
}

fn render(
    t: *const wasmchord_chat_template,
    msgs: &[(&CStr, &CStr)],
) -> (wasmchord_result, String) {
    let m: Vec<wasmchord_chat_message> = msgs
        .iter()
        .map(|(r, c)| wasmchord_chat_message {
            role: r.as_ptr(),
            content: c.as_ptr(),
        })
        .collect();
    let mut len = 0usize;
    // SAFETY: valid arguments; size negotiation.
    unsafe {
        let r =
            wasmchord_chat_template_render(t, m.as_ptr(), m.len(), true, null_mut(), 0, &mut len);
        if r != WASMCHORD_BUFFER_TOO_SMALL {
            return (r, String::new());
        }
        let mut buf = vec![0u8; len + 1];
        let r = wasmchord_chat_template_render(
            t,
            m.as_ptr(),
            m.len(),
            true,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut len,
        );
        buf.truncate(len);
        (r, String::from_utf8(buf).unwrap())
    }
}

#[test]
fn chat_templates_render_like_the_rust_api() {
    let (_, plain) = common::tiny();
    let (_, templated) = common::tiny_templated();
    let a = load(plain);
    let b = load(templated);
    let msgs = [(c"system", c"Be brief."), (c"user", c"Hi there! ünï")];
    let rust_msgs = [Message::system("Be brief."), Message::user("Hi there! ünï")];
    // SAFETY: valid arguments throughout.
    unsafe {
        let mut t = sentinel();
        assert_eq!(
            wasmchord_chat_template_new(a, null(), &mut t),
            WASMCHORD_NO_CHAT_TEMPLATE
        );
        assert_eq!(t, sentinel());

        assert_eq!(wasmchord_chat_template_new(b, null(), &mut t), WASMCHORD_OK);
        let file = GgufFile::open(templated).unwrap();
        let tok = Tokenizer::from_metadata(file.metadata()).unwrap();
        let eos = tok.token_text(tok.eos().unwrap()).unwrap().to_owned();
        let (r, text) = render(t, &msgs);
        assert_eq!(r, WASMCHORD_OK);
        assert_eq!(
            text,
            format!("[system]Be brief.{eos}[user]Hi there! ünï{eos}[assistant]")
        );
        wasmchord_chat_template_free(t);

        for name in [c"chatml", c"llama3", c"gemma"] {
            assert_eq!(
                wasmchord_chat_template_new(null(), name.as_ptr(), &mut t),
                WASMCHORD_OK
            );
            let expected = ChatTemplate::builtin(name.to_str().unwrap())
                .unwrap()
                .render(&rust_msgs, true, None)
                .unwrap();
            assert_eq!(render(t, &msgs), (WASMCHORD_OK, expected));
            wasmchord_chat_template_free(t);
        }
        assert_eq!(
            wasmchord_chat_template_new(null(), c"nope".as_ptr(), &mut t),
            WASMCHORD_CHAT_TEMPLATE
        );

        assert_eq!(
            wasmchord_chat_template_from_source(
                c"{{ bos_token }}{% for m in messages %}<{{ m.content }}>{% endfor %}".as_ptr(),
                c"<s>".as_ptr(),
                null(),
                &mut t
            ),
            WASMCHORD_OK
        );
        assert_eq!(
            render(t, &msgs),
            (WASMCHORD_OK, "<s><Be brief.><Hi there! ünï>".to_owned())
        );
        wasmchord_chat_template_free(t);
        assert_eq!(
            wasmchord_chat_template_from_source(c"{% for %}".as_ptr(), null(), null(), &mut t),
            WASMCHORD_CHAT_TEMPLATE
        );
        assert_eq!(
            wasmchord_chat_template_from_source(
                c"{{ raise_exception('no system role') }}".as_ptr(),
                null(),
                null(),
                &mut t
            ),
            WASMCHORD_OK
        );
        assert_eq!(render(t, &msgs).0, WASMCHORD_CHAT_TEMPLATE);
        assert!(last_error().contains("no system role"), "{}", last_error());
        wasmchord_chat_template_free(t);
        wasmchord_model_free(a);
        wasmchord_model_free(b);
    }
}
