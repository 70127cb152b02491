//! Compiles the CUDA kernels of the custom ops to PTX with `nvcc` when the
//! `cuda` feature is on (nothing to do otherwise). The PTX targets
//! `CUDA_COMPUTE_CAP` (default 70) and is JIT-compiled by the driver for the
//! GPU it runs on.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/ops/kernels.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let ptx = out.join("wc_kernels.ptx");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "70".into());
    let cap: String = cap.chars().filter(char::is_ascii_digit).collect();
    let nvcc = std::env::var("NVCC")
        .ok()
        .or_else(|| {
            std::env::var("CUDA_ROOT")
                .ok()
                .map(|r| format!("{r}/bin/nvcc"))
                .filter(|p| std::path::Path::new(p).exists())
        })
        .unwrap_or_else(|| "nvcc".into());
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("-o")
        .arg(&ptx)
        .arg("src/ops/kernels.cu")
        .status()
        .unwrap_or_else(|e| panic!("running {nvcc} (set NVCC or CUDA_ROOT): {e}"));
    assert!(
        status.success(),
        "nvcc failed to compile src/ops/kernels.cu"
    );
}
