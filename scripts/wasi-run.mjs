// Runs a wasm32-wasip1 program (a test binary) under Node's WASI, with the
// host's file system preopened at / and the host's environment: cargo's
// runner for that target (scripts/wasm-test.sh sets
// CARGO_TARGET_WASM32_WASIP1_RUNNER to `node --no-warnings` and this file).
// Exits with the program's exit code.
//
//   node scripts/wasi-run.mjs PROGRAM.wasm [ARGS...]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error("usage: node scripts/wasi-run.mjs PROGRAM.wasm [ARGS...]");
  process.exit(2);
}
const wasi = new WASI({
  version: "preview1",
  args: [file, ...args],
  env: process.env,
  preopens: { "/": "/" },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
