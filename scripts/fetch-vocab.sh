#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf with
# their .inp/.out test vectors) from the llama-cpp-python source package on the
# Python package index, once, into a cache folder, and prints that folder.
#   ${WASMCHORD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasm-chord}/vocab/
# Idempotent: a no-op when the files are already there. Needs python3 + pip.
set -euo pipefail
VERSION=0.3.36
CACHE=${WASMCHORD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasm-chord}
DEST="$CACHE/vocab"
if [ -f "$DEST/.complete-$VERSION" ]; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --no-build-isolation --no-binary llama-cpp-python \
  "llama-cpp-python==$VERSION" -d "$tmp" >&2
tar xzf "$tmp/llama_cpp_python-$VERSION.tar.gz" -C "$tmp" --wildcards \
  "llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-*"
cp "$tmp/llama_cpp_python-$VERSION/vendor/llama.cpp/models/"ggml-vocab-* "$DEST/"
touch "$DEST/.complete-$VERSION"
echo "$DEST"
