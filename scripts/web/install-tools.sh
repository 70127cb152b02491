#!/usr/bin/env bash
# Installs the pinned web toolchain when missing: the wasm32 target,
# wasm-bindgen-cli (its version must equal the wasm-bindgen crate in
# Cargo.lock; it brings wasm-bindgen-test-runner) and wasm-pack, both from
# crates.io, plus the npm dev dependencies of the tests (playwright-core drives Debian's chromium).
# Browsers are never downloaded: the end-to-end test uses /usr/bin/chromium
# (`apt-get install -y chromium`).
set -euo pipefail
cd "$(dirname "$0")/../.."

WASM_BINDGEN_VERSION=0.2.130
WASM_PACK_VERSION=0.15.1

locked=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ -n "$locked" ] && [ "$locked" != "$WASM_BINDGEN_VERSION" ]; then
  echo "install-tools: Cargo.lock has wasm-bindgen $locked but the script pins $WASM_BINDGEN_VERSION" >&2
  exit 1
fi

# `--locked` first (the versions the tool was released with); a lock entry
# that the registry no longer serves (yanked) falls back to a fresh resolve.
# Tools, not products: built at opt-level 1 without LTO, which halves their
# build time on a 2-core machine (they run for seconds).
install() {
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0
  cargo install --locked --quiet "$1" --version "$2" ||
    cargo install --quiet "$1" --version "$2"
}

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  echo "install-tools: wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  install wasm-bindgen-cli "$WASM_BINDGEN_VERSION"
fi
if ! wasm-pack --version 2>/dev/null | grep -q " $WASM_PACK_VERSION\$"; then
  echo "install-tools: wasm-pack $WASM_PACK_VERSION"
  install wasm-pack "$WASM_PACK_VERSION"
fi
