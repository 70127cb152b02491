#!/usr/bin/env bash
# Cross-compiles the CPU backend's and core's tests for aarch64 Linux and runs
# them under qemu-user: the NEON kernels (crates/wasm-chord-cpu/src/kernels/
# neon.rs) and every other test of the two crates, on an x86-64 machine.
#
# Installs what is missing first (idempotent): the Rust target
# aarch64-unknown-linux-gnu, and Debian's qemu-user, gcc-aarch64-linux-gnu
# (the linker) and libc6-dev-arm64-cross (the target's C library, which qemu
# finds under /usr/aarch64-linux-gnu). Cargo is configured through the
# environment only; nothing is written to .cargo/.
#
# The tests run on qemu's "max" CPU (which has the dotprod extension, so both
# the `sdot` kernels and the base-NEON ones are tested), then the CPU
# backend's again on a Cortex-A53 (Armv8.0, no dotprod: the dispatch must
# fall back).
# qemu checks correctness only; it says nothing about speed.
#
# Extra arguments go to both `cargo test` runs (e.g. `-- neon` to run only
# the tests whose names contain "neon"). Runtime on the 2-core machine: about
# 3 minutes from a cold target directory (2m47s measured), 25-65 s warm.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "cross-test: rustup target add $TARGET"
  rustup target add "$TARGET"
fi

need_pkgs=()
for pkg in qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "cross-test: apt-get install ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"

test_on() {
  local cpu=$1
  shift
  echo "cross-test: $TARGET under qemu-aarch64 -cpu $cpu: cargo test $*"
  QEMU_CPU=$cpu cargo test --locked --target "$TARGET" "$@"
}

test_on max -p wasm-chord-cpu -p wasm-chord-core "${@}"
# Only the CPU backend has code that depends on the CPU's features.
test_on cortex-a53 -p wasm-chord-cpu "${@}"
