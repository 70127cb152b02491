#!/usr/bin/env bash
# The web package's tests, start to finish:
#   1. pinned tools (scripts/web/install-tools.sh) and Debian's chromium;
#   2. a tiny random-weight model (`wasmchord synth`) and the native CLI's
#      greedy text for it (`wasmchord generate --temp 0`);
#   3. the Rust API in Node (wasm-bindgen-test, crates/wasm-chord-web/tests/node.rs);
#   4. the npm package (scripts/web/build.sh), its TypeScript declarations
#      (tsc --noEmit on bindings/js/test/types-check.ts) and its JavaScript API
#      in Node (node --test bindings/js/test/), which also compares with the
#      native text; bindings/js/test/panic.test.mjs runs on a second build
#      with the `panic-test` feature: a panic, then the same text again from
#      a fresh instance;
#   5. the demo page in headless Chromium (scripts/web/e2e.mjs): the same
#      greedy text on the CPU path, then a second visit served from the
#      model cache; then on WebGPU (SwiftShader, no GPU needed) with the
#      weights streamed to the GPU, the native CLI's text on the WebGPU
#      backend over the same SwiftShader device.
# Screenshots go to target/web-artifacts/. With CI=true a missing tool is a
# failure; otherwise the steps that need it are skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
CI="${CI:-false}"
passed=0
failed=0
skipped=0
step() { printf '\n==> web: %s\n' "$*"; }
result() { # name, status
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "web: $1 ok"; else failed=$((failed + 1)); echo "web: $1 FAILED"; fi
}
missing() {
  if [ "$CI" = true ]; then echo "web: $1 is missing (required with CI=true)" >&2; exit 1; fi
  echo "web: $1 is missing; skipping what needs it" >&2
  skipped=$((skipped + 1))
}

step "tools"
scripts/web/install-tools.sh
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
fi
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true
fi
have_node=true; command -v node >/dev/null 2>&1 || { have_node=false; missing node; }
have_chromium=true; [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { have_chromium=false; missing chromium; }
node --version; wasm-pack --version; wasm-bindgen --version

step "tiny model and the native CLI's greedy text"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PROMPT="Once upon a time"
N=24
# The dev-profile CLI (kernels are optimized in every profile, and Rust does
# not reassociate floats, so its text equals a release build's), with the
# features of scripts/test.sh so that CI reuses the binary the test suite
# has just built instead of linking a second one (it runs on the CPU
# backend either way).
cargo build --locked -q -p wasm-chord-cli --features webgpu
cli="$CARGO_TARGET_DIR/debug/wasmchord"
"$cli" synth --arch llama --preset tiny --type q8_0 --seed 17 -o "$work/tiny.gguf" >/dev/null
# A weight type the WebGPU backend lacks: "auto" must fall back to the CPU.
"$cli" synth --arch llama --preset tiny --type q4_1 --seed 17 -o "$work/tiny-q4_1.gguf" >/dev/null
# The models of crates/wasm-chord-web/tests/node.rs.
for m in llama:q8_0 gemma3:q4_k_m qwen3:f16 gemma3:q8_0; do
  "$cli" synth --arch "${m%%:*}" --preset tiny --type "${m#*:}" --seed 9 -o "$work/${m%%:*}-${m#*:}.gguf" >/dev/null
done
"$cli" generate -m "$work/tiny.gguf" -p "$PROMPT" -n "$N" --temp 0 >"$work/native.raw" 2>"$work/native.err"
head -c -1 "$work/native.raw" >"$work/native.txt" # the CLI ends with one newline of its own
echo "native greedy: $(cat "$work/native.txt" | head -c 200) [$(tail -1 "$work/native.err")]"
# The same on the WebGPU backend over the browser's Vulkan device
# (Chromium's SwiftShader), the reference of the page's WebGPU runs (why:
# scripts/web/e2e.mjs).
swiftshader_icd="$(dirname "$(readlink -f "${CHROMIUM:-/usr/bin/chromium}")")/vk_swiftshader_icd.json"
[ -f "$swiftshader_icd" ] || swiftshader_icd=/usr/lib/chromium/vk_swiftshader_icd.json
native_gpu=()
if [ -f "$swiftshader_icd" ]; then
  VK_ICD_FILENAMES="$swiftshader_icd" VK_DRIVER_FILES="$swiftshader_icd" "$cli" generate -m "$work/tiny.gguf" \
    -p "$PROMPT" -n "$N" --temp 0 --backend webgpu >"$work/native-webgpu.raw" 2>"$work/native-webgpu.err"
  head -c -1 "$work/native-webgpu.raw" >"$work/native-webgpu.txt"
  echo "native greedy on WebGPU (SwiftShader): $(head -c 200 "$work/native-webgpu.txt") [$(tail -1 "$work/native-webgpu.err" | head -c 160)]"
  native_gpu=("$work/native-webgpu.txt")
elif $have_chromium; then
  missing "Chromium's SwiftShader Vulkan driver (vk_swiftshader_icd.json)"
fi

if $have_node; then
  step "Rust API in Node (wasm-bindgen-test)"
  set +e
  WASMCHORD_WEB_MODELS="$work" RUSTFLAGS="-C target-feature=+simd128" \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    cargo test --locked --release --target wasm32-unknown-unknown -p wasm-chord-web --test node
  result "wasm-bindgen-test (node)" $?
  set -e

  step "npm package"
  scripts/web/build.sh
  (cd bindings/js && { { [ -d node_modules/playwright-core ] && [ -d node_modules/typescript ]; } ||
    npm ci --no-audit --no-fund --silent; })

  step "TypeScript declarations (tsc --noEmit)"
  set +e
  (cd bindings/js && node node_modules/typescript/bin/tsc -p tsconfig.json)
  result "tsc" $?
  set -e

  step "panic-test build (the crate's panic-test feature, for bindings/js/test/panic.test.mjs)"
  scripts/web/build.sh --features panic-test --out-dir "$work/panic/pkg"
  cp -r bindings/js/src "$work/panic/src"

  step "JavaScript API in Node"
  set +e
  WASMCHORD_PANIC_BUILD="$work/panic/src/index.js" \
  WASMCHORD_TINY_MODEL="$work/tiny.gguf" WASMCHORD_NATIVE_TEXT="$(cat "$work/native.txt")" \
    WASMCHORD_PROMPT="$PROMPT" WASMCHORD_N="$N" node --test bindings/js/test/
  result "node --test bindings/js/test" $?
  set -e
fi

if $have_node && $have_chromium; then
  step "demo page in headless Chromium"
  set +e
  node scripts/web/e2e.mjs "$work" tiny.gguf "$PROMPT" "$N" "$work/native.txt" "${native_gpu[@]}"
  result "chromium end-to-end" $?
  set -e
fi

echo
echo "web: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
