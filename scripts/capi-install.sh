#!/usr/bin/env bash
# Builds libwasmchord and installs it with its header and pkg-config file:
#
#   scripts/capi-install.sh [PREFIX]        # default PREFIX: /usr/local
#   PROFILE=dev scripts/capi-install.sh /tmp/wc   # unoptimized build
#
# Installs PREFIX/lib/libwasmchord.{so,dylib,a}, PREFIX/include/wasmchord.h
# and PREFIX/lib/pkgconfig/wasmchord.pc (from
# crates/wasm-chord-capi/wasmchord.pc.in). Then:
#
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc chat.c $(pkg-config --cflags --libs wasmchord)
#   ... --static ... $(pkg-config --static --cflags --libs wasmchord) for the .a
set -euo pipefail

prefix=${1:-/usr/local}
profile=${PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)

cargo build -p wasm-chord-capi --lib --profile "$profile" --manifest-path "$root/Cargo.toml"

target=${CARGO_TARGET_DIR:-$root/target}
case $profile in
    dev) out=$target/debug ;;
    *) out=$target/$profile ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)

# What a Rust staticlib needs from the system (rustc --print native-static-libs).
case $(uname -s) in
    Darwin) libs_private="-lSystem -lc -lm -liconv" ;;
    *) libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc" ;;
esac

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 "$root/include/wasmchord.h" "$prefix/include/wasmchord.h"
for f in libwasmchord.so libwasmchord.dylib libwasmchord.a; do
    if [ -f "$out/$f" ]; then
        case $f in *.a) mode=644 ;; *) mode=755 ;; esac
        install -m "$mode" "$out/$f" "$prefix/lib/$f"
    fi
done
if [ -f "$prefix/lib/libwasmchord.dylib" ]; then
    install_name_tool -id "$prefix/lib/libwasmchord.dylib" "$prefix/lib/libwasmchord.dylib"
fi
sed -e "s|@PREFIX@|$prefix|" \
    -e "s|@LIBDIR@|\${prefix}/lib|" \
    -e "s|@INCLUDEDIR@|\${prefix}/include|" \
    -e "s|@VERSION@|$version|" \
    -e "s|@LIBS_PRIVATE@|$libs_private|" \
    "$root/crates/wasm-chord-capi/wasmchord.pc.in" >"$prefix/lib/pkgconfig/wasmchord.pc"
echo "installed libwasmchord $version under $prefix"
