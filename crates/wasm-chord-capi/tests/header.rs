//! The committed `include/wasmchord.h` must be what cbindgen generates from
//! this crate now. `WASMCHORD_BLESS=1` rewrites it.

use std::path::PathBuf;

#[test]
fn header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");
    let committed_path = crate_dir.join("../../include/wasmchord.h");
    if std::env::var_os("WASMCHORD_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).expect("write include/wasmchord.h");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/wasmchord.h is stale: run `WASMCHORD_BLESS=1 cargo test -p wasm-chord-capi --test header` and commit it"
    );
    for name in [
        "wasmchord_model_load_file",
        "wasmchord_generate",
        "WASMCHORD_ABI_VERSION_MAJOR",
        "WASMCHORD_BUFFER_TOO_SMALL = 8",
    ] {
        assert!(generated.contains(name), "{name} missing from the header");
    }
    assert!(!generated.contains("wasmchord_debug_panic"));
}
