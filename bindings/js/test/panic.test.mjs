// The panic fallback end to end, on a build with the crate's `panic-test`
// feature (scripts/web/test.sh makes one and points WASMCHORD_PANIC_BUILD at
// its copy of src/index.js): a panic inside wasm throws code PANIC with the
// panic's message and the module goes on with a fresh instance. The models
// (and a generation in flight) of the dead instance throw MODEL_LOST; a new
// loadModel works and generates the same greedy text as before the panic,
// the native CLI's text (WASMCHORD_NATIVE_TEXT, WASMCHORD_PROMPT, WASMCHORD_N).
import { test } from "node:test";
import assert from "node:assert/strict";

const BUILD = process.env.WASMCHORD_PANIC_BUILD;
const MODEL = process.env.WASMCHORD_TINY_MODEL;
const PROMPT = process.env.WASMCHORD_PROMPT ?? "Once upon a time";
const N = Number(process.env.WASMCHORD_N ?? 24);
const NATIVE = process.env.WASMCHORD_NATIVE_TEXT;
const skip = BUILD && MODEL ? false : "WASMCHORD_PANIC_BUILD is not set (scripts/web/test.sh sets it)";

const lost = (e) => {
  assert.equal(e.code, "MODEL_LOST", `${e.code}: ${e.message}`);
  assert.match(e.message, /deliberate panic/);
  return true;
};

test("a panic throws PANIC; old models throw MODEL_LOST; loading again works", { skip }, async () => {
  const pkg = await import(BUILD);
  const greedy = async (model) => (await model.complete(PROMPT, { maxTokens: N, temperature: 0 })).text;

  const model = await pkg.loadModel(MODEL);
  const before = await greedy(model);
  assert.ok(before.length > 0);
  if (NATIVE !== undefined) assert.equal(before, NATIVE);
  const memBefore = await pkg.memoryBytes();
  assert.ok(memBefore > model.info.fileBytes);

  // A second model, with a generation in flight when the panic comes.
  const other = await pkg.loadModel(MODEL);
  const stream = other.generate(PROMPT, { maxTokens: N, temperature: 0 });
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.done, false);

  await assert.rejects(pkg._panicForTesting(), (e) => {
    assert.ok(e instanceof pkg.WasmChordError);
    assert.equal(e.code, "PANIC");
    assert.match(e.message, /deliberate panic/);
    return true;
  });

  // Everything of the dead instance: MODEL_LOST, synchronously or as a rejection.
  assert.throws(() => model.generate(PROMPT, { maxTokens: 2 }), lost);
  assert.throws(() => model.tokenize("a"), lost);
  assert.throws(() => model.backend(), lost);
  await assert.rejects(model.complete([1, 2], { maxTokens: 2 }), lost);
  await assert.rejects(it.next(), lost);
  await assert.rejects(stream.result, lost);
  // Disposing a lost model is harmless (its memory went with the instance).
  model.dispose();
  other.dispose();
  assert.throws(() => model.reset(), (e) => e.code === "MODEL_LOST" && /disposed/.test(e.message));

  // The fresh instance: the model file is read into new memory, and the
  // same greedy text comes out.
  assert.equal((await pkg.buildInfo()).simd128, true);
  const again = await pkg.loadModel(MODEL);
  assert.equal(await greedy(again), before);
  // Only this one model lives in the new instance's memory, less than the
  // two of the dead one.
  assert.ok((await pkg.memoryBytes()) < memBefore + again.info.fileBytes);

  // A second panic is survived the same way.
  await assert.rejects(pkg._panicForTesting(), (e) => e.code === "PANIC");
  assert.throws(() => again.tokenize("a"), lost);
  const third = await pkg.loadModel(MODEL);
  assert.equal(await greedy(third), before);

  // A panic inside a future traps in a callback no caller sees (as in an
  // async WebGPU step): the pending call still ends with PANIC, not never.
  // The trap itself surfaces as an uncaught exception in that callback:
  // capture it (the test asserts on the call's rejection, not on it).
  const trapped = [];
  process.setUncaughtExceptionCaptureCallback((e) => trapped.push(e));
  try {
    // Without the panic listener the call would never settle: give it 10 s.
    const never = new Promise((_, r) => {
      const t = setTimeout(() => r(Object.assign(new Error("never settled"), { code: "TIMEOUT" })), 10_000);
      t.unref();
    });
    await assert.rejects(Promise.race([pkg._panicAsyncForTesting(), never]), (e) => {
      assert.equal(e.code, "PANIC", `${e.code}: ${e.message}`);
      assert.match(e.message, /deliberate panic in a future/);
      return true;
    });
    await new Promise((r) => setTimeout(r, 10));
  } finally {
    process.setUncaughtExceptionCaptureCallback(null);
  }
  assert.ok(trapped.every((e) => e instanceof WebAssembly.RuntimeError), String(trapped));
  assert.throws(() => third.tokenize("a"), (e) => e.code === "MODEL_LOST");
  const fourth = await pkg.loadModel(MODEL);
  assert.equal(await greedy(fourth), before);
  fourth.dispose();
});
