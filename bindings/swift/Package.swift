// swift-tools-version:5.7
// A minimal Swift wrapper over libwasmchord (include/wasmchord.h).
// Install the library first (scripts/capi-install.sh), so that pkg-config
// finds wasmchord.pc. Untested in this repository's CI: see docs/c-api.md.
import PackageDescription

let package = Package(
    name: "WasmChord",
    products: [
        .library(name: "WasmChord", targets: ["WasmChord"]),
    ],
    targets: [
        .systemLibrary(
            name: "CWasmChord",
            path: "Sources/CWasmChord",
            pkgConfig: "wasmchord"
        ),
        .target(name: "WasmChord", dependencies: ["CWasmChord"]),
    ]
)
