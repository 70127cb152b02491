//! Sets `cfg(wasm_chord_avx512)` when the compiler has the AVX-512
//! intrinsics (stable from Rust 1.89); older compilers (the MSRV is 1.80)
//! build without the AVX-512 kernels.

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(wasm_chord_avx512)");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (…)" or "rustc 1.96.0-nightly (…)".
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    if version.starts_with("rustc 1.") && minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=wasm_chord_avx512");
    }
}
