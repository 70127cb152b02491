#!/usr/bin/env bash
# Builds the CPU backend's tests for wasm32-wasip1 and runs them in Node
# (node:wasi, through scripts/wasi-run.mjs as cargo's runner): once with
# `-C target-feature=+simd128`, which tests the hand-written simd128 row
# kernels (crates/wasm-chord-cpu/src/kernels/simd128.rs) and the dispatch to
# them, and once without, which tests the portable/scalar fallback that a
# wasm build without SIMD keeps. Before that, clippy (warnings as errors)
# lints the crate, its tests included, for wasm32 with simd128: the host's
# clippy never compiles that module.
#
# wasm has no threads here: rayon finds it cannot spawn and runs everything
# on the calling thread, so every test of the crate runs. wasm32-wasip1
# aborts on panic, so a failing test ends the whole test binary; the run is
# then repeated with RUST_TEST_NOCAPTURE=1 to print the panic message.
#
# Installs the Rust target wasm32-wasip1 if missing (idempotent). Needs Node
# 20 or later; without it the script skips, except under CI=true, where it
# fails. Each flavour has its own target directory under
# ${CARGO_TARGET_DIR:-target} (different RUSTFLAGS rebuild every crate).
# Extra arguments go to both `cargo test` runs (e.g. `-- simd128`).
# Runtime on the 2-core machine: about 2.5 minutes from cold target
# directories (140 s measured with CI's settings while other builds ran),
# a few seconds warm.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-wasip1
if ! command -v node >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "wasm-test: node not found (CI=true): cannot run the wasm tests" >&2
    exit 1
  fi
  echo "wasm-test: node not found; skipped"
  exit 0
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "wasm-test: Node $(node --version) is too old (node:wasi preview1 needs 20+)" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "wasm-test: rustup target add $TARGET"
  rustup target add "$TARGET"
fi

export CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $PWD/scripts/wasi-run.mjs"
base="${CARGO_TARGET_DIR:-$PWD/target}"
flags_simd="${RUSTFLAGS:-} -C target-feature=+simd128"
flags_plain="${RUSTFLAGS:-}"

echo "wasm-test: clippy -D warnings for $TARGET with simd128"
RUSTFLAGS="$flags_simd" cargo clippy --locked --target "$TARGET" -p wasm-chord-cpu --all-targets \
  --target-dir "$base/wasip1-simd128" -- -D warnings

run_tests() {
  local name=$1 flags=$2
  shift 2
  echo "wasm-test: $TARGET $name in Node: cargo test -p wasm-chord-cpu $*"
  if ! RUSTFLAGS="$flags" cargo test --locked --target "$TARGET" -p wasm-chord-cpu \
    --target-dir "$base/wasip1-$name" "$@"; then
    echo "wasm-test: $name failed; again with RUST_TEST_NOCAPTURE=1 for the panic message" >&2
    RUST_TEST_NOCAPTURE=1 RUSTFLAGS="$flags" cargo test --locked --target "$TARGET" \
      -p wasm-chord-cpu --target-dir "$base/wasip1-$name" "$@" || true
    exit 1
  fi
}

run_tests simd128 "$flags_simd" "$@"
run_tests scalar "$flags_plain" "$@"
