//! The C API from Rust: streaming generation equal to the Rust API,
//! callback stop, re-entry refused, abort from another thread.

mod common;

use common::ffi::*;
use std::ffi::{c_char, c_void};
use std::ptr::null;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wasm_chord_core::gguf::GgufFile;
use wasm_chord_core::tokenizer::Tokenizer;
use wasm_chord_cpu::CpuBackend;
use wasm_chord_runtime::sampler::SamplerConfig;
use wasmchord::wasmchord_result::*;
use wasmchord::*;

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
