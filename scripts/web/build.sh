#!/usr/bin/env bash
# Builds the npm package in bindings/js: wasm-pack compiles
# crates/wasm-chord-web for wasm32-unknown-unknown with simd128 (wasm has no
# run-time feature detection, so the whole package requires a browser or
# Node with WebAssembly SIMD: Chrome 91+, Firefox 89+, Safari 16.4+, Node 16+)
# and wasm-bindgen writes ESM glue and TypeScript types into bindings/js/pkg.
# wasm-pack's own wasm-opt download is off; a `wasm-opt` on the PATH
# optimizes the module when it can read it.
#
#   scripts/web/build.sh [--dev] [--features LIST] [--out-dir DIR]
#
# --features builds with the crate's features (the tests' `panic-test`);
# --out-dir writes somewhere other than bindings/js/pkg.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
profile=--release
features=()
out="$PWD/bindings/js/pkg"
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) profile=--dev ;;
    --features) features=(-- --features "$2"); shift ;;
    --out-dir) out="$(mkdir -p "$2" && cd "$2" && pwd)"; shift ;;
    *) echo "build: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" \
  wasm-pack --quiet build crates/wasm-chord-web "$profile" --target web \
  --out-dir "$out" --out-name wasm_chord_web --no-pack "${features[@]}"

wasm="$out/wasm_chord_web_bg.wasm"
if [ "$profile" = --release ] && command -v wasm-opt >/dev/null 2>&1; then
  # Debian bookworm's binaryen (108) cannot parse what current rustc emits
  # (`table.fill`); the module is then left as rustc and wasm-bindgen wrote it.
  if wasm-opt -O3 --all-features "$wasm" -o "$wasm.opt" 2>/dev/null; then
    mv "$wasm.opt" "$wasm"
  else
    rm -f "$wasm.opt"
    echo "build: $(wasm-opt --version) could not read the module; left unoptimized"
  fi
fi
rm -f "$out/.gitignore"
echo "built $out ($(du -h "$wasm" | cut -f1) wasm)"
