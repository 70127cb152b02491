// The package's JavaScript API in Node, on a tiny random-weight model that
// scripts/web/test.sh writes with `wasmchord synth` (WASMCHORD_TINY_MODEL),
// with the native CLI's greedy text for the same prompt
// (WASMCHORD_NATIVE_TEXT, WASMCHORD_PROMPT, WASMCHORD_N).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import {
  loadModel,
  buildInfo,
  backend,
  availableBackends,
  memoryBytes,
  WasmChordError,
  _panicForTesting,
} from "../src/index.js";

const MODEL = process.env.WASMCHORD_TINY_MODEL;
const skip = MODEL ? false : "WASMCHORD_TINY_MODEL is not set (scripts/web/test.sh sets it)";

async function rejectsWith(promiseOrFn, code) {
  await assert.rejects(promiseOrFn, (e) => {
    assert.ok(e instanceof WasmChordError, `not a WasmChordError: ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("build info and backend", { skip }, async () => {
  const info = await buildInfo();
  assert.deepEqual(info.backends, ["webgpu", "cpu"]);
  assert.equal(info.simd128, true);
  // Node has no navigator.gpu: the CPU path is what runs.
  assert.equal(backend(), "cpu");
  assert.deepEqual(await availableBackends(), ["cpu"]);
  // The package build has no deliberate panic.
  await rejectsWith(_panicForTesting(), "INVALID_ARGUMENT");
});

test("greedy text equals the native CLI's", { skip }, async () => {
  const want = process.env.WASMCHORD_NATIVE_TEXT;
  if (want === undefined) return;
  const phases = [];
  const model = await loadModel(MODEL, { onProgress: (p) => phases.push(p) });
  assert.equal(phases.at(-1).phase, "load");
  assert.equal(phases.at(-1).fraction, 1);
  assert.ok(phases.some((p) => p.phase === "download" && p.fraction === 1));
  assert.equal(model.backend(), "cpu");
  assert.equal(model.info.backend, "cpu");
  // "auto" (the default) found no WebGPU and says why.
  assert.match(model.info.backendFallback, /navigator\.gpu/);
  // The CPU path holds the whole file in wasm memory.
  assert.ok((await memoryBytes()) > model.info.fileBytes);
  const stream = model.generate(process.env.WASMCHORD_PROMPT, {
    maxTokens: Number(process.env.WASMCHORD_N),
    temperature: 0,
  });
  const pieces = [];
  for await (const p of stream) pieces.push(p);
  const r = await stream.result;
  assert.equal(pieces.join(""), r.text);
  assert.equal(r.text, want);
  assert.equal(r.stats.generatedTokens, r.tokens.length);
  assert.ok(r.stats.tokensPerSecond > 0);
  model.dispose();
});

test("bytes, callback form, seeded sampling, chat", { skip }, async () => {
  const bytes = await readFile(MODEL);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const model = await loadModel(new Uint8Array(bytes), { sha256, contextSize: 256 });
  assert.equal(model.info.contextSize, 256);
  const seen = [];
  const opts = { maxTokens: 12, temperature: 0.9, seed: 42, onText: (t) => void seen.push(t) };
  const a = await model.complete("Once upon", opts);
  assert.equal(seen.join(""), a.text);
  const b = await model.complete("Once upon", { ...opts, onText: undefined });
  assert.deepEqual(b.tokens, a.tokens, "same seed, same tokens");
  // onText returning false stops after that piece.
  let calls = 0;
  const c = await model.complete("Once upon", { maxTokens: 12, greedy: true, onText: () => ++calls < 2 });
  assert.equal(c.stopReason, "aborted");
  const prompt = model.applyChatTemplate([{ role: "user", content: "Hello" }]);
  assert.ok(prompt.includes("Hello"), prompt);
  const chat = await model.chat([{ role: "user", content: "Hello" }], { maxTokens: 4, greedy: true }).result;
  assert.ok(["eos", "maxTokens"].includes(chat.stopReason));
  model.dispose();
});

test("abort, superseding, and coded errors leave the model usable", { skip }, async () => {
  const model = await loadModel(MODEL, { contextSize: 64 });
  const ac = new AbortController();
  const stream = model.generate("a", { maxTokens: 40, greedy: true, signal: ac.signal });
  let n = 0;
  await rejectsWith(async () => {
    for await (const _ of stream) if (++n === 3) ac.abort();
  }, "ABORTED");
  await rejectsWith(stream.result, "ABORTED");
  // A new generation ends an older one still being read.
  const older = model.generate("a", { maxTokens: 40, greedy: true });
  const it = older[Symbol.asyncIterator]();
  await it.next();
  const newer = await model.complete("b", { maxTokens: 3, greedy: true });
  assert.equal(newer.tokens.length, 3);
  await rejectsWith(it.next(), "SUPERSEDED");
  // Errors with codes.
  assert.throws(() => model.generate("a", { maxTokens: -1 }), (e) => e.code === "INVALID_ARGUMENT");
  assert.throws(() => model.generate("a", { temprature: 1 }), (e) => e.code === "INVALID_ARGUMENT");
  await rejectsWith(model.complete("word ".repeat(200), { maxTokens: 1 }), "CONTEXT_FULL");
  await rejectsWith(loadModel(new Uint8Array(100000)), "BAD_MODEL");
  await rejectsWith(loadModel(MODEL, { sha256: "00".repeat(32) }), "INTEGRITY");
  // Asking for WebGPU where there is none fails instead of falling back.
  await rejectsWith(loadModel(MODEL, { backend: "webgpu" }), "UNSUPPORTED_BACKEND");
  await rejectsWith(loadModel(MODEL, { backend: "metal" }), "UNSUPPORTED_BACKEND");
  const forced = await loadModel(MODEL, { backend: "cpu" });
  assert.equal(forced.info.backendFallback, null);
  forced.dispose();
  const early = new AbortController();
  early.abort();
  await rejectsWith(loadModel(MODEL, { signal: early.signal }), "ABORTED");
  // Breaking out of the loop ends the generation cleanly.
  const s = model.generate("a", { maxTokens: 20, greedy: true });
  for await (const _ of s) break;
  assert.equal((await s.result).stopReason, "aborted");
  // Still works, with the same greedy tokens as before.
  const again = await model.complete("b", { maxTokens: 3, greedy: true });
  assert.deepEqual(again.tokens, newer.tokens);
  model.dispose();
});

test("URL loading in Node: progress, early header rejection, HTTP errors", { skip }, async () => {
  const { serve } = await import("../../../scripts/web/serve.mjs");
  const { mkdtemp, writeFile, copyFile, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "wasm-chord-url-"));
  const server = await serve({ models: dir });
  try {
    await copyFile(MODEL, join(dir, "m.gguf"));
    // 8 MB of junk: refused at the first header check, long before the end.
    await writeFile(join(dir, "junk.gguf"), new Uint8Array(8 << 20).fill(7));
    const seen = [];
    const model = await loadModel(`${server.url}/models/m.gguf`, { onProgress: (p) => seen.push(p) });
    const last = seen.filter((p) => p.phase === "download").at(-1);
    assert.equal(last.loaded, last.total);
    assert.equal(last.total, model.info.fileBytes);
    model.dispose();
    let received = 0;
    await rejectsWith(
      loadModel(`${server.url}/models/junk.gguf`, {
        onProgress: (p) => void (received = p.loaded ?? received),
      }),
      "BAD_MODEL",
    );
    assert.ok(received < 8 << 20, `read ${received} bytes`);
    await rejectsWith(loadModel(`${server.url}/models/missing.gguf`), "NETWORK");
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
