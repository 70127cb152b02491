#!/usr/bin/env bash
# The project's test command (README "Run the tests").
#
# Runs the whole workspace test suite. Tests that need downloaded data (the
# default model, llama.cpp's tokenizer vectors) fetch it themselves through the
# project's own code and scripts into the cache
# (${WASMCHORD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasm-chord}); with CI=true
# a test whose data cannot be fetched fails instead of skipping.
#
# The parity tests run on every backend compiled in (see
# crates/wasm-chord-cli/src/test_backends.rs); the suite builds the CLI with
# the WebGPU backend, which needs a Vulkan driver: on a machine without a GPU,
# Mesa's lavapipe (`apt-get install mesa-vulkan-drivers`, which .ci/run does).
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p wasm-chord-core`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
  set -- --workspace --features wasm-chord-cli/webgpu
fi
exec cargo test --locked --no-fail-fast "$@"
