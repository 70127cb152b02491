//! The C API from Rust: loading (file, memory, progress, cancel, bad
//! input), tokens with size negotiation, and chat templates, checked
//! against the Rust API on a tiny random-weight model.

mod common;

use common::ffi::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_runtime::chat_template::{ChatTemplate, Message};
use wasmchord::wasmchord_result::*;
use wasmchord::*;

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
        // WebGPU is there when this build has the feature and an adapter
        // opens (the suite builds it; CI has lavapipe).
        let webgpu = wasm_chord_runtime::AnyBackend::open(wasm_chord_runtime::Device::WebGpu);
        assert_eq!(
            wasmchord_backend_available(c"webgpu".as_ptr()),
            if webgpu.is_ok() {
                WASMCHORD_OK
            } else {
                WASMCHORD_UNSUPPORTED_BACKEND
            }
        );
        if !wasm_chord_runtime::Device::compiled().contains(&"metal") {
            assert_eq!(
                wasmchord_backend_available(c"metal".as_ptr()),
                WASMCHORD_UNSUPPORTED_BACKEND
            );
            assert!(last_error().contains("metal"), "{}", last_error());
        }
        assert_eq!(
            wasmchord_backend_available(c"quantum".as_ptr()),
            WASMCHORD_UNSUPPORTED_BACKEND
        );
        assert!(last_error().contains("unknown device"), "{}", last_error());
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
